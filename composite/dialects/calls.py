"""The safe parsers of each tool-call syntax: ChatGLM3's `tool_call(k=v, ...)` by `ast` (literal values
only, nothing is ever evaluated), Hermes `<tool_call>{json}</tool_call>` / bare JSON, and OpenAI's
JSON-string arguments. Each returns `Call`s that carry the arguments or the parse error.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from ..errors import ToolCallError
from ..messages import Call, Message

__all__ = [
    "MAX_CALL_CHARS",
    "extract_code_block",
    "parse_tool_call",
    "chatglm3_call",
    "json_calls",
    "openai_call",
    "call_of_message",
]

MAX_CALL_CHARS = 20_000
_EXPECTED = "expected tool_call(name=value, ...) with literal values (strings, numbers, lists, dicts, True/False/None)"
_EXPECTED_JSON = 'expected <tool_call>{"name": "tool", "arguments": {...}}</tool_call> with a JSON object of arguments'
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:\n?```|\Z)", re.DOTALL)
_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.DOTALL)
_NAMED = re.compile(r'"name"\s*:\s*"([^"]{1,200})"')


def extract_code_block(text: str) -> str | None:
    """The body of the last fenced code block in text (an unterminated last block counts), or None."""
    blocks = _FENCE.findall(text)
    if not blocks:
        return None
    return blocks[-1][1]


# ---------------------------------------------------------------------------------------------------
# ChatGLM3: tool_call(name=value, ...) inside a ```python block

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


def chatglm3_call(name: str, content: str, call_id: str = "") -> Call:
    """The Call of a ChatGLM3 tool turn: metadata `name`, content a ```python tool_call(...)``` block."""
    code = extract_code_block(content)
    try:
        arguments = parse_tool_call(code if code is not None else content)
    except ToolCallError as exc:
        return Call(name, None, str(exc), call_id)
    return Call(name, arguments, "", call_id)


# ---------------------------------------------------------------------------------------------------
# JSON calls: Hermes <tool_call>{...}</tool_call> blocks, a bare JSON object, OpenAI's argument strings


def _arguments_of(raw: Any, name: str) -> tuple[dict[str, Any] | None, str]:
    if raw is None:
        return {}, ""
    if isinstance(raw, str):  # some models (and OpenAI) give the arguments as a JSON string
        if not raw.strip():
            return {}, ""
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            return None, f"the arguments of tool {name!r} are not valid JSON ({exc}); expected a JSON object"
    if not isinstance(raw, dict):
        return None, f"the arguments of tool {name!r} must be a JSON object, got {type(raw).__name__}"
    return raw, ""


def _json_call(raw: str, call_id: str = "") -> Call:
    if len(raw) > MAX_CALL_CHARS:
        named = _NAMED.search(raw[:2000])
        name = named.group(1) if named else "unknown"
        return Call(name, None, f"the tool call is too long ({len(raw)} characters, at most {MAX_CALL_CHARS})", call_id)
    try:
        data = json.loads(raw)
    except ValueError as exc:
        named = _NAMED.search(raw)
        name = named.group(1) if named else "unknown"
        return Call(name, None, f"the tool call is not valid JSON ({exc}); {_EXPECTED_JSON}", call_id)
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
        return Call("unknown", None, f"the tool call has no \"name\"; {_EXPECTED_JSON}", call_id)
    name = data["name"]
    arguments, error = _arguments_of(data.get("arguments", data.get("parameters")), name)
    return Call(name, arguments, error, str(data.get("id") or call_id))


def json_calls(text: str) -> list[Call]:
    """Every Hermes `<tool_call>` block of text in order, else one bare JSON call object, else []."""
    blocks = [match.group(1) for match in _HERMES.finditer(text)]
    if blocks:
        return [_json_call(raw) for raw in blocks]
    stripped = text.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        call = _json_call(stripped)
        # a bare JSON answer that is not a call stays text; a bare call with bad arguments is reported
        if call.name != "unknown" and '"name"' in stripped and ('"arguments"' in stripped or '"parameters"' in stripped):
            return [call]
    return []


def openai_call(name: str, arguments: Any, call_id: str = "") -> Call:
    """A Call from an OpenAI-style tool call: `arguments` is a JSON string (or an already parsed dict)."""
    if isinstance(arguments, str) and len(arguments) > MAX_CALL_CHARS:
        return Call(name, None, f"the arguments are too long ({len(arguments)} characters, at most {MAX_CALL_CHARS})",
                    call_id)
    parsed, error = _arguments_of(arguments, name)
    return Call(name, parsed, error, call_id)


def call_of_message(message: Message) -> Call:
    """The Call a stored assistant call message carries (for replay and for resuming a paused turn).

    The arguments parsed when the call was generated are kept in `extra["arguments"]` (or the parse error
    in `extra["call_error"]`); a message without either (an imported conversation) is parsed from its
    content, ChatGLM3 syntax first, then JSON.
    """
    call_id = str(message.extra.get("call_id") or "")
    name = message.metadata
    arguments = message.extra.get("arguments")
    if isinstance(arguments, dict):
        return Call(name, arguments, "", call_id)
    if message.extra.get("call_error"):
        return Call(name, None, str(message.extra["call_error"]), call_id)
    if name == "interpreter":
        return Call(name, {"code": extract_code_block(message.content) or ""}, "", call_id)
    if "tool_call(" in message.content or "```" in message.content:
        return chatglm3_call(name, message.content, call_id)
    found = json_calls(message.content)
    if found:
        call = found[0]
        return Call(name, call.arguments, call.error, call_id)
    return chatglm3_call(name, message.content, call_id)
