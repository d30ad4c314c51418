"""Tools the model can call: the `ToolRegistry`, the `@register_tool` decorator and the built-in tools.

`default_registry` holds the built-ins; registering them is cheap and does no I/O.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .builtin import BUILTIN_TOOLS, register_builtins
from .registry import Tool, ToolLoadFailure, ToolRegistry, loading_registry, tool_from_function

__all__ = [
    "Tool",
    "ToolRegistry",
    "ToolLoadFailure",
    "BUILTIN_TOOLS",
    "default_registry",
    "register_tool",
    "register_builtins",
    "tool_from_function",
    "build_registry",
    "user_tools_path",
]

default_registry: ToolRegistry = register_builtins(ToolRegistry())


def register_tool(
    func: Callable[..., Any] | None = None, *, name: str | None = None, description: str | None = None
) -> Any:
    """Register a function on `default_registry`: `@register_tool` or `@register_tool(name=..., description=...)`.

    While `ToolRegistry.load_folder` imports a file, the tools land on that registry instead.
    """
    registry = loading_registry()
    if registry is None:  # not `or`: an empty registry is falsy
        registry = default_registry
    return registry.register(func, name=name, description=description)


def user_tools_path() -> Path | None:
    """The user tool folder: $TOOLS_PATH, else ./my_tools when it exists, else None."""
    configured = os.environ.get("TOOLS_PATH", "").strip()
    if configured:
        return Path(configured).expanduser()
    default = Path("my_tools")
    return default if default.is_dir() else None


def build_registry(
    tools_path: str | Path | None = None, mcp_config: str | Path | None = None, mcp: bool = True
) -> tuple[ToolRegistry, list[ToolLoadFailure]]:
    """A fresh registry with the built-ins, every .py file of the user tool folder and the tools of the
    MCP servers configured at mcp_config / $COMPOSITE_MCP_CONFIG / ./mcp.json (when mcp is true).

    A broken file or config is reported (with its name) and does not stop the others from loading; MCP
    servers report their own state in `registry.mcp.statuses()`. Call `registry.close()` when done: it
    stops the MCP servers' child processes.
    """
    registry = register_builtins(ToolRegistry())
    failures: list[ToolLoadFailure] = []
    folder = Path(tools_path).expanduser() if tools_path else user_tools_path()
    if folder is not None and folder.is_dir():
        failures += registry.load_folder(folder)
    if mcp:
        from composite.errors import ConfigError

        from .mcp import McpManager, config_path

        found = config_path(mcp_config)
        try:
            manager = McpManager.from_config(found) if found is not None else None
        except ConfigError as exc:
            failures.append(ToolLoadFailure(found or Path("mcp.json"), str(exc), exc))
            manager = None
        if manager is not None:
            registry.add_mcp(manager)
    return registry, failures
