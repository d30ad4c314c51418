"""Safe tool calls: parse a model's `tool_call(k=v, ...)` with `ast` (literal values only, never eval),
validate the arguments with the tool's pydantic model, and run the tool in a worker thread with a timeout.
"""
from __future__ import annotations

import ast
import asyncio
import inspect
import json
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from .errors import ToolCallError, ToolTimeoutError

if TYPE_CHECKING:  # the registry lives in the top-level `tools` package, which imports this module
    from tools.registry import Tool, ToolRegistry

__all__ = [
    "ToolResult",
    "parse_tool_call",
    "validate_arguments",
    "execute_tool",
    "call_tool",
    "run_tool_call",
    "MAX_CALL_CHARS",
    "DEFAULT_TIMEOUT",
]

MAX_CALL_CHARS = 20_000
DEFAULT_TIMEOUT = 30.0
MAX_ABANDONED = 8
MAX_ERROR_CHARS = 500
_EXPECTED = "expected tool_call(name=value, ...) with literal values (strings, numbers, lists, dicts, True/False/None)"


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
    if isinstance(value, str):
        return value
    try:
        # pydantic's encoder handles models, tuples, sets, dates, enums; unknown objects raise
        jsonable = to_jsonable_python(value)
        return json.dumps(jsonable, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, PydanticSerializationError):
        return str(value)


# ---------------------------------------------------------------------------------------------------
# parsing

_CONSTANT_TYPES = (str, int, float, bool, type(None))
_NODE_NAMES: dict[type, str] = {
    ast.Name: "a variable name",
    ast.Attribute: "an attribute access",
    ast.Call: "a function call",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a generator expression",
    ast.JoinedStr: "an f-string",
    ast.FormattedValue: "an f-string",
    ast.Lambda: "a lambda",
    ast.Starred: "*-unpacking",
    ast.BinOp: "an operator expression (write the computed value instead)",
    ast.BoolOp: "a boolean expression",
    ast.Compare: "a comparison",
    ast.IfExp: "a conditional expression",
    ast.Subscript: "a subscript",
    ast.NamedExpr: "an assignment expression",
    ast.Await: "an await expression",
    ast.Yield: "a yield expression",
    ast.YieldFrom: "a yield expression",
    ast.Slice: "a slice",
}


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return f"a variable name ({node.id}); put strings in quotes"
    if isinstance(node, ast.Call):
        func = node.func
        called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else "?"
        return f"a function call ({called}(...))"
    if isinstance(node, ast.Constant):
        return _article(f"{type(node.value).__name__} constant")
    return _NODE_NAMES.get(type(node), _article(f"{type(node).__name__} expression"))


def _article(text: str) -> str:
    return f"{'an' if text[:1].lower() in 'aeiou' else 'a'} {text}"


def _first_non_literal(node: ast.AST) -> ast.AST | None:
    """The first node in a value expression that is not a plain literal, or None if it is all literals."""
    if isinstance(node, ast.Constant):
        return None if isinstance(node.value, _CONSTANT_TYPES) else node
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = node.operand
        ok = isinstance(operand, ast.Constant) and type(operand.value) in (int, float)
        return None if ok else node
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        for element in node.elts:
            bad = _first_non_literal(element)
            if bad is not None:
                return bad
        return None
    if isinstance(node, ast.Dict):
        for key in node.keys:
            if key is None:  # {**other}
                return ast.Starred()
        for child in [*node.keys, *node.values]:
            bad = _first_non_literal(child)  # type: ignore[arg-type]
            if bad is not None:
                return bad
        return None
    return node


def _strip_fence(code: str) -> str:
    text = code.strip()
    if text.startswith("```"):
        text = text[3:]
        first, _, rest = text.partition("\n")
        text = rest if first.strip().isidentifier() or not first.strip() else text
        if text.rstrip().endswith("```"):
            text = text.rstrip()[:-3]
    return text.strip()


def parse_tool_call(code: str) -> dict[str, Any]:
    """The keyword arguments of a ChatGLM3 call body such as `tool_call(city_name="Beijing")`.

    Only a single `tool_call(...)` expression with keyword arguments whose values are literals is
    accepted. Anything else raises ToolCallError with a message the model can act on. Nothing is
    ever evaluated: values are checked node by node, then converted with `ast.literal_eval`.
    """
    if not isinstance(code, str):
        raise ToolCallError(f"the tool call must be text, got {type(code).__name__}; {_EXPECTED}")
    if len(code) > MAX_CALL_CHARS:
        raise ToolCallError(f"the tool call is too long ({len(code)} characters, at most {MAX_CALL_CHARS}); {_EXPECTED}")
    text = _strip_fence(code)
    if not text:
        raise ToolCallError(f"the tool call is empty; {_EXPECTED}")
    try:
        tree = ast.parse(text, mode="exec")
    except SyntaxError as exc:
        where = f" (line {exc.lineno})" if exc.lineno else ""
        reason = exc.msg if len(exc.msg) <= 120 else exc.msg[:117] + "..."
        raise ToolCallError(f"the tool call is not valid Python syntax: {reason}{where}; {_EXPECTED}") from None
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes, absurd nesting
        raise ToolCallError(f"the tool call cannot be parsed ({type(exc).__name__}); {_EXPECTED}") from None
    if len(tree.body) != 1:
        raise ToolCallError(
            f"the tool call must be a single tool_call(...) expression, got {len(tree.body)} statements; {_EXPECTED}"
        )
    statement = tree.body[0]
    if not isinstance(statement, ast.Expr):
        kind = _article(f"{type(statement).__name__.lower()} statement")
        raise ToolCallError(f"the tool call must be a single tool_call(...) expression, got {kind}; {_EXPECTED}")
    call = statement.value
    if not isinstance(call, ast.Call):
        raise ToolCallError(f"the tool call must call tool_call(...), got {_describe(call)}; {_EXPECTED}")
    if not (isinstance(call.func, ast.Name) and call.func.id == "tool_call"):
        raise ToolCallError(f"the tool call must call tool_call(...), got {_describe(call)}; {_EXPECTED}")
    if call.args:
        what = "*-unpacking" if any(isinstance(arg, ast.Starred) for arg in call.args) else "positional arguments"
        raise ToolCallError(f"tool_call(...) takes keyword arguments only, got {what}; write tool_call(name=value, ...)")
    arguments: dict[str, Any] = {}
    for keyword in call.keywords:
        if keyword.arg is None:
            raise ToolCallError("tool_call(...) does not accept **-unpacking; write each argument as name=value")
        if keyword.arg in arguments:  # the compiler would reject this, ast.parse alone does not
            raise ToolCallError(f"argument {keyword.arg!r} is given more than once; give each argument once")
        bad = _first_non_literal(keyword.value)
        if bad is not None:
            raise ToolCallError(
                f"argument {keyword.arg!r} must be a literal value (string, number, list, dict, True/False/None), "
                f"got {_describe(bad)}"
            )
        try:
            arguments[keyword.arg] = ast.literal_eval(keyword.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:  # e.g. unhashable dict key
            raise ToolCallError(
                f"argument {keyword.arg!r} is not a valid literal value ({type(exc).__name__}: {exc}); "
                "use strings, numbers, lists, dicts, True/False/None"
            ) from None
    return arguments


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
            value = tool.func(**kwargs)
            if inspect.isawaitable(value):
                value = asyncio.run(_await(value))
            outcome["value"] = value
        except BaseException as exc:  # noqa: BLE001 - any failure of user code (even SystemExit) becomes a result
            outcome["error"] = exc

    worker = threading.Thread(target=work, name=f"tool:{tool.name}", daemon=True)
    worker.start()
    worker.join(timeout)
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
    try:
        kwargs = validate_arguments(tool, arguments)
    except ToolCallError as exc:
        return failed(exc, str(exc))
    ok, value, exc, timed_out = execute_tool(tool, kwargs, timeout)
    if not ok and exc is not None:
        message = str(exc) if isinstance(exc, ToolTimeoutError) else _describe_exception(exc)
        return failed(exc, message, timed_out)
    return ToolResult(name=name, arguments=shown_args, ok=True, value=value, duration=time.perf_counter() - start)


def run_tool_call(
    registry: "ToolRegistry", name: str, code: str, timeout: float | None = DEFAULT_TIMEOUT
) -> ToolResult:
    """Parse a ChatGLM3 call body, validate it and run the tool; never raises for model mistakes."""
    start = time.perf_counter()
    if name not in registry:  # the tool name is the first mistake to report, before the arguments
        return call_tool(registry, name, {}, timeout)
    try:
        arguments = parse_tool_call(code)
    except ToolCallError as exc:
        return ToolResult(
            name=name, arguments={}, ok=False, error=str(exc), duration=time.perf_counter() - start, exception=exc
        )
    return call_tool(registry, name, arguments, timeout)
