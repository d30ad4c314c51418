"""Built-in tools that work offline (plus a weather lookup): random numbers, time, a safe calculator.

Defining them has no side effect; `register_builtins(registry)` registers them like any user tool.
"""

from __future__ import annotations

import ast
import http.client
import json
import math
import os
import random
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone as dt_timezone
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from composite.errors import ToolError

from .registry import ToolRegistry

__all__ = [
    "BUILTIN_TOOLS",
    "register_builtins",
    "random_number_generator",
    "get_weather",
    "current_time",
    "calculator",
    "WeatherServiceError",
    "TimeZoneError",
    "CalculatorError",
    "WEATHER_URL_ENV",
    "DEFAULT_WEATHER_URL",
]

WEATHER_URL_ENV = "COMPOSITE_WEATHER_URL"
DEFAULT_WEATHER_URL = "https://wttr.in"
WEATHER_TIMEOUT_S = 5.0
_MAX_RESPONSE_BYTES = 2_000_000


class WeatherServiceError(ToolError):
    """The weather service could not be reached or answered something unusable."""


class TimeZoneError(ToolError):
    """A time zone name is not a known IANA zone."""


class CalculatorError(ToolError):
    """An expression is not plain arithmetic, or its result would be too large."""


# ---------------------------------------------------------------------------------------------------


def random_number_generator(
    seed: Annotated[int, "The random seed used by the generator"],
    range: Annotated[tuple[int, int], "The range of the generated numbers"],  # noqa: A002 - ChatGLM3's name
) -> int:
    """Generates a random integer x, s.t. range[0] <= x <= range[1]"""
    low, high = range
    if low > high:
        raise ValueError(f"range must be (low, high) with low <= high, got ({low}, {high})")
    return random.Random(seed).randint(low, high)


# ---------------------------------------------------------------------------------------------------


def _weather_url(city: str) -> str:
    base = (os.environ.get(WEATHER_URL_ENV) or DEFAULT_WEATHER_URL).rstrip("/")
    if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
        raise WeatherServiceError(f"{WEATHER_URL_ENV}={base!r} is not an http(s) URL")
    return f"{base}/{urllib.parse.quote(city, safe='')}?format=j1"


def _number(value: Any) -> Any:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return int(number) if number.is_integer() else number


def get_weather(city_name: Annotated[str, "The name of the city to be queried"]) -> dict[str, Any]:
    """Get the current weather for `city_name`"""
    city = city_name.strip()
    if not city:
        raise ValueError("city_name must not be empty")
    url = _weather_url(city)
    request = urllib.request.Request(url, headers={"User-Agent": "curl/8 (composite)", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=WEATHER_TIMEOUT_S) as response:
            body = response.read(_MAX_RESPONSE_BYTES)
    except urllib.error.HTTPError as exc:
        raise WeatherServiceError(f"weather service at {url} answered HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise WeatherServiceError(f"weather service unreachable at {url}: {exc.reason}") from exc
    except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, truncated responses
        raise WeatherServiceError(f"weather service unreachable at {url}: {exc or type(exc).__name__}") from exc
    try:
        data = json.loads(body)
        current = data["current_condition"][0]
        descriptions = current.get("weatherDesc") or [{}]
        result = {
            "city": city,
            "temperature_c": _number(current["temp_C"]),
            "feels_like_c": _number(current.get("FeelsLikeC")),
            "humidity_percent": _number(current.get("humidity")),
            "description": (descriptions[0].get("value") or "").strip(),
            "wind_kmph": _number(current.get("windspeedKmph")),
            "wind_direction": current.get("winddir16Point"),
        }
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise WeatherServiceError(
            f"weather service at {url} returned unexpected data (expected wttr.in j1 JSON): {type(exc).__name__}: {exc}"
        ) from exc
    return {key: value for key, value in result.items() if value is not None}


# ---------------------------------------------------------------------------------------------------


def current_time(
    timezone: Annotated[str, "IANA time zone name, e.g. Asia/Shanghai"] = "UTC",
) -> dict[str, str]:
    """Get the current date and time in a time zone."""
    name = timezone.strip()
    if name.upper() in ("UTC", "Z", "GMT"):
        zone: Any = dt_timezone.utc
        name = "UTC"
    else:
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise TimeZoneError(
                f"unknown time zone {timezone!r}; expected an IANA name such as 'UTC', 'Asia/Shanghai' or "
                "'America/New_York'"
            ) from exc
    now = datetime.now(zone).replace(microsecond=0)
    return {"timezone": name, "datetime": now.isoformat(), "weekday": now.strftime("%A")}


# ---------------------------------------------------------------------------------------------------

_MAX_EXPRESSION_CHARS = 500
_MAX_INT_BITS = 4096  # about 1233 decimal digits: big enough for arithmetic, small enough to stay instant
_MAX_FLOAT_ARG = 1e308

_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}
_FUNCTIONS = {
    "sqrt": math.sqrt,
    "exp": math.exp,
    "log": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "abs": abs,
    "round": round,
    "floor": math.floor,
    "ceil": math.ceil,
}
_OPERATORS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**"}


def _check_int(value: Any) -> Any:
    if isinstance(value, int) and value.bit_length() > _MAX_INT_BITS:
        raise CalculatorError(f"result too large (more than {_MAX_INT_BITS} bits)")
    return value


def _power(base: Any, exponent: Any) -> Any:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        # bit_length(base ** n) is about n * log2|base|: refuse before computing, so 10**10**10 is instant.
        if exponent * math.log2(abs(base)) > _MAX_INT_BITS:
            raise CalculatorError(f"result too large: {base} ** {exponent} has more than {_MAX_INT_BITS} bits")
    return base**exponent


def _binary(op: ast.operator, left: Any, right: Any) -> Any:
    if isinstance(op, ast.Add):
        return left + right
    if isinstance(op, ast.Sub):
        return left - right
    if isinstance(op, ast.Mult):
        if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > _MAX_INT_BITS:
            raise CalculatorError(f"result too large (more than {_MAX_INT_BITS} bits)")
        return left * right
    if isinstance(op, ast.Div):
        return left / right
    if isinstance(op, ast.FloorDiv):
        return left // right
    if isinstance(op, ast.Mod):
        return left % right
    if isinstance(op, ast.Pow):
        return _power(left, right)
    raise CalculatorError(f"unsupported operator {type(op).__name__}")


def _evaluate(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise CalculatorError(f"only numbers are allowed, got {node.value!r}")
        return _check_int(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        value = _evaluate(node.operand)
        return value if isinstance(node.op, ast.UAdd) else -value
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _OPERATORS:
            hint = "; use ** for powers" if isinstance(node.op, ast.BitXor) else ""
            raise CalculatorError(f"operator {type(node.op).__name__} is not supported{hint}")
        return _check_int(_binary(node.op, _evaluate(node.left), _evaluate(node.right)))
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise CalculatorError(f"unknown name {node.id!r}; known constants: {', '.join(_CONSTANTS)}")
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            raise CalculatorError(f"only these functions are allowed: {', '.join(_FUNCTIONS)}")
        if node.keywords:
            raise CalculatorError("functions take positional arguments only")
        args = [_evaluate(arg) for arg in node.args]
        if node.func.id == "round" and len(args) > 1 and isinstance(args[1], int) and abs(args[1]) > 400:
            raise CalculatorError("round() digits must be between -400 and 400")  # round(n, -10**999) is slow
        if node.func.id not in ("abs", "round") and any(isinstance(a, int) and abs(a) > _MAX_FLOAT_ARG for a in args):
            raise CalculatorError("argument too large")
        return _check_int(_FUNCTIONS[node.func.id](*args))
    raise CalculatorError(f"{type(node).__name__} is not allowed; use numbers, + - * / // % **, parentheses and math functions")


def calculator(expression: Annotated[str, "Arithmetic expression, e.g. (2 + 3) * sqrt(16) / 4"]) -> int | float:
    """Evaluate an arithmetic expression: numbers, + - * / // % **, parentheses, sqrt, log, sin, cos, pi, e."""
    text = expression.strip()
    if not text:
        raise CalculatorError("empty expression; expected arithmetic such as 2 * (3 + 4)")
    if len(text) > _MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"expression too long ({len(text)} characters, at most {_MAX_EXPRESSION_CHARS})")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise CalculatorError(f"not a valid arithmetic expression: {text!r}") from exc
    try:
        result = _evaluate(tree)
    except ZeroDivisionError as exc:
        raise CalculatorError("division by zero") from exc
    except OverflowError as exc:
        raise CalculatorError(f"result too large: {exc}") from exc
    except (ValueError, TypeError) as exc:
        raise CalculatorError(f"math error: {exc}") from exc
    except RecursionError as exc:
        raise CalculatorError("expression nested too deeply") from exc
    if isinstance(result, float) and not math.isfinite(result):
        raise CalculatorError(f"result is not a finite number ({result})")
    return result


# ---------------------------------------------------------------------------------------------------

BUILTIN_TOOLS = (random_number_generator, get_weather, current_time, calculator)


def register_builtins(registry: ToolRegistry) -> ToolRegistry:
    """Register the built-in tools on a registry (no I/O happens here)."""
    for func in BUILTIN_TOOLS:
        registry.register(func)
    return registry
