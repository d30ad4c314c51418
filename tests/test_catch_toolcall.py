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
