"""The tool registry (registration, errors, formats, user folders) and the built-in tools, offline."""

from __future__ import annotations

import http.server
import json
import re
import socket
import textwrap
import threading
import time

import pytest

import tools
from composite.errors import ConfigError, ToolCallError, ToolRegistrationError
from tools import ToolRegistry, default_registry, register_builtins, register_tool
from tools.builtin import CalculatorError, calculator, current_time, get_weather, random_number_generator
from tools.registry import parse_docstring

BUILTIN_NAMES = ["random_number_generator", "get_weather", "current_time", "calculator"]


@pytest.fixture
def registry() -> ToolRegistry:
    return ToolRegistry()


# ---------------------------------------------------------------------------------------------------
# registration


def test_register_as_plain_decorator_keeps_the_function(registry):
    @registry.register
    def add(a: int, b: int = 2) -> int:
        """Add two numbers."""
        return a + b

    assert add(1) == 3
    assert registry.names() == ["add"] and "add" in registry and "sub" not in registry
    tool = registry.get("add")
    assert tool.name == "add" and tool.description == "Add two numbers." and tool.func is add
    assert [t.name for t in registry] == ["add"] and len(registry) == 1


def test_register_with_name_and_description(registry):
    @registry.register(name="plus", description="Sum of a and b.")
    def add(a: int, b: int) -> int:
        return a + b

    assert registry.names() == ["plus"]
    assert registry.get("plus").description == "Sum of a and b."


def test_description_is_the_first_docstring_paragraph(registry):
    def f(x: int) -> int:
        """First line
        continues here.

        Second paragraph is not part of it.
        """
        return x

    registry.register(f)
    assert registry.get("f").description == "First line continues here."


def test_parse_docstring_google_args():
    summary, params = parse_docstring(
        """Do it.

        Args:
            x (int): The x.
            y: The y,
                on two lines.
        Returns:
            Nothing.
        """
    )
    assert summary == "Do it."
    assert params == {"x": "The x.", "y": "The y, on two lines."}


def test_get_unknown_tool_lists_the_available_ones():
    with pytest.raises(ToolCallError, match="unknown tool 'nope'; available tools: random_number_generator"):
        default_registry.get("nope")


def test_registries_are_independent(registry):
    @registry.register
    def only_here(x: int) -> int:
        """Only in this registry."""
        return x

    assert "only_here" not in default_registry
    assert ToolRegistry().names() == []


# ---------------------------------------------------------------------------------------------------
# registration errors: each one names the function


def test_missing_docstring_is_rejected(registry):
    def undocumented(x: int) -> int:
        return x

    with pytest.raises(ToolRegistrationError, match=r"undocumented.*no docstring"):
        registry.register(undocumented)


def test_untyped_parameter_is_rejected(registry):
    def untyped(x) -> int:  # noqa: ANN001
        """Untyped."""
        return x

    with pytest.raises(ToolRegistrationError, match=r"untyped.*parameter 'x' has no type hint"):
        registry.register(untyped)


def test_var_args_are_rejected(registry):
    def star_args(*values: int) -> int:
        """Star args."""
        return sum(values)

    with pytest.raises(ToolRegistrationError, match=r"star_args.*\*values is not allowed"):
        registry.register(star_args)


def test_var_kwargs_are_rejected(registry):
    def star_kwargs(**options: str) -> int:
        """Star kwargs."""
        return len(options)

    with pytest.raises(ToolRegistrationError, match=r"star_kwargs.*\*\*options is not allowed"):
        registry.register(star_kwargs)


def test_positional_only_is_rejected(registry):
    def positional(x: int, /) -> int:
        """Positional only."""
        return x

    with pytest.raises(ToolRegistrationError, match=r"positional.*positional-only"):
        registry.register(positional)


def test_duplicate_name_is_rejected(registry):
    def first(x: int) -> int:
        """First."""
        return x

    def second(x: int) -> int:
        """Second."""
        return x

    registry.register(first, name="same")
    with pytest.raises(ToolRegistrationError, match=r"'same' \(function .*second\).*already taken by function .*first"):
        registry.register(second, name="same")
    assert registry.get("same").func is first


def test_unresolvable_hint_is_rejected(registry):
    def local_type(x: "NoSuchType") -> int:  # noqa: F821
        """Hint that cannot be resolved."""
        return 0

    with pytest.raises(ToolRegistrationError, match=r"local_type.*name 'NoSuchType' is not defined"):
        registry.register(local_type)


def test_invalid_and_reserved_names_are_rejected(registry):
    def fine(x: int) -> int:
        """Fine."""
        return x

    with pytest.raises(ToolRegistrationError, match="tool name must be"):
        registry.register(fine, name="has space")
    with pytest.raises(ToolRegistrationError, match="reserved"):
        registry.register(fine, name="interpreter")


class Opaque:
    """A plain class that pydantic cannot describe as JSON."""


def test_unsupported_type_is_rejected(registry):
    def opaque(thing: Opaque) -> int:
        """Takes something pydantic cannot describe."""
        return 0

    with pytest.raises(ToolRegistrationError, match=r"opaque.*cannot be turned into a JSON Schema"):
        registry.register(opaque)


# ---------------------------------------------------------------------------------------------------
# formats


def test_default_registry_holds_the_builtins():
    assert default_registry.names() == BUILTIN_NAMES
    assert [tool.func for tool in default_registry] == list(tools.BUILTIN_TOOLS)


def test_chatglm3_tools_format_and_enabled_filter():
    listed = default_registry.chatglm3_tools(["calculator", "get_weather"])
    assert [t["name"] for t in listed] == ["get_weather", "calculator"]  # registry order
    for entry in listed:
        assert set(entry) == {"name", "description", "parameters"}
        assert entry["parameters"]["type"] == "object"
    assert listed[0]["parameters"] == {
        "type": "object",
        "properties": {"city_name": {"type": "string", "description": "The name of the city to be queried"}},
        "required": ["city_name"],
    }
    assert default_registry.chatglm3_tools([]) == []
    assert len(default_registry.chatglm3_tools()) == 4


def test_enabled_unknown_tool_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown tool.*'nope'"):
        default_registry.chatglm3_tools(["nope"])


def test_openai_tools_format():
    listed = default_registry.openai_tools(["get_weather"])
    assert listed == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Get the current weather for `city_name`",
                "parameters": default_registry.get("get_weather").schema,
            },
        }
    ]
    assert [t["function"]["name"] for t in default_registry.openai_tools()] == BUILTIN_NAMES


def test_register_builtins_on_a_fresh_registry(registry):
    register_builtins(registry)
    assert registry.names() == BUILTIN_NAMES
    with pytest.raises(ToolRegistrationError, match="already taken"):
        register_builtins(registry)


# ---------------------------------------------------------------------------------------------------
# register_tool and user folders


def test_register_tool_decorator_forms_target_default_registry():
    @register_tool
    def zz_plain(x: int) -> int:
        """Plain form."""
        return x

    @register_tool(name="zz_named", description="Named form.")
    def whatever(x: int) -> int:
        return x

    try:
        assert {"zz_plain", "zz_named"} <= set(default_registry.names())
        assert default_registry.get("zz_named").description == "Named form."
    finally:
        default_registry.unregister("zz_plain")
        default_registry.unregister("zz_named")
    assert default_registry.names() == BUILTIN_NAMES


def _write(folder, name, text):
    (folder / name).write_text(textwrap.dedent(text), encoding="utf-8")


def test_load_folder_one_good_one_broken(tmp_path, registry):
    _write(
        tmp_path,
        "good.py",
        '''
        """A user tool file."""
        from typing import Annotated
        from tools import register_tool

        @register_tool
        def shout(text: Annotated[str, "Text to shout"]) -> str:
            """Upper-case a text."""
            return text.upper()
        ''',
    )
    _write(tmp_path, "broken.py", "import composite_no_such_module_xyz\n")
    failures = registry.load_folder(tmp_path)
    assert [f.path.name for f in failures] == ["broken.py"]
    assert "ModuleNotFoundError" in failures[0].error and "composite_no_such_module_xyz" in failures[0].error
    assert str(failures[0]).startswith("broken.py: ModuleNotFoundError")
    assert registry.names() == ["shout"]
    assert "shout" not in default_registry  # tools land on the loading registry
    assert registry.call("shout", {"text": "hi"}).value == "HI"


def test_load_folder_records_syntax_and_registration_errors_and_rolls_back(tmp_path, registry):
    _write(tmp_path, "a_syntax.py", "def broken(:\n")
    _write(
        tmp_path,
        "b_partial.py",
        '''
        from tools import register_tool

        @register_tool
        def kept_only_if_file_loads(x: int) -> int:
            """Registered before the failure below."""
            return x

        @register_tool
        def no_doc(x: int) -> int:
            return x
        ''',
    )
    _write(tmp_path, "c_raises.py", "x = 1\nraise RuntimeError('boom')\n")
    _write(tmp_path, "notes.txt", "not python")
    failures = registry.load_folder(tmp_path)
    by_name = {f.path.name: f.error for f in failures}
    assert set(by_name) == {"a_syntax.py", "b_partial.py", "c_raises.py"}
    assert by_name["a_syntax.py"].startswith("SyntaxError") and "line 1" in by_name["a_syntax.py"]
    assert "ToolRegistrationError" in by_name["b_partial.py"] and "no_doc" in by_name["b_partial.py"]
    assert by_name["c_raises.py"] == "RuntimeError: boom (line 2)"
    assert registry.names() == []  # the partial file's first tool was rolled back


def test_load_folder_duplicate_across_files(tmp_path, registry):
    body = '''
    from tools import register_tool

    @register_tool
    def twin(x: int) -> int:
        """Twin."""
        return x
    '''
    _write(tmp_path, "one.py", body)
    _write(tmp_path, "two.py", body)
    failures = registry.load_folder(tmp_path)
    assert [f.path.name for f in failures] == ["two.py"]
    assert "already taken" in failures[0].error
    assert registry.names() == ["twin"]


def test_load_folder_missing_folder(tmp_path, registry):
    with pytest.raises(ConfigError, match="does not exist"):
        registry.load_folder(tmp_path / "missing")


# ---------------------------------------------------------------------------------------------------
# built-in: random_number_generator


def test_random_number_generator_is_seeded_and_in_range():
    values = {random_number_generator(seed=7, range=(1, 6)) for _ in range(5)}
    assert len(values) == 1 and 1 <= values.pop() <= 6
    assert random_number_generator(seed=1, range=(3, 3)) == 3
    result = default_registry.call("random_number_generator", {"seed": 42, "range": [0, 100]})
    assert result.ok and 0 <= result.value <= 100


def test_random_number_generator_rejects_reversed_range():
    result = default_registry.call("random_number_generator", {"seed": 1, "range": (5, 1)})
    assert not result.ok and result.error == "ValueError: range must be (low, high) with low <= high, got (5, 1)"


# ---------------------------------------------------------------------------------------------------
# built-in: get_weather against a local server

J1 = {
    "current_condition": [
        {
            "temp_C": "21",
            "FeelsLikeC": "20",
            "humidity": "48",
            "weatherDesc": [{"value": "Partly cloudy "}],
            "windspeedKmph": "11",
            "winddir16Point": "NNE",
            "temp_F": "70",
        }
    ],
    "nearest_area": [{"areaName": [{"value": "Beijing"}]}],
}


@pytest.fixture
def weather_server(monkeypatch):
    """A wttr.in-compatible server on 127.0.0.1: /<city>?format=j1 answers canned JSON."""
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            requests.append(self.path)
            if self.path.startswith("/garbage"):
                body, status = b"<html>not json</html>", 200
            elif self.path.startswith("/missing"):
                body, status = b"{}", 404
            else:
                body, status = json.dumps(J1).encode(), 200
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # keep test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COMPOSITE_WEATHER_URL", f"http://127.0.0.1:{server.server_address[1]}/")
    yield requests
    server.shutdown()
    server.server_close()


def test_get_weather_reads_a_local_j1_service(weather_server):
    result = default_registry.call("get_weather", {"city_name": "Beijing"})
    assert result.ok, result.error
    assert result.value == {
        "city": "Beijing",
        "temperature_c": 21,
        "feels_like_c": 20,
        "humidity_percent": 48,
        "description": "Partly cloudy",
        "wind_kmph": 11,
        "wind_direction": "NNE",
    }
    assert weather_server == ["/Beijing?format=j1"]
    assert json.loads(result.observation()) == result.value


def test_get_weather_quotes_the_city(weather_server):
    get_weather("New York/../北京")
    assert weather_server == ["/New%20York%2F..%2F%E5%8C%97%E4%BA%AC?format=j1"]


def test_get_weather_bad_payload_and_http_error(weather_server):
    bad = default_registry.call("get_weather", {"city_name": "garbage"})
    assert not bad.ok and "returned unexpected data" in bad.error
    missing = default_registry.call("get_weather", {"city_name": "missing"})
    assert not missing.ok and "answered HTTP 404" in missing.error


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_get_weather_offline_is_a_clear_error_observation(monkeypatch):
    url = f"http://127.0.0.1:{_unused_port()}"
    monkeypatch.setenv("COMPOSITE_WEATHER_URL", url)
    start = time.monotonic()
    result = default_registry.call("get_weather", {"city_name": "Paris"})
    assert time.monotonic() - start < 5
    assert not result.ok
    assert result.error.startswith(f"WeatherServiceError: weather service unreachable at {url}/Paris?format=j1: ")
    assert result.observation().startswith("Error: WeatherServiceError: weather service unreachable")


def test_get_weather_rejects_non_http_base_url(monkeypatch):
    monkeypatch.setenv("COMPOSITE_WEATHER_URL", "file:///etc")
    result = default_registry.call("get_weather", {"city_name": "Paris"})
    assert not result.ok and "is not an http(s) URL" in result.error


# ---------------------------------------------------------------------------------------------------
# built-in: current_time


def test_current_time_known_zones():
    utc = current_time()
    assert utc["timezone"] == "UTC" and utc["datetime"].endswith("+00:00")
    shanghai = current_time("Asia/Shanghai")
    assert shanghai["datetime"].endswith("+08:00") and shanghai["weekday"]


def test_current_time_unknown_zone_is_a_clear_error():
    for bad in ("Mars/Olympus", "../../etc/passwd", ""):
        result = default_registry.call("current_time", {"timezone": bad})
        assert not result.ok
        assert result.error.startswith(f"TimeZoneError: unknown time zone {bad!r}; expected an IANA name")


@pytest.mark.parametrize(
    ("place", "zone"),
    [("Tokyo", "Asia/Tokyo"), ("new york", "America/New_York"), ("北京", "Asia/Shanghai"), ("東京", None),
     ("São Paulo", "America/Sao_Paulo"), ("Sao Paulo", "America/Sao_Paulo"), ("San Francisco", "America/Los_Angeles"),
     ("Reykjavik", "Atlantic/Reykjavik"), ("成都", "Asia/Shanghai"), ("东京", "Asia/Tokyo"), ("Zürich", "Europe/Zurich"),
     ("asia/tokyo", "Asia/Tokyo"), ("Buenos Aires", "America/Argentina/Buenos_Aires"), ("上海市", "Asia/Shanghai")],
)
def test_current_time_accepts_city_names(place, zone):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    result = default_registry.call("current_time", {"timezone": place})
    if zone is None:  # traditional characters are not in the table: a clear error, not a guess
        assert not result.ok and "unknown time zone" in result.error
        return
    assert result.ok, result.error
    assert result.value["timezone"] == zone
    offset = datetime.fromisoformat(result.value["datetime"]).utcoffset()
    assert offset == datetime.now(ZoneInfo(zone)).utcoffset()
    if "/" not in place:
        assert result.value["place"] == place


def test_current_time_unknown_place_lists_close_matches():
    result = default_registry.call("current_time", {"timezone": "Tokio"})
    assert not result.ok and "did you mean Tokyo (Asia/Tokyo)?" in result.error
    result = default_registry.call("current_time", {"timezone": "Nwe York"})
    assert "New York (America/New_York)" in result.error
    result = default_registry.call("current_time", {"timezone": "Qwxzplk"})
    assert "did you mean" not in result.error and "or a city name such as 'Tokyo'" in result.error


# ---------------------------------------------------------------------------------------------------
# built-in: calculator


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("7 // 2 + 7 % 2", 4),
        ("-2 ** 2", -4),
        ("+5 - -5", 10),
        ("2 ** -1", 0.5),
        ("10 / 4", 2.5),
        ("sqrt(16) + abs(-2)", 6.0),
        ("round(pi, 2)", 3.14),
        ("2 ** 4000 // 2 ** 3999", 2),
    ],
)
def test_calculator_arithmetic(expression, expected):
    assert calculator(expression) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("10**10**10", "result too large"),
        ("9**9**9**9", "result too large"),
        ("2**5000", "result too large"),
        ("(2**4000) * (2**4000)", "result too large"),
        ("10.0 ** 400", "result too large"),
        ("exp(1000)", "result too large"),
        ("round(5, -10**100)", "round() digits"),
        ("1 / 0", "division by zero"),
        ("sqrt(-1)", "math error"),
        ("(-8)**0.5", "no real-number result"),
        ("(-8) ** (1/3) * 0", "no real-number result"),
        ("__import__('os').system('true')", "only these functions"),
        ("().__class__", "not allowed"),
        ("x + 1", "unknown name 'x'"),
        ("2 ^ 3", "use ** for powers"),
        ("'a' * 3", "only numbers"),
        ("True + 1", "only numbers"),
        ("[1, 2]", "List is not allowed"),
        ("1 +", "not a valid arithmetic expression"),
        ("", "empty expression"),
        ("1+" * 300 + "1", "expression too long"),
    ],
)
def test_calculator_rejects_and_stays_fast(expression, message):
    start = time.monotonic()
    with pytest.raises(CalculatorError, match=re.escape(message)):
        calculator(expression)
    assert time.monotonic() - start < 1.0


def test_calculator_error_becomes_an_observation():
    result = default_registry.call("calculator", {"expression": "10**10**10"})
    assert not result.ok
    assert result.observation() == "Error: CalculatorError: result too large: 10 ** 10000000000 has more than 4096 bits"


def test_builtin_parameters_are_typed_for_validation():
    result = default_registry.call("calculator", {"expr": "1"})
    assert not result.ok and "missing required argument 'expression'" in result.error



def test_build_registry_loads_the_user_folder_from_tools_path(tmp_path, monkeypatch):
    from tools import build_registry

    (tmp_path / "mine.py").write_text(
        "from tools import register_tool\n\n@register_tool\ndef shout(text: str) -> str:\n"
        "    \"\"\"Upper-case a text.\"\"\"\n    return text.upper()\n"
    )
    (tmp_path / "broken.py").write_text("import no_such_module_here\n")
    monkeypatch.setenv("TOOLS_PATH", str(tmp_path))
    registry, failures = build_registry()
    assert "shout" in registry and "calculator" in registry
    assert [f.path.name for f in failures] == ["broken.py"] and "no_such_module_here" in str(failures[0])


# ---------------------------------------------------------------------------------------------------
# registry.call validates argument types itself, before the tool runs


@pytest.fixture
def typed_registry():
    registry = ToolRegistry()
    calls: list[tuple] = []

    @registry.register
    def scale(value: int, factor: float = 2.0, label: str = "x") -> str:
        """Multiply a whole number.

        Args:
            value: the number
            factor: how much
            label: a name
        """
        calls.append((value, factor, label))
        return f"{label}={value * factor}"

    registry.calls = calls  # type: ignore[attr-defined]
    return registry


@pytest.mark.parametrize(
    ("arguments", "argument"),
    [({"value": "seven"}, "value"), ({"value": 3, "factor": "big"}, "factor"), ({"value": 3, "label": 5}, "label"),
     ({"value": [3]}, "value"), ({"value": 3.5}, "value")],
)
def test_registry_call_rejects_wrong_types_before_running_the_tool(typed_registry, arguments, argument):
    result = typed_registry.call("scale", arguments)
    assert not result.ok
    assert f"argument '{argument}'" in result.error
    assert typed_registry.calls == []  # the tool never ran with a wrong type


def test_registry_call_runs_the_tool_with_valid_types(typed_registry):
    result = typed_registry.call("scale", {"value": 3, "factor": 1.5})
    assert result.ok and result.value == "x=4.5"
    assert typed_registry.calls == [(3, 1.5, "x")]


def test_the_tools_package_imports_nothing_from_composite_but_errors():
    """No import cycle: composite imports tools (the agent dispatches through registry.call), never back."""
    import ast

    from pathlib import Path

    folder = Path(tools.__file__).parent
    imported = set()
    for file in folder.glob("*.py"):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("composite"):
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names if alias.name.startswith("composite"))
    assert imported == {"composite.errors"}


def test_old_import_paths_still_work_for_one_release():
    from composite.dialect import ChatGLM3Dialect, parse_chatglm3_turn
    from composite.dialect_hf import ChatTemplateDialect, parse_template_turn
    from composite.dialects import ChatGLM3Dialect as moved, parse_template_turn as moved_parse
    from composite.toolcall import ToolResult, call_tool, parse_tool_call, run_tool_call
    from tools.calling import ToolResult as moved_result

    assert ChatGLM3Dialect is moved and parse_template_turn is moved_parse and ToolResult is moved_result
    assert parse_tool_call("tool_call(a=1)") == {"a": 1} and callable(call_tool) and callable(parse_chatglm3_turn)
    assert ChatTemplateDialect.name == "chat-template"
    assert run_tool_call(default_registry, "calculator", 'tool_call(expression="6*7")').observation() == "42"


@pytest.mark.parametrize(
    ("text", "zone", "place"),
    [("london rn", "Europe/London", "London"), ("is it dark in Sydney yet?", "Australia/Sydney", "Sydney"),
     ("深圳今天", "Asia/Shanghai", "深圳"), ("new york tonight", "America/New_York", "New York")],
)
def test_current_time_finds_the_one_place_named_in_a_few_words(text, zone, place):
    result = default_registry.call("current_time", {"timezone": text})
    assert result.ok, result.error
    assert result.value["timezone"] == zone and result.value["place"] == place


@pytest.mark.parametrize("text", ["New York or London", "东京和北京"])
def test_current_time_refuses_to_pick_between_two_places(text):
    result = default_registry.call("current_time", {"timezone": text})
    assert not result.ok
    assert "names more than one place" in result.error and "expected one time zone or city" in result.error


def test_current_time_does_not_search_long_texts_for_a_place():
    text = "please could you tell me what the time is in london right now"
    result = default_registry.call("current_time", {"timezone": text})
    assert not result.ok and "unknown time zone" in result.error
