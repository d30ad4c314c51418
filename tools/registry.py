"""The tool registry: tools by name from three sources (decorated functions, user tool folders, MCP servers),
each looked up, listed and called the same way; `call` validates the arguments, then executes with a timeout.
"""
from __future__ import annotations

import copy
import importlib.util
import re
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from composite.errors import ConfigError, ToolCallError, ToolRegistrationError

from .schema import compact_schema, function_schema, parse_docstring

if TYPE_CHECKING:
    from .calling import ToolResult
    from .mcp import McpManager

__all__ = [
    "Tool",
    "ToolRegistry",
    "ToolLoadFailure",
    "tool_from_function",
    "compact_schema",
    "parse_docstring",
    "loading_registry",
]


@dataclass
class Tool:
    """One registered tool: `schema` is what the model is shown; `model` validates a call's arguments
    (None for a tool whose JSON Schema comes as is, e.g. from an MCP server: it is validated against it).

    `source` says where it came from ("function", "folder:<file>", "mcp:<server>"); `status`, when set,
    returns why the tool cannot be called right now ("" when it can), e.g. its MCP server crashed.
    """

    name: str
    description: str
    func: Callable[..., Any]
    model: type[BaseModel] | None
    schema: dict[str, Any]
    source: str = "function"
    status: Callable[[], str] | None = field(default=None, repr=False, compare=False)
    # invoke(arguments, timeout): a source that enforces the timeout itself (an MCP request) runs this
    invoke: Callable[[dict[str, Any], float | None], Any] | None = field(default=None, repr=False, compare=False)

    def unavailable_reason(self) -> str:
        return self.status() if self.status is not None else ""

    @property
    def available(self) -> bool:
        return not self.unavailable_reason()

    def chatglm3(self) -> dict[str, Any]:
        """{"name", "description", "parameters"}; a copy, so callers may edit it."""
        return {"name": self.name, "description": self.description, "parameters": copy.deepcopy(self.schema)}

    def openai(self) -> dict[str, Any]:
        return {"type": "function", "function": self.chatglm3()}


@dataclass
class ToolLoadFailure:
    """A tool file that could not be loaded; the other files of the folder still load."""

    path: Path
    error: str
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        return f"{self.path.name}: {self.error}"


def tool_from_function(
    func: Callable[..., Any], *, name: str | None = None, description: str | None = None, source: str = "function"
) -> Tool:
    """Build a Tool from a typed, documented function; raise ToolRegistrationError naming it otherwise."""
    spec = function_schema(func, name=name, description=description)
    return Tool(name=spec.name, description=spec.description, func=func, model=spec.model, schema=spec.schema,
                source=source)


# ---------------------------------------------------------------------------------------------------
# the registry

_loading_lock = threading.RLock()  # one folder import at a time
_loading = threading.local()  # per thread, so a register_tool elsewhere is not redirected


def _loading_stack() -> list["ToolRegistry"]:
    if not hasattr(_loading, "stack"):
        _loading.stack = []
    return _loading.stack


def loading_registry() -> "ToolRegistry | None":
    """The registry whose load_folder is importing a file in this thread (so `@register_tool` lands there)."""
    stack = _loading_stack()
    return stack[-1] if stack else None


class ToolRegistry:
    """A set of tools by name. Tests and apps create their own; `tools.default_registry` holds the built-ins."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}
        self._lock = threading.RLock()
        self.mcp: McpManager | None = None  # the MCP servers whose tools joined (see add_mcp)

    # registration --------------------------------------------------------------------------------

    def register(
        self, func: Callable[..., Any] | None = None, *, name: str | None = None, description: str | None = None
    ) -> Any:
        """Register func as a tool; usable as `@registry.register` and `@registry.register(name=...)`.

        Returns the function unchanged so it stays callable as plain Python.
        """
        if func is None:
            return lambda f: self.register(f, name=name, description=description)
        loading = getattr(_loading, "file", None)
        source = f"folder:{loading.name}" if loading is not None and loading_registry() is self else "function"
        self.add(tool_from_function(func, name=name, description=description, source=source))
        return func

    def add(self, tool: Tool) -> Tool:
        """Add a built Tool; a name already taken raises ToolRegistrationError."""
        with self._lock:
            if tool.name in self._tools:
                taken = self._tools[tool.name]
                existing = taken.func
                what = (f"function {getattr(existing, '__module__', '?')}.{getattr(existing, '__qualname__', existing)}"
                        if not taken.source.startswith("mcp:") else f"MCP server {taken.source[4:]!r}")
                raise ToolRegistrationError(
                    f"cannot register tool {tool.name!r} (function {getattr(tool.func, '__qualname__', tool.func)}): "
                    f"the name is already taken by {what}; pass name=... to register it under another name"
                )
            self._tools[tool.name] = tool
        return tool

    def unregister(self, name: str) -> None:
        with self._lock:
            self.get(name)
            del self._tools[name]

    # lookup --------------------------------------------------------------------------------------

    def names(self) -> list[str]:
        return list(self._tools)

    def get(self, name: str) -> Tool:
        tool = self._tools.get(name)
        if tool is None:
            available = ", ".join(self._tools) or "(none)"
            raise ToolCallError(f"unknown tool {name!r}; available tools: {available}")
        return tool

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        return len(self._tools)

    def __repr__(self) -> str:
        return f"ToolRegistry({self.names()!r})"

    def select(self, enabled: Iterable[str] | None = None) -> list[Tool]:
        """The tools in registration order, restricted to `enabled` names (None: all)."""
        if enabled is None:
            return list(self)
        wanted = [enabled] if isinstance(enabled, str) else list(enabled)
        unknown = [name for name in wanted if name not in self._tools]
        if unknown:
            raise ConfigError(
                f"unknown tool(s) {', '.join(map(repr, unknown))}; available tools: {', '.join(self._tools) or '(none)'}"
            )
        chosen = set(wanted)
        return [tool for tool in self if tool.name in chosen]

    def chatglm3_tools(self, enabled: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The callable tools as ChatGLM3 lists them in the system prompt (unavailable ones are left out)."""
        return [tool.chatglm3() for tool in self.select(enabled) if tool.available]

    def openai_tools(self, enabled: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The callable tools in OpenAI's function-calling format."""
        return [tool.openai() for tool in self.select(enabled) if tool.available]

    # calling -------------------------------------------------------------------------------------

    def call(self, name: str, arguments: dict[str, Any], timeout: float | None = 30.0) -> "ToolResult":
        """Validate arguments and run the tool with a timeout; model mistakes give ok=False, never raise."""
        from .calling import call_tool

        return call_tool(self, name, arguments, timeout=timeout)

    # MCP servers ---------------------------------------------------------------------------------

    def add_mcp(self, manager: "McpManager") -> list[str]:
        """Register the tools of a started McpManager's servers; returns problems.

        Naming rule: an MCP tool keeps its bare name when no other tool (registered here or on another
        server) has it, else it is registered as `<server>__<tool>`; it never replaces a registered tool.
        """
        problems: list[str] = []
        self.mcp = manager
        for tool in manager.tools(taken=self.names()):
            try:
                self.add(tool)
            except ToolRegistrationError as exc:
                problems.append(str(exc))
                manager.note_problem(tool.source[4:], str(exc))
        return problems

    def close(self) -> None:
        """Stop the MCP servers this registry started (their child processes end); safe to call twice."""
        if self.mcp is not None:
            self.mcp.close()

    # user folders --------------------------------------------------------------------------------

    def load_folder(self, path: str | Path) -> list[ToolLoadFailure]:
        """Import every .py file of a folder (sorted, not recursive) with `@register_tool` landing here.

        A file that fails to import or register is recorded with its name and rolled back (none of its
        tools stay registered); the other files still load. Returns the failures.
        """
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"tool folder {str(folder)!r} does not exist or is not a directory")
        failures: list[ToolLoadFailure] = []
        for file in sorted(folder.glob("*.py")):
            if file.name.startswith("."):
                continue
            failure = self._load_file(file)
            if failure is not None:
                failures.append(failure)
        return failures

    def _load_file(self, file: Path) -> ToolLoadFailure | None:
        module_name = f"_composite_user_tools_{abs(hash(str(file.resolve())))}_{re.sub(r'[^A-Za-z0-9_]', '_', file.stem)}"
        before = set(self._tools)
        with _loading_lock:
            _loading_stack().append(self)
            previous_file, _loading.file = getattr(_loading, "file", None), file
            try:
                spec = importlib.util.spec_from_file_location(module_name, file)
                if spec is None or spec.loader is None:
                    return ToolLoadFailure(file, "cannot be imported as a Python module")
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                spec.loader.exec_module(module)
            except (Exception, SystemExit) as exc:  # user code may raise anything; record it, load the rest
                sys.modules.pop(module_name, None)
                with self._lock:
                    for added in set(self._tools) - before:
                        del self._tools[added]
                return ToolLoadFailure(file, _describe_load_error(exc, file), exc)
            finally:
                _loading_stack().pop()
                _loading.file = previous_file
        return None


def _describe_load_error(exc: BaseException, file: Path) -> str:
    """'Type: message (line N)' with the line in the tool file where it went wrong, when known."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, SyntaxError) and exc.lineno and (exc.filename in (None, str(file))):
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == str(file)]
    if lines:
        text += f" (line {lines[-1]})"
    return text
