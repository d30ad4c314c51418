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

from composite.errors import ToolCallError
from composite.toolcall import parse_tool_call

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
