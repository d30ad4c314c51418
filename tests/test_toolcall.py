"""Safe tool calls: ast-only parsing (never executes), concise validation errors, timeouts, results."""

from __future__ import annotations

import builtins
import datetime
import json
import keyword
import threading
import time
from pathlib import Path
from typing import Annotated, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from composite.errors import ToolCallError
from composite.toolcall import MAX_CALL_CHARS, ToolResult, parse_tool_call, run_tool_call, validate_arguments
from tools import ToolRegistry

# model text may contain invalid escapes such as "\\_": ast.parse only warns about them
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::SyntaxWarning")

# ---------------------------------------------------------------------------------------------------
# a tripwire: code that would flip the flag or write the file if anything were ever executed

TRIPPED: list[str] = []
TRIP_FILE = Path("/tmp/composite-toolcall-tripwire")


@pytest.fixture(autouse=True)
def tripwire(monkeypatch):
    def composite_trip(*args, **kwargs):
        TRIPPED.append("called")
        return 1

    monkeypatch.setattr(builtins, "composite_trip", composite_trip, raising=False)
    TRIPPED.clear()
    TRIP_FILE.unlink(missing_ok=True)
    yield
    assert TRIPPED == [], "parsing executed code"
    assert not TRIP_FILE.exists(), "parsing wrote a file"


def test_the_tripwire_would_notice_execution():
    exec("composite_trip()")  # the detector works: real execution flips it
    assert TRIPPED == ["called"]
    TRIPPED.clear()


HOSTILE = [
    "composite_trip()",
    "__import__('builtins').composite_trip()",
    f"open('{TRIP_FILE}', 'w').write('x')",
    f"__import__('os').system('touch {TRIP_FILE}')",
    "exec('composite_trip()')",
    "eval('composite_trip()')",
    "[composite_trip() for _ in range(1)]",
    "(lambda: composite_trip())()",
    "f'{composite_trip()}'",
    "getattr(__builtins__, 'composite_trip')()",
    "().__class__.__base__.__subclasses__()",
    "(x := composite_trip())",
    "composite_trip() if True else 1",
    "[*map(composite_trip, [1])]",
    "{**{'a': composite_trip()}}",
]
FRAGMENTS = HOSTILE + [
    "tool_call", "(", ")", "x=", "y=", ",", "=", "[", "]", "{", "}", ":", "1", "-2.5", "'s'", '"s"', "None", "True",
    "*", "**", "\n", ";", "import os", ".", "#", "'''", "\\", "\x00", " ", "lambda", "@", "await ", "yield ", "```",
    "1e999", "-", "+", "0x1F", "'\\N{DIGIT ONE}'", "b'x'", "...", "2j",
]


def _expect_dict_or_tool_call_error(text: str) -> None:
    try:
        result = parse_tool_call(text)
    except ToolCallError as exc:
        assert str(exc)  # every rejection explains itself
        return
    assert isinstance(result, dict)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=25).map("".join))
def test_property_fragments_never_execute_and_only_raise_tool_call_error(text):
    _expect_dict_or_tool_call_error(text)
    assert TRIPPED == [] and not TRIP_FILE.exists()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=200))
def test_property_arbitrary_text_only_raises_tool_call_error(text):
    _expect_dict_or_tool_call_error(text)
    _expect_dict_or_tool_call_error(f"tool_call(x={text})")
    assert TRIPPED == []


HOSTILE_VALUES = st.sampled_from(HOSTILE)
_leaf = st.one_of(st.integers(-1000, 1000).map(repr), st.text(max_size=5).map(repr), st.just("None"), HOSTILE_VALUES)
_value_expr = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.lists(inner, max_size=3).map(lambda xs: "(" + "".join(x + ", " for x in xs) + ")"),
        st.lists(st.tuples(st.text(max_size=3).map(repr), inner), max_size=3).map(
            lambda kvs: "{" + ", ".join(f"{k}: {v}" for k, v in kvs) + "}"
        ),
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_value_expr, min_size=1, max_size=3))
def test_property_nested_hostile_values_are_rejected_without_execution(values):
    code = "tool_call(" + ", ".join(f"a{i}={value}" for i, value in enumerate(values)) + ")"
    hostile = any(h in value for value in values for h in HOSTILE)
    if hostile:
        with pytest.raises(ToolCallError, match="must be a literal value"):
            parse_tool_call(code)
    else:
        assert isinstance(parse_tool_call(code), dict)
    assert TRIPPED == [] and not TRIP_FILE.exists()


_identifiers = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True).filter(lambda s: not keyword.iskeyword(s))
_json_values = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=10),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(_identifiers, _json_values, max_size=4))
def test_property_literal_arguments_round_trip(arguments):
    code = "tool_call(" + ", ".join(f"{name}={value!r}" for name, value in arguments.items()) + ")"
    assert parse_tool_call(code) == arguments


# ---------------------------------------------------------------------------------------------------
# parse: accepted forms


def test_parse_keyword_literals():
    code = 'tool_call(city="Beijing", n=-3, x=1.5e3, ok=True, none=None, items=[1, "a"], pair=(1, 2), d={"k": [1]}, s={1})'
    assert parse_tool_call(code) == {
        "city": "Beijing", "n": -3, "x": 1500.0, "ok": True, "none": None, "items": [1, "a"], "pair": (1, 2),
        "d": {"k": [1]}, "s": {1},
    }


def test_parse_empty_call_and_surrounding_space_and_comments():
    assert parse_tool_call("tool_call()") == {}
    assert parse_tool_call('\n  tool_call(\n  city_name="Paris",  # the city\n)\n') == {"city_name": "Paris"}


def test_parse_tolerates_a_leftover_fence():
    assert parse_tool_call('```python\ntool_call(seed=1, range=[1, 6])\n```') == {"seed": 1, "range": [1, 6]}


def test_parse_keeps_non_ascii_strings():
    assert parse_tool_call('tool_call(city_name="北京")') == {"city_name": "北京"}


# ---------------------------------------------------------------------------------------------------
# parse: rejected forms, one test each


def _rejects(code: str, *fragments: str) -> str:
    with pytest.raises(ToolCallError) as info:
        parse_tool_call(code)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_reject_empty_block():
    _rejects("", "the tool call is empty", "expected tool_call(name=value, ...)")
    _rejects("   \n  ", "the tool call is empty")


def test_reject_too_long_input():
    _rejects("tool_call(x='" + "a" * MAX_CALL_CHARS + "')", "too long", str(MAX_CALL_CHARS))


def test_reject_syntax_error():
    _rejects('tool_call(city_name="Paris"', "not valid Python syntax", "expected tool_call(name=value, ...)")


def test_reject_variable_name():
    _rejects("tool_call(city_name=Paris)", "argument 'city_name' must be a literal value", "a variable name (Paris)", "quotes")


def test_reject_attribute_access():
    _rejects("tool_call(x=os.environ)", "argument 'x' must be a literal value", "an attribute access")


def test_reject_function_call_value():
    _rejects(
        "tool_call(x=composite_trip())",
        "argument 'x' must be a literal value (string, number, list, dict, True/False/None), got a function call",
    )


def test_reject_call_nested_in_a_list():
    _rejects("tool_call(x=[1, {'a': composite_trip()}])", "argument 'x'", "a function call (composite_trip(...))")


def test_reject_comprehension():
    _rejects("tool_call(x=[i for i in range(3)])", "argument 'x'", "a comprehension")


def test_reject_fstring():
    _rejects("tool_call(x=f'{composite_trip()}')", "argument 'x'", "an f-string")


def test_reject_lambda():
    _rejects("tool_call(x=lambda: 1)", "argument 'x'", "a lambda")


def test_reject_arithmetic():
    _rejects("tool_call(x=2**1000000)", "argument 'x'", "an operator expression")


def test_reject_starred_args():
    _rejects("tool_call(*[1, 2])", "keyword arguments only", "*-unpacking")


def test_reject_double_star_kwargs():
    _rejects("tool_call(**{'x': 1})", "does not accept **-unpacking")


def test_reject_dict_unpacking_inside_value():
    _rejects("tool_call(x={**{'a': 1}})", "argument 'x'", "*-unpacking")


def test_reject_positional_args():
    _rejects('tool_call("Paris")', "keyword arguments only", "positional arguments")


def test_reject_multiple_statements():
    _rejects("tool_call(x=1); composite_trip()", "single tool_call(...) expression", "2 statements")
    _rejects("tool_call(x=1)\ntool_call(x=2)", "2 statements")


def test_reject_import():
    _rejects("import os", "got an import statement")


def test_reject_assignment():
    _rejects("result = tool_call(x=1)", "got an assign statement")


def test_reject_other_function_name():
    _rejects('get_weather(city_name="Paris")', "must call tool_call(...)", "get_weather(...)")


def test_reject_method_call():
    _rejects("tools.tool_call(x=1)", "must call tool_call(...)")


def test_reject_bare_expression():
    _rejects("42", "must call tool_call(...)", "an int constant")


def test_reject_bytes_ellipsis_complex():
    _rejects("tool_call(x=b'raw')", "a bytes constant")
    _rejects("tool_call(x=...)", "an ellipsis constant")
    _rejects("tool_call(x=2j)", "a complex constant")


def test_reject_unhashable_set_member():
    _rejects("tool_call(x={[1]: 2})", "argument 'x' is not a valid literal value", "unhashable")


def test_reject_null_byte():
    _rejects("tool_call(x=1)\x00", "expected tool_call(name=value, ...)")


def test_reject_repeated_keyword():
    _rejects("tool_call(x=1, x=2)", "argument 'x' is given more than once")


def test_reject_huge_integer_literal_quickly():
    start = time.monotonic()
    _rejects("tool_call(x=" + "9" * 5000 + ")", "not valid Python syntax")
    assert time.monotonic() - start < 1


def test_reject_non_string_input():
    with pytest.raises(ToolCallError, match="must be text"):
        parse_tool_call(None)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------
# validation


@pytest.fixture
def registry() -> ToolRegistry:
    registry = ToolRegistry()

    @registry.register
    def forecast(
        city: Annotated[str, "City"], days: int = 1, unit: Literal["c", "f"] = "c", span: tuple[int, int] = (0, 1)
    ) -> dict:
        """Forecast."""
        return {"city": city, "days": days, "unit": unit, "span": span}

    @registry.register
    def fail(message: str) -> str:
        """Raise an error."""
        raise RuntimeError(message)

    @registry.register
    def fail_silently() -> str:
        """Raise an error without a message."""
        raise KeyError

    @registry.register
    def exits() -> str:
        """Call sys.exit in the tool."""
        raise SystemExit(3)

    @registry.register
    def echo(value: str) -> str:
        """Return the value as it is."""
        return value

    return registry


def test_validation_missing_argument(registry):
    message = _validation_error(registry, {})
    assert message == "invalid arguments for tool 'forecast':\n- missing required argument 'city'"


def test_validation_extra_argument_lists_accepted_ones(registry):
    message = _validation_error(registry, {"city": "Oslo", "country": "NO"})
    assert message == (
        "invalid arguments for tool 'forecast':\n- unexpected argument 'country' (the tool takes: city, days, unit, span)"
    )


def test_validation_wrong_types_one_line_each(registry):
    message = _validation_error(registry, {"city": 3, "days": "many", "unit": "k", "span": [1]})
    lines = message.splitlines()
    assert lines[0] == "invalid arguments for tool 'forecast':"
    assert len(lines) == 5, message
    assert lines[1].startswith("- argument 'city': Input should be a valid string, got 3")
    assert lines[2].startswith("- argument 'days': Input should be a valid integer") and lines[2].endswith("got 'many'")
    assert lines[3] == "- argument 'unit': Input should be 'c' or 'f', got 'k'"
    assert lines[4] == "- argument 'span': missing span[1]"
    assert "https://" not in message  # no pydantic documentation links


def test_validation_converts_lists_to_tuples(registry):
    assert validate_arguments(registry.get("forecast"), {"city": "Oslo", "span": [2, 3]})["span"] == (2, 3)


def _validation_error(registry: ToolRegistry, arguments: dict) -> str:
    with pytest.raises(ToolCallError) as info:
        validate_arguments(registry.get("forecast"), arguments)
    return str(info.value)


# ---------------------------------------------------------------------------------------------------
# execution and results


def test_run_tool_call_success(registry):
    result = run_tool_call(registry, "forecast", 'tool_call(city="Oslo", days=2)')
    assert result.ok and result.error == "" and result.exception is None
    assert result.arguments == {"city": "Oslo", "days": 2}
    assert result.value == {"city": "Oslo", "days": 2, "unit": "c", "span": (0, 1)}
    assert result.observation() == '{"city":"Oslo","days":2,"unit":"c","span":[0,1]}'
    assert result.duration >= 0


def test_run_tool_call_unknown_tool(registry):
    result = run_tool_call(registry, "weather", 'tool_call(city="Oslo")')
    assert not result.ok
    assert result.error == "unknown tool 'weather'; available tools: forecast, fail, fail_silently, exits, echo"
    assert result.observation().startswith("Error: unknown tool 'weather'")


def test_run_tool_call_parse_error_is_a_result(registry):
    result = run_tool_call(registry, "forecast", "tool_call(city=composite_trip())")
    assert not result.ok and isinstance(result.exception, ToolCallError)
    assert result.observation().startswith("Error: argument 'city' must be a literal value")


def test_run_tool_call_validation_error_is_a_result(registry):
    result = run_tool_call(registry, "forecast", "tool_call(days=2)")
    assert not result.ok and result.error.endswith("- missing required argument 'city'")
    assert result.arguments == {"days": 2}


def test_tool_exception_is_concise_and_kept(registry):
    result = run_tool_call(registry, "fail", 'tool_call(message="disk on fire")')
    assert not result.ok and result.error == "RuntimeError: disk on fire"
    assert "Traceback" not in result.observation()
    assert isinstance(result.exception, RuntimeError) and result.exception.__traceback__ is not None
    assert run_tool_call(registry, "fail_silently", "tool_call()").error == "KeyError"


def test_tool_system_exit_does_not_escape(registry):
    result = run_tool_call(registry, "exits", "tool_call()")
    assert not result.ok and result.error == "SystemExit: 3"


def test_tool_timeout_returns_a_timeout_result():
    registry = ToolRegistry()
    release = threading.Event()

    @registry.register
    def sleepy(seconds: float) -> str:
        """Sleep (until released)."""
        release.wait(seconds)
        return "woke"

    try:
        start = time.monotonic()
        result = run_tool_call(registry, "sleepy", "tool_call(seconds=30)", timeout=0.5)
        elapsed = time.monotonic() - start
        assert 0.45 <= elapsed < 2.0
        assert not result.ok and result.timed_out
        assert result.error == "tool 'sleepy' timed out after 0.5 s"
        assert result.observation() == "Error: tool 'sleepy' timed out after 0.5 s"
    finally:
        release.set()  # let the abandoned worker end
    fast = run_tool_call(registry, "sleepy", "tool_call(seconds=0)", timeout=0.5)
    assert fast.ok and fast.value == "woke" and not fast.timed_out


def test_too_many_abandoned_workers_refuse_new_calls(monkeypatch):
    import tools.calling as toolcall

    monkeypatch.setattr(toolcall, "MAX_ABANDONED", 1)
    registry = ToolRegistry()
    release = threading.Event()

    @registry.register
    def stuck() -> str:
        """Block until released."""
        release.wait(10)
        return "done"

    try:
        assert registry.call("stuck", {}, timeout=0.2).timed_out
        refused = registry.call("stuck", {}, timeout=0.2)
        assert not refused.ok and not refused.timed_out
        assert "timed-out tool calls are still running" in refused.error
    finally:
        release.set()
    deadline = time.monotonic() + 5
    while toolcall._live_abandoned() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert registry.call("stuck", {}, timeout=2).ok


def test_async_tool_is_awaited():
    registry = ToolRegistry()

    @registry.register
    async def later(x: int) -> int:
        """An async tool."""
        return x * 2

    assert registry.call("later", {"x": 21}).value == 42


def test_registry_call_never_raises_for_bad_arguments(registry):
    assert not registry.call("forecast", "not a dict").ok  # type: ignore[arg-type]
    assert not registry.call("nope", {}).ok


# ---------------------------------------------------------------------------------------------------
# observation rendering


class Opaque:
    """Not JSON: rendered with str()."""

    def __str__(self) -> str:
        return "<opaque thing>"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"城市": "北京", "t": 1.5}, '{"城市":"北京","t":1.5}'),
        ([1, None, True], "[1,null,true]"),
        (42, "42"),
        ("plain text", "plain text"),
        (None, "null"),
        ((1, 2), "[1,2]"),
        (datetime.date(2024, 5, 1), '"2024-05-01"'),
        (Opaque(), "<opaque thing>"),
        (float("nan"), "nan"),
    ],
)
def test_observation_rendering(value, text):
    assert ToolResult(name="t", arguments={}, ok=True, value=value).observation() == text



def test_observation_is_truncated():
    result = ToolResult(name="t", arguments={}, ok=True, value="x" * 5000)
    text = result.observation(max_chars=100)
    assert text.startswith("x" * 100) and text.endswith("[truncated, 4900 more characters]")
    assert result.observation(max_chars=None) == "x" * 5000


def test_observation_of_json_round_trips():
    value = {"a": [1, 2, {"b": "ü"}]}
    assert json.loads(ToolResult(name="t", arguments={}, ok=True, value=value).observation()) == value
