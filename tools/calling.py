"""Calling a tool: validate the arguments (the tool's pydantic model, or the JSON Schema an MCP server gave),
run it in a worker thread with a timeout, and turn the outcome into a `ToolResult` the model reads back.
"""
from __future__ import annotations

import asyncio
import base64
import inspect
import json
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from composite.errors import McpError, ToolCallError, ToolError, ToolTimeoutError

if TYPE_CHECKING:
    from .registry import Tool, ToolRegistry

__all__ = [
    "ToolResult",
    "ToolOutput",
    "ImageData",
    "render_value",
    "validate_arguments",
    "execute_tool",
    "call_tool",
    "DEFAULT_TIMEOUT",
]

DEFAULT_TIMEOUT = 30.0
MAX_ABANDONED = 8
MAX_ERROR_CHARS = 500
_OWN_TIMEOUT_GRACE = 8.0


@dataclass
class ImageData:
    """An image a tool returned (an MCP image content block): shown on the page, described to the model."""

    mime_type: str
    data: bytes

    def to_extra(self) -> dict[str, str]:
        return {"mime_type": self.mime_type, "data": base64.b64encode(self.data).decode("ascii")}


@dataclass
class ToolOutput:
    """A rich tool result: text for the model plus images for the user (MCP results are converted to this)."""

    text: str
    images: list[ImageData] = field(default_factory=list)

    def observation_text(self) -> str:
        notes = [f"[image {i + 1}: {img.mime_type}, {len(img.data)} bytes, shown to the user]"
                 for i, img in enumerate(self.images)]
        return "\n".join([part for part in [self.text, *notes] if part]) or "(no output)"


@dataclass
class ToolResult:
    """The outcome of one tool call; `observation()` is what the model reads back."""

    name: str
    arguments: dict[str, Any]
    ok: bool
    value: Any = None
    error: str = ""
    duration: float = 0.0
    exception: BaseException | None = field(default=None, repr=False, compare=False)  # for logs, never shown
    timed_out: bool = False

    @property
    def images(self) -> list[ImageData]:
        return list(self.value.images) if self.ok and isinstance(self.value, ToolOutput) else []

    def observation(self, max_chars: int | None = 4000) -> str:
        """The value as compact JSON (strings as they are, str() when not JSON), or "Error: ..."."""
        if not self.ok:
            text = f"Error: {self.error}"
        else:
            text = render_value(self.value)
        if max_chars is not None and len(text) > max_chars:
            text = text[:max_chars] + f"... [truncated, {len(text) - max_chars} more characters]"
        return text


def render_value(value: Any) -> str:
    """A tool's return value as observation text."""
    if isinstance(value, ToolOutput):
        return value.observation_text()
    if isinstance(value, str):
        return value
    try:
        # pydantic's encoder handles models, tuples, sets, dates, enums; unknown objects raise
        jsonable = to_jsonable_python(value)
        return json.dumps(jsonable, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, PydanticSerializationError):
        return str(value)


# ---------------------------------------------------------------------------------------------------
# validation


def _loc(loc: tuple[Any, ...]) -> str:
    head, *rest = loc or ("?",)
    return f"{head}" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in rest)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validate_arguments(tool: "Tool", arguments: Any) -> dict[str, Any]:
    """The validated keyword arguments for tool.func; ToolCallError with one line per problem otherwise."""
    if not isinstance(arguments, dict):
        raise ToolCallError(f"arguments for tool {tool.name!r} must be a dict of name=value, got {type(arguments).__name__}")
    if tool.model is None:
        return _validate_json_schema(tool, arguments)
    try:
        instance = tool.model.model_validate(arguments)
    except ValidationError as exc:
        accepted = ", ".join(tool.schema.get("properties", {})) or "no arguments"
        problems = []
        for error in exc.errors(include_url=False):
            where = _loc(tuple(error.get("loc", ())))
            kind = error.get("type", "")
            if kind == "missing" and len(error.get("loc", ())) == 1:
                problems.append(f"- missing required argument {where!r}")
            elif kind == "missing":
                problems.append(f"- argument {error['loc'][0]!r}: missing {where}")
            elif kind == "extra_forbidden":
                problems.append(f"- unexpected argument {where!r} (the tool takes: {accepted})")
            else:
                problems.append(f"- argument {where!r}: {error.get('msg', 'invalid')}, got {_short(error.get('input'))}")
        raise ToolCallError(f"invalid arguments for tool {tool.name!r}:\n" + "\n".join(problems)) from None
    # Keep nested models as model instances and tuples as tuples: read attributes, do not model_dump.
    return {
        (info.alias or field_name): getattr(instance, field_name)
        for field_name, info in type(instance).model_fields.items()
    }


def _validate_json_schema(tool: "Tool", arguments: dict[str, Any]) -> dict[str, Any]:
    """Check arguments against a JSON Schema given as is (an MCP tool's inputSchema)."""
    import jsonschema

    try:
        validator_cls = jsonschema.validators.validator_for(tool.schema)
        validator = validator_cls(tool.schema)
        errors = sorted(validator.iter_errors(arguments), key=lambda e: (list(e.path), e.message))
    except (jsonschema.exceptions.SchemaError, jsonschema.exceptions.UnknownType, TypeError) as exc:
        raise ToolCallError(f"tool {tool.name!r} has an invalid JSON Schema, so its arguments cannot be checked: "
                            f"{str(exc).splitlines()[0]}") from None
    if not errors:
        return dict(arguments)
    accepted = ", ".join(tool.schema.get("properties", {})) or "no arguments"
    problems = []
    for error in errors[:10]:
        where = _loc(tuple(error.path)) if error.path else ""
        if error.validator == "required":
            # jsonschema reports each missing name as its own error; list every name once
            missing = [name for name in error.validator_value if name not in (error.instance or {})]
            prefix = f"argument {where!r}: " if where else ""
            lines = [f"- {prefix}missing required argument {name!r}" for name in missing]
            problems += [line for line in lines if line not in problems]
        elif error.validator == "additionalProperties" and not where:
            extra = [name for name in arguments if name not in tool.schema.get("properties", {})]
            problems += [f"- unexpected argument {name!r} (the tool takes: {accepted})" for name in extra]
        else:
            message = error.message if len(error.message) <= 160 else error.message[:157] + "..."
            problems.append(f"- argument {where!r}: {message}" if where else f"- {message}")
    raise ToolCallError(f"invalid arguments for tool {tool.name!r}:\n" + "\n".join(problems)) from None


# ---------------------------------------------------------------------------------------------------
# execution

_abandoned: set[threading.Thread] = set()
_abandoned_lock = threading.Lock()


def _live_abandoned() -> int:
    with _abandoned_lock:
        for thread in [t for t in _abandoned if not t.is_alive()]:
            _abandoned.discard(thread)
        return len(_abandoned)


def _describe_exception(exc: BaseException) -> str:
    message = str(exc).strip()
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


# Timeouts: a Python thread cannot be killed, so a timed-out call returns a timeout result at once and its
# worker is abandoned: a daemon thread that runs on until the tool returns, whose result is discarded and
# which never blocks interpreter exit. A process would be killable, but tools are arbitrary in-process
# callables (closures, registries, open clients) that cannot be pickled across. While MAX_ABANDONED
# abandoned workers are still alive, new calls are refused instead of piling up threads.


def execute_tool(tool: "Tool", kwargs: dict[str, Any], timeout: float | None = DEFAULT_TIMEOUT) -> tuple[bool, Any, BaseException | None, bool]:
    """Run tool.func(**kwargs) in a daemon thread: (ok, value, exception, timed_out)."""
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be positive or None, got {timeout}")
    if _live_abandoned() >= MAX_ABANDONED:
        exc = ToolTimeoutError(
            f"{MAX_ABANDONED} timed-out tool calls are still running; refusing to start tool {tool.name!r} until they end"
        )
        return False, None, exc, False
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            value = tool.invoke(kwargs, timeout) if tool.invoke is not None else tool.func(**kwargs)
            if inspect.isawaitable(value):
                value = asyncio.run(_await(value))
            outcome["value"] = value
        except BaseException as exc:  # noqa: BLE001 - any failure of user code (even SystemExit) becomes a result
            outcome["error"] = exc

    worker = threading.Thread(target=work, name=f"tool:{tool.name}", daemon=True)
    worker.start()
    # a source with its own timeout (MCP) gets a grace period to report it (and to check its server)
    worker.join(None if timeout is None else timeout + (_OWN_TIMEOUT_GRACE if tool.invoke is not None else 0))
    if worker.is_alive():
        with _abandoned_lock:
            _abandoned.add(worker)
        return False, None, ToolTimeoutError(f"tool {tool.name!r} timed out after {timeout:g} s"), True
    if "error" in outcome:
        return False, None, outcome["error"], False
    return True, outcome.get("value"), None, False


async def _await(awaitable: Any) -> Any:
    return await awaitable


def call_tool(
    registry: "ToolRegistry", name: str, arguments: Any, timeout: float | None = DEFAULT_TIMEOUT
) -> ToolResult:
    """Validate and run one call by name; every model mistake or tool failure gives ok=False."""
    start = time.perf_counter()
    shown_args = dict(arguments) if isinstance(arguments, dict) else {}

    def failed(error: BaseException, message: str | None = None, timed_out: bool = False) -> ToolResult:
        return ToolResult(
            name=name,
            arguments=shown_args,
            ok=False,
            error=message if message is not None else _describe_exception(error),
            duration=time.perf_counter() - start,
            exception=error,
            timed_out=timed_out,
        )

    if name not in registry:
        available = ", ".join(registry.names()) or "(none)"
        error = ToolCallError(f"unknown tool {name!r}; available tools: {available}")
        return failed(error, str(error))
    tool = registry.get(name)
    reason = tool.unavailable_reason()
    if reason:
        error = ToolError(f"tool {name!r} is unavailable: {reason}")
        return failed(error, str(error))
    try:
        kwargs = validate_arguments(tool, arguments)
    except ToolCallError as exc:
        return failed(exc, str(exc))
    ok, value, exc, timed_out = execute_tool(tool, kwargs, timeout)
    if not ok and exc is not None:
        # our own errors (timeouts, an MCP server's answer) read well as they are; user code's get their type
        message = str(exc) if isinstance(exc, (ToolTimeoutError, McpError)) else _describe_exception(exc)
        return failed(exc, message, timed_out)
    return ToolResult(name=name, arguments=shown_args, ok=True, value=value, duration=time.perf_counter() - start)
