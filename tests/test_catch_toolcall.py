"""Tool-call parsing checked against the text: an accepted call must give exactly its arguments.

The older property tests accepted any dict from the parser (a parser returning {} passed). Here every
accepted text is compared with an independent reading of the same text (the standard library's
`ast` and `ast.literal_eval`, which never execute code).
"""

from __future__ import annotations

import ast
import keyword

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from composite.errors import ToolCallError
from composite.dialects import call_of_message, chatglm3_call, json_calls, openai_call
from composite.messages import Call, Message
from composite.toolcall import MAX_CALL_CHARS, parse_tool_call, validate_arguments
from tools import ToolRegistry
from tools.registry import Tool

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::SyntaxWarning")
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _expected_arguments(text: str) -> dict:
    """The keyword arguments the text spells, read with ast (the oracle for accepted texts)."""
    body = text.strip()
    if body.startswith("```"):  # a fenced block: drop the opening line and the closing fence
        body = body.split("\n", 1)[1] if "\n" in body else body[3:]
        body = body.rstrip()
        body = body[:-3] if body.endswith("```") else body
    tree = ast.parse(body.strip())
    (statement,) = tree.body
    call = statement.value
    assert isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "tool_call"
    assert not call.args
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}


def _check(text: str) -> None:
    try:
        result = parse_tool_call(text)
    except ToolCallError as exc:
        assert str(exc)
        return
    assert result == _expected_arguments(text)
    assert list(result) == list(_expected_arguments(text))  # order kept: the model's order


FRAGMENTS = [
    "tool_call", "(", ")", "x=", "y=", "z=", ",", "=", "[", "]", "{", "}", ":", "1", "-2.5", "'s'", '"t"', "None",
    "True", "False", " ", "\n", "*", "**", ".", "#", "0x1F", "...", "a", "b'x'", "2j",
]


@SETTINGS
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=20).map("".join))
def test_property_accepted_fragments_give_exactly_their_arguments(text):
    _check(text)


_identifiers = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True).filter(lambda s: not keyword.iskeyword(s))
_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=8,
)


@SETTINGS
@given(st.dictionaries(_identifiers, _values, min_size=1, max_size=4), st.sampled_from(["", " ", "\n"]),
       st.booleans())
def test_property_well_formed_calls_are_accepted_with_their_values(arguments, space, fenced):
    code = "tool_call(" + f",{space}".join(f"{name}={value!r}" for name, value in arguments.items()) + ")"
    if fenced:
        code = f"```python\n{code}\n```"
    assert parse_tool_call(code) == arguments
    _check(code)


def test_the_oracle_would_catch_a_parser_that_drops_arguments():
    assert _expected_arguments('tool_call(a=1, b="x")') == {"a": 1, "b": "x"}
    assert _expected_arguments('```python\ntool_call(c=[1, 2])\n```') == {"c": [1, 2]}
    with pytest.raises(AssertionError):
        assert {} == _expected_arguments("tool_call(a=1)")


# ---------------------------------------------------------------------------------------------------
# the model reads these messages to correct itself: each names what was wrong and what is expected

EXPECTED = ("expected tool_call(name=value, ...) with literal values (strings, numbers, lists, dicts, "
            "True/False/None)")
LITERAL = "must be a literal value (string, number, list, dict, True/False/None), got"


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (b"x", f"the tool call must be text, got bytes; {EXPECTED}"),
        (None, f"the tool call must be text, got NoneType; {EXPECTED}"),
        ("tool_call(a=1", f"the tool call is not valid Python syntax: '(' was never closed (line 1); {EXPECTED}"),
        ("tool_call(\n  a=1,\n  b=)", f"the tool call is not valid Python syntax: invalid syntax (line 3); {EXPECTED}"),
        ("tool_call(1, 2)", "tool_call(...) takes keyword arguments only, got positional arguments; "
                            "write tool_call(name=value, ...)"),
        ("tool_call(*xs)", "tool_call(...) takes keyword arguments only, got *-unpacking; write tool_call(name=value, ...)"),
        ("tool_call(**kw)", "tool_call(...) does not accept **-unpacking; write each argument as name=value"),
        ("tool_call(a={[1]: 2})", "argument 'a' is not a valid literal value (TypeError: unhashable type: 'list'); "
                                  "use strings, numbers, lists, dicts, True/False/None"),
        ("os.system('ls')", f"the tool call must call tool_call(...), got a function call (system(...)); {EXPECTED}"),
        ("f(a=1)", f"the tool call must call tool_call(...), got a function call (f(...)); {EXPECTED}"),
        ("a[0](x=1)", f"the tool call must call tool_call(...), got a function call (?(...)); {EXPECTED}"),
        ("import os", f"the tool call must be a single tool_call(...) expression, got an import statement; {EXPECTED}"),
        ("x = 1", f"the tool call must be a single tool_call(...) expression, got an assign statement; {EXPECTED}"),
        ("tool_call(a=1); tool_call(b=2)",
         f"the tool call must be a single tool_call(...) expression, got 2 statements; {EXPECTED}"),
        ("tool_call(a=f(1))", f"argument 'a' {LITERAL} a function call (f(...))"),
        ("tool_call(a=[x for x in y])", f"argument 'a' {LITERAL} a comprehension"),
        ("tool_call(a=x)", f"argument 'a' {LITERAL} a variable name (x); put strings in quotes"),
        ("tool_call(a=1, a=2)", "argument 'a' is given more than once; give each argument once"),
        ("tool_call(a=1+2)", f"argument 'a' {LITERAL} an operator expression (write the computed value instead)"),
        ("tool_call(a=-'s')", f"argument 'a' {LITERAL} an UnaryOp expression"),
        ("tool_call(a=b'x')", f"argument 'a' {LITERAL} a bytes constant"),
        ("tool_call(a=...)", f"argument 'a' {LITERAL} an ellipsis constant"),
        ("tool_call(a=2j)", f"argument 'a' {LITERAL} a complex constant"),
    ],
)
def test_each_rejection_says_what_was_wrong_and_what_is_expected(code, message):
    with pytest.raises(ToolCallError) as info:
        parse_tool_call(code)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("code", "arguments"),
    [
        ("tool_call(a=-1, b=+2.5)", {"a": -1, "b": 2.5}),
        ("```\ntool_call(a=1)\n```", {"a": 1}),
        ("```python\ntool_call(a=1)\n```", {"a": 1}),
        ("```tool_call(a=1)```", {"a": 1}),
        ("``` \ntool_call(a=2)\n```", {"a": 2}),
        ("```json\ntool_call(a=3)", {"a": 3}),
    ],
)
def test_fenced_and_signed_forms_are_accepted(code, arguments):
    assert parse_tool_call(code) == arguments


# ---------------------------------------------------------------------------------------------------
# argument validation (tools/calling.py): the model reads these messages to fix its call, and a
# call that passes must reach the tool with exactly the arguments it gave


class Point(BaseModel):
    x: int
    y: int


@pytest.fixture(scope="module")
def typed_tools() -> ToolRegistry:
    registry = ToolRegistry()

    @registry.register
    def plot(point: Point, label: str = "") -> dict:
        """Plot a point.

        Args:
            point: where
            label: the caption
        """
        return {"point": point, "label": label}

    @registry.register
    def route(stops: list[Point], note: str = "") -> int:
        """Count the stops of a route.

        Args:
            stops: the points in order
            note: a remark
        """
        return len(stops)

    @registry.register
    def ping() -> str:
        """Answer pong."""
        return "pong"

    @registry.register
    def dump(json: str, model_name: str = "m") -> str:
        """Echo two arguments whose names pydantic reserves.

        Args:
            json: text
            model_name: a name
        """
        return f"{json}|{model_name}"

    return registry


def _problems(tool: Tool, arguments) -> str:
    with pytest.raises(ToolCallError) as info:
        validate_arguments(tool, arguments)
    return str(info.value)


def test_validation_rejects_arguments_that_are_not_a_dict(typed_tools):
    assert _problems(typed_tools.get("plot"), ["Oslo"]) == (
        "arguments for tool 'plot' must be a dict of name=value, got list")
    assert _problems(_schema_tool({"type": "object"}), "x=1") == (
        "arguments for tool 'remote' must be a dict of name=value, got str")


def test_validation_of_a_tool_without_parameters_says_it_takes_none(typed_tools):
    assert validate_arguments(typed_tools.get("ping"), {}) == {}
    assert _problems(typed_tools.get("ping"), {"x": 1}) == (
        "invalid arguments for tool 'ping':\n- unexpected argument 'x' (the tool takes: no arguments)")


def test_validation_names_the_nested_field_that_is_wrong(typed_tools):
    plot = typed_tools.get("plot")
    assert _problems(plot, {"point": {"x": 1}}) == "invalid arguments for tool 'plot':\n- argument 'point': missing point.y"
    assert _problems(plot, {"point": {"x": "left", "y": 2}}) == (
        "invalid arguments for tool 'plot':\n- argument 'point.x': Input should be a valid integer, unable to parse "
        "string as an integer, got 'left'")


def test_validation_locates_a_field_inside_a_list_of_models(typed_tools):
    assert _problems(typed_tools.get("route"), {"stops": [{"x": 1, "y": 2}, {"x": 1, "y": "north"}]}) == (
        "invalid arguments for tool 'route':\n- argument 'stops[1].y': Input should be a valid integer, unable to "
        "parse string as an integer, got 'north'")


def test_validation_shows_at_most_60_characters_of_a_wrong_value(typed_tools):
    route = typed_tools.get("route")
    fits = "n" * 58  # its repr (with quotes) is exactly 60 characters
    assert _problems(route, {"stops": [], "note": 7}).endswith("got 7")
    assert _problems(route, {"stops": fits}).endswith(f"got {fits!r}")
    line = _problems(route, {"stops": fits + "n"}).splitlines()[1]
    assert line.endswith("got '" + "n" * 56 + "...")


def test_validation_passes_nested_models_as_instances(typed_tools):
    kwargs = validate_arguments(typed_tools.get("plot"), {"point": {"x": 1, "y": "2"}})
    assert kwargs == {"point": Point(x=1, y=2), "label": ""}
    assert isinstance(kwargs["point"], Point)


def test_validation_keeps_argument_names_pydantic_reserves(typed_tools):
    """`json` and `model_*` are pydantic attributes: the tool still gets them under their own names."""
    assert validate_arguments(typed_tools.get("dump"), {"json": "a"}) == {"json": "a", "model_name": "m"}
    result = typed_tools.call("dump", {"json": "a", "model_name": "b"})
    assert result.ok and result.value == "a|b"


def _schema_tool(schema: dict) -> Tool:
    """A tool whose JSON Schema comes as is (as an MCP server gives it): validated with jsonschema."""
    return Tool(name="remote", description="a tool described by a JSON Schema", func=lambda **kw: kw, model=None,
                schema=schema)


ADDRESS = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer"},
        "address": {"type": "object", "properties": {"zip": {"type": "string"}}, "required": ["zip"],
                    "additionalProperties": False},
        "tags": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["city", "days"],
    "additionalProperties": False,
}


def test_validation_by_json_schema_passes_good_arguments_unchanged():
    arguments = {"city": "Oslo", "days": 2, "tags": [1]}
    assert validate_arguments(_schema_tool(ADDRESS), arguments) == arguments


def test_validation_by_json_schema_lists_each_missing_argument_once():
    assert _problems(_schema_tool(ADDRESS), {}) == (
        "invalid arguments for tool 'remote':\n- missing required argument 'city'\n- missing required argument 'days'")
    assert _problems(_schema_tool(ADDRESS), {"days": 1}) == (
        "invalid arguments for tool 'remote':\n- missing required argument 'city'")


def test_validation_by_json_schema_names_unexpected_and_mistyped_arguments():
    assert _problems(_schema_tool(ADDRESS), {"city": 3, "days": "2", "when": 1, "who": 2}) == (
        "invalid arguments for tool 'remote':\n"
        "- unexpected argument 'when' (the tool takes: city, days, address, tags)\n"
        "- unexpected argument 'who' (the tool takes: city, days, address, tags)\n"
        "- argument 'city': 3 is not of type 'string'\n"
        "- argument 'days': '2' is not of type 'integer'")
    assert _problems(_schema_tool({"type": "object", "additionalProperties": False}), {"x": 1}) == (
        "invalid arguments for tool 'remote':\n- unexpected argument 'x' (the tool takes: no arguments)")


def test_validation_by_json_schema_reports_missing_and_unexpected_arguments_together():
    assert _problems(_schema_tool(ADDRESS), {"days": 1, "when": 2}) == (
        "invalid arguments for tool 'remote':\n- missing required argument 'city'\n"
        "- unexpected argument 'when' (the tool takes: city, days, address, tags)")


def test_validation_by_json_schema_locates_nested_problems():
    assert _problems(_schema_tool(ADDRESS), {"city": "Oslo", "days": 1, "address": {"street": "x"}, "tags": [1, "a"]}) == (
        "invalid arguments for tool 'remote':\n"
        "- argument 'address': missing required argument 'zip'\n"
        "- argument 'address': Additional properties are not allowed ('street' was unexpected)\n"
        "- argument 'tags[1]': 'a' is not of type 'integer'")
    grid = {"type": "object", "properties": {"rows": {"type": "array", "items": {
        "type": "object", "properties": {"cells": {"type": "array", "items": {"type": "number"}}}}}}}
    assert _problems(_schema_tool(grid), {"rows": [{"cells": [1]}, {"cells": [2, "x"]}]}) == (
        "invalid arguments for tool 'remote':\n- argument 'rows[1].cells[1]': 'x' is not of type 'number'")


def test_validation_by_json_schema_shortens_long_messages_and_caps_the_list():
    choices = {"type": "object", "properties": {"unit": {"enum": ["celsius-" * 8, "fahrenheit-" * 8, "kelvin-" * 8]}}}
    (line,) = _problems(_schema_tool(choices), {"unit": "k"}).splitlines()[1:]
    assert line.startswith("- argument 'unit': 'k' is not one of ['celsius-") and line.endswith("...")
    assert len(line) == len("- argument 'unit': ") + 160
    counted = {"type": "object", "properties": {"n": {"type": "integer"}}}
    fits = _problems(_schema_tool(counted), {"n": "x" * 133}).splitlines()[1]  # a 160-character message
    assert fits == f"- argument 'n': {'x' * 133!r} is not of type 'integer'"
    cut = _problems(_schema_tool(counted), {"n": "x" * 134}).splitlines()[1]
    assert cut == "- argument 'n': '" + "x" * 134 + "' is not of type 'inte..."
    many = {"type": "object", "properties": {f"p{i:02}": {"type": "integer"} for i in range(12)}}
    lines = _problems(_schema_tool(many), {f"p{i:02}": "s" for i in range(12)}).splitlines()
    assert lines[1:] == [f"- argument 'p{i:02}': 's' is not of type 'integer'" for i in range(10)]
    assert _problems(_schema_tool({"type": "object", "minProperties": 1}), {}) == (
        "invalid arguments for tool 'remote':\n- {} should be non-empty")


def test_validation_by_a_broken_json_schema_says_the_schema_is_at_fault():
    assert _problems(_schema_tool({"type": "objekt"}), {}) == (
        "tool 'remote' has an invalid JSON Schema, so its arguments cannot be checked: "
        "Unknown type 'objekt' for validator with schema:")
    message = _problems(_schema_tool({"type": "object", "properties": {"a": {"type": 12}}}), {"a": 1})
    assert message.startswith("tool 'remote' has an invalid JSON Schema, so its arguments cannot be checked: ")


# ---------------------------------------------------------------------------------------------------
# JSON tool calls (Hermes <tool_call> blocks, bare JSON calls, OpenAI argument strings) and the call a
# stored message carries: what each model format gives, and the error the model reads when it is wrong

JSON_EXPECTED = 'expected <tool_call>{"name": "tool", "arguments": {...}}</tool_call> with a JSON object of arguments'


def test_json_calls_reads_every_hermes_block_in_order():
    text = ('Let me look.\n<tool_call>\n{"name": "weather", "arguments": {"city": "Oslo"}}\n</tool_call>\n'
            '<tool_call>{"name": "clock", "parameters": {"zone": "UTC"}, "id": "call_7"}</tool_call>\n'
            '<tool_call>{"name": "ping", "arguments": null}')  # the last one cut off by a stop token
    assert json_calls(text) == [Call("weather", {"city": "Oslo"}), Call("clock", {"zone": "UTC"}, "", "call_7"),
                                Call("ping", {})]
    assert json_calls("No tools needed: 42.") == []


@pytest.mark.parametrize(
    ("text", "call"),
    [
        ('{"name": "weather", "arguments": {"city": "Oslo"}}', Call("weather", {"city": "Oslo"})),
        ('  {"name": "weather", "parameters": {"city": "Oslo"}}\n', Call("weather", {"city": "Oslo"})),
        ('{"name": "weather", "arguments": "{\\"city\\": \\"Oslo\\"}"}', Call("weather", {"city": "Oslo"})),
        ('{"name": "weather", "arguments": "  "}', Call("weather", {})),
        ('{"name": "weather", "arguments": "[1]"}',
         Call("weather", None, "the arguments of tool 'weather' must be a JSON object, got list")),
        ('{"name": "weather", "arguments": 5}',
         Call("weather", None, "the arguments of tool 'weather' must be a JSON object, got int")),
        ('{"name": "weather", "arguments": "city=Oslo"}',
         Call("weather", None, "the arguments of tool 'weather' are not valid JSON (Expecting value: line 1 column 1 "
                               "(char 0)); expected a JSON object")),
    ],
)
def test_a_bare_json_call_is_a_call_with_its_arguments_or_their_error(text, call):
    assert json_calls(text) == [call]


@pytest.mark.parametrize(
    "text",
    ['{"answer": 42}', '{"name": "Bob", "age": 3}', '{"name": "", "arguments": {}}', '{"name": "f", "arguments": {',
     'The JSON is {"name": "f", "arguments": {}}'],
)
def test_a_json_answer_that_is_not_a_call_stays_text(text):
    assert json_calls(text) == []


@pytest.mark.parametrize(
    ("block", "call"),
    [
        ('{"name": "weather", "arguments": {oops}', Call("weather", None, (
            "the tool call is not valid JSON (Expecting property name enclosed in double quotes: line 1 column 35 "
            f"(char 34)); {JSON_EXPECTED}"))),
        ("weather(city='Oslo')", Call("unknown", None, (
            f"the tool call is not valid JSON (Expecting value: line 1 column 1 (char 0)); {JSON_EXPECTED}"))),
        ('{"arguments": {}}', Call("unknown", None, f'the tool call has no "name"; {JSON_EXPECTED}')),
        ('{"name": "", "arguments": {}}', Call("unknown", None, f'the tool call has no "name"; {JSON_EXPECTED}')),
        ('{"name": 3, "arguments": {}}', Call("unknown", None, f'the tool call has no "name"; {JSON_EXPECTED}')),
        ('["weather", {}]', Call("unknown", None, f'the tool call has no "name"; {JSON_EXPECTED}')),
    ],
)
def test_a_broken_hermes_block_names_the_tool_when_it_can_and_says_what_was_expected(block, call):
    assert json_calls(f"<tool_call>{block}</tool_call>") == [call]


def test_an_overlong_call_is_refused_by_its_size_and_keeps_its_name():
    block = '{"name": "save", "arguments": {"text": "' + "x" * MAX_CALL_CHARS + '"}}'
    (call,) = json_calls(f"<tool_call>{block}</tool_call>")
    assert call == Call("save", None, f"the tool call is too long ({len(block)} characters, at most {MAX_CALL_CHARS})")
    unnamed = '{"arguments": {"text": "' + "x" * MAX_CALL_CHARS + '"}, "name": "save"}'
    assert json_calls(f"<tool_call>{unnamed}</tool_call>")[0].name == "unknown"  # the name is looked for up front
    head, tail = '{"name": "save", "arguments": {"text": "', '"}}'
    exactly = head + "x" * (MAX_CALL_CHARS - len(head) - len(tail)) + tail
    assert len(exactly) == MAX_CALL_CHARS and json_calls(f"<tool_call>{exactly}</tool_call>")[0].error == ""


def test_openai_arguments_are_parsed_once_with_the_same_rules():
    assert openai_call("weather", '{"city": "Oslo"}', "call_1") == Call("weather", {"city": "Oslo"}, "", "call_1")
    assert openai_call("weather", {"city": "Oslo"}) == Call("weather", {"city": "Oslo"})
    assert openai_call("clock", "") == Call("clock", {}) and openai_call("clock", None) == Call("clock", {})
    assert openai_call("weather", '{"city": ') .error.startswith("the arguments of tool 'weather' are not valid JSON (")
    long = '{"t": "' + "x" * MAX_CALL_CHARS + '"}'
    assert openai_call("save", long, "c") == Call(
        "save", None, f"the arguments are too long ({len(long)} characters, at most {MAX_CALL_CHARS})", "c")
    fits = '{"t": "' + "x" * (MAX_CALL_CHARS - 9) + '"}'  # 7 + 2 characters around the text
    assert len(fits) == MAX_CALL_CHARS and openai_call("save", fits).error == ""


def test_a_stored_call_message_gives_back_its_call():
    """Replaying a history or resuming a paused turn must not reparse (or lose) what was decided then."""
    kept = Message("assistant", "not parseable", "weather", extra={"arguments": {"city": "Oslo"}, "call_id": "c1"})
    assert call_of_message(kept) == Call("weather", {"city": "Oslo"}, "", "c1")
    failed = Message("assistant", "tool_call(city=Oslo)", "weather", extra={"call_error": "bad call"})
    assert call_of_message(failed) == Call("weather", None, "bad call")
    code = Message("assistant", "```python\nprint(1)\n```", "interpreter")
    assert call_of_message(code) == Call("interpreter", {"code": "print(1)"})
    assert call_of_message(Message("assistant", "nothing to run", "interpreter")) == Call("interpreter", {"code": ""})
    # imported conversations: ChatGLM3 syntax, then JSON (the message's tool name wins), then the ChatGLM3 error
    chatglm3 = Message("assistant", '```python\ntool_call(city="Oslo")\n```', "weather")
    assert call_of_message(chatglm3) == Call("weather", {"city": "Oslo"})
    hermes = Message("assistant", '<tool_call>{"name": "other", "arguments": {"city": "Oslo"}}</tool_call>', "weather",
                     extra={"call_id": "c2"})
    assert call_of_message(hermes) == Call("weather", {"city": "Oslo"}, "", "c2")
    prose = call_of_message(Message("assistant", "the weather in Oslo", "weather"))
    assert prose.name == "weather" and prose.arguments is None
    assert prose.error.startswith("the tool call is not valid Python syntax")


def test_a_chatglm3_call_reads_the_code_block_and_keeps_the_call_id():
    assert chatglm3_call("weather", 'Checking.\n```python\ntool_call(city="Oslo")\n```') == Call("weather", {"city": "Oslo"})
    assert chatglm3_call("weather", 'tool_call(city="Oslo")', "c9") == Call("weather", {"city": "Oslo"}, "", "c9")
    broken = chatglm3_call("weather", "tool_call(city=", "c9")
    assert (broken.name, broken.arguments, broken.id) == ("weather", None, "c9") and broken.error


def test_a_stored_call_keeps_its_call_id_on_every_path():
    def call(content: str, metadata: str = "weather", **extra) -> Call:
        return call_of_message(Message("assistant", content, metadata, extra={"call_id": "c3", **extra}))

    assert call("x", call_error="bad").id == "c3"
    assert call("```python\nprint(1)\n```", "interpreter") == Call("interpreter", {"code": "print(1)"}, "", "c3")
    assert call('tool_call(city="Oslo")') == Call("weather", {"city": "Oslo"}, "", "c3")
    prose = call("the weather in Oslo")
    assert (prose.id, prose.arguments) == ("c3", None)
