"""Deprecated import path (kept for one release): call parsing moved to `composite.dialects.calls`,
validation and execution to `tools.calling` (the one route: `ToolRegistry.call`).
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from tools.calling import DEFAULT_TIMEOUT, ToolResult, call_tool, execute_tool, render_value, validate_arguments

from .dialects.calls import MAX_CALL_CHARS, parse_tool_call
from .errors import ToolCallError

if TYPE_CHECKING:
    from tools.registry import ToolRegistry

__all__ = [
    "ToolResult",
    "parse_tool_call",
    "validate_arguments",
    "execute_tool",
    "call_tool",
    "render_value",
    "run_tool_call",
    "MAX_CALL_CHARS",
    "DEFAULT_TIMEOUT",
]


def run_tool_call(
    registry: "ToolRegistry", name: str, code: str, timeout: float | None = DEFAULT_TIMEOUT
) -> ToolResult:
    """Parse a ChatGLM3 call body, then `registry.call` it; never raises for model mistakes."""
    start = time.perf_counter()
    if name not in registry:  # the tool name is the first mistake to report, before the arguments
        return registry.call(name, {}, timeout)
    try:
        arguments = parse_tool_call(code)
    except ToolCallError as exc:
        return ToolResult(
            name=name, arguments={}, ok=False, error=str(exc), duration=time.perf_counter() - start, exception=exc
        )
    return registry.call(name, arguments, timeout)
