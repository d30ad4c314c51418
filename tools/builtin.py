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
    "time_at",
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


# Places people name that are not the last part of an IANA zone (zone cities such as Tokyo, New York or
# São Paulo are found from the zone names themselves), English and Chinese.
_PLACE_ZONES = {
    "Asia/Shanghai": "Beijing Peking Shenzhen Guangzhou Canton Chengdu Chongqing Hangzhou Nanjing Wuhan Xian Xi'an "
                     "Tianjin Suzhou Qingdao Dalian Xiamen Kunming Harbin Shenyang Changsha Zhengzhou Jinan Hefei "
                     "Fuzhou Nanning Guiyang Lanzhou China 北京 上海 广州 深圳 成都 重庆 杭州 南京 武汉 西安 天津 苏州 "
                     "青岛 大连 厦门 昆明 哈尔滨 沈阳 长沙 郑州 济南 合肥 福州 南宁 贵阳 兰州 拉萨 乌鲁木齐 中国",
    "Asia/Hong_Kong": "香港 HK", "Asia/Macau": "澳门", "Asia/Taipei": "Taiwan Kaohsiung Taichung 台北 台湾 高雄 台中",
    "Asia/Tokyo": "Japan Osaka Kyoto Yokohama Nagoya Sapporo Fukuoka Kobe Hiroshima Okinawa 东京 日本 大阪 京都",
    "Asia/Seoul": "Korea South Korea Busan Incheon 首尔 汉城 韩国 釜山", "Asia/Pyongyang": "North Korea 平壤",
    "Asia/Kolkata": "India Mumbai Bombay Delhi New Delhi Bangalore Bengaluru Chennai Madras Hyderabad Pune "
                    "Ahmedabad Calcutta 印度 孟买 新德里 德里 班加罗尔",
    "Asia/Singapore": "新加坡", "Asia/Bangkok": "Thailand Phuket Chiang Mai 曼谷 泰国 普吉岛",
    "Asia/Ho_Chi_Minh": "Vietnam Viet Nam Hanoi Ho Chi Minh City Saigon 越南 河内 胡志明市",
    "Asia/Kuala_Lumpur": "Malaysia 吉隆坡 马来西亚", "Asia/Jakarta": "Indonesia Bali 雅加达 印度尼西亚 印尼 巴厘岛",
    "Asia/Manila": "Philippines 马尼拉 菲律宾", "Asia/Dubai": "UAE Abu Dhabi 迪拜 阿联酋 阿布扎比",
    "Asia/Riyadh": "Saudi Arabia Mecca Jeddah 利雅得 沙特", "Asia/Tehran": "Iran 德黑兰 伊朗",
    "Asia/Jerusalem": "Israel Tel Aviv 耶路撒冷 以色列 特拉维夫", "Asia/Karachi": "Pakistan Lahore Islamabad 卡拉奇 巴基斯坦",
    "Asia/Kathmandu": "Nepal 加德满都 尼泊尔", "Asia/Yangon": "Myanmar Rangoon 仰光 缅甸", "Asia/Dhaka": "Bangladesh 达卡",
    "Asia/Almaty": "Kazakhstan 阿拉木图", "Asia/Ulaanbaatar": "Mongolia Ulan Bator 乌兰巴托 蒙古",
    "Europe/London": "UK United Kingdom England Britain Great Britain Manchester Birmingham Liverpool Edinburgh "
                     "Glasgow Oxford Cambridge Scotland 伦敦 英国 曼彻斯特 爱丁堡",
    "Europe/Paris": "France Lyon Marseille Nice Toulouse Bordeaux 巴黎 法国 里昂 马赛",
    "Europe/Berlin": "Germany Munich München Frankfurt Hamburg Cologne Köln Stuttgart Düsseldorf 柏林 德国 慕尼黑 法兰克福 汉堡",
    "Europe/Madrid": "Spain Barcelona Seville Sevilla Valencia Málaga Malaga 马德里 西班牙 巴塞罗那",
    "Europe/Rome": "Italy Milan Milano Venice Venezia Florence Firenze Naples Napoli Turin Torino 罗马 意大利 米兰 威尼斯 佛罗伦萨",
    "Europe/Amsterdam": "Netherlands Holland Rotterdam The Hague 阿姆斯特丹 荷兰", "Europe/Brussels": "Belgium 布鲁塞尔 比利时",
    "Europe/Zurich": "Switzerland Geneva Genève Bern Basel 苏黎世 瑞士 日内瓦", "Europe/Vienna": "Austria Wien Salzburg 维也纳 奥地利",
    "Europe/Prague": "Czechia Czech Republic Praha 布拉格 捷克", "Europe/Warsaw": "Poland Kraków Krakow 华沙 波兰",
    "Europe/Stockholm": "Sweden Gothenburg 斯德哥尔摩 瑞典", "Europe/Oslo": "Norway Bergen 奥斯陆 挪威",
    "Europe/Copenhagen": "Denmark 哥本哈根 丹麦", "Europe/Helsinki": "Finland 赫尔辛基 芬兰",
    "Europe/Athens": "Greece 雅典 希腊", "Europe/Istanbul": "Turkey Türkiye Ankara 伊斯坦布尔 土耳其 安卡拉",
    "Europe/Moscow": "Russia Saint Petersburg St Petersburg St. Petersburg 莫斯科 俄罗斯 圣彼得堡",
    "Europe/Kyiv": "Ukraine Kiev 基辅 乌克兰", "Europe/Lisbon": "Portugal Porto 里斯本 葡萄牙",
    "Europe/Dublin": "Ireland 都柏林 爱尔兰", "Atlantic/Reykjavik": "Iceland 雷克雅未克 冰岛",
    "Europe/Budapest": "Hungary 布达佩斯 匈牙利",
    "America/New_York": "New York City NYC Boston Washington Washington DC Philadelphia Miami Atlanta Pittsburgh "
                        "Orlando Baltimore 纽约 波士顿 华盛顿 费城 迈阿密",
    "America/Chicago": "Houston Dallas Austin San Antonio New Orleans Minneapolis St. Louis 芝加哥 休斯顿 达拉斯",
    "America/Denver": "Salt Lake City 丹佛", "America/Phoenix": "Arizona 凤凰城",
    "America/Los_Angeles": "LA San Francisco San Diego Seattle Las Vegas Portland San Jose Silicon Valley "
                           "洛杉矶 旧金山 三藩市 西雅图 拉斯维加斯",
    "America/Toronto": "Ottawa Montreal Montréal Québec Quebec 多伦多 渥太华 蒙特利尔", "America/Vancouver": "温哥华",
    "America/Mexico_City": "Mexico 墨西哥城 墨西哥", "America/Sao_Paulo": "Brazil Rio de Janeiro Rio Brasília Brasilia 圣保罗 巴西 里约热内卢",
    "America/Argentina/Buenos_Aires": "Argentina 布宜诺斯艾利斯 阿根廷", "America/Santiago": "Chile 圣地亚哥（智利） 智利",
    "America/Lima": "Peru 利马 秘鲁", "America/Bogota": "Colombia 波哥大 哥伦比亚", "America/Havana": "Cuba 哈瓦那 古巴",
    "Pacific/Honolulu": "Hawaii 檀香山 夏威夷", "America/Anchorage": "Alaska 安克雷奇 阿拉斯加",
    "Australia/Sydney": "Australia Canberra 悉尼 澳大利亚 堪培拉", "Australia/Melbourne": "墨尔本",
    "Australia/Brisbane": "布里斯班", "Australia/Perth": "珀斯", "Pacific/Auckland": "New Zealand Wellington 奥克兰 新西兰 惠灵顿",
    "Africa/Cairo": "Egypt 开罗 埃及", "Africa/Johannesburg": "South Africa Cape Town Pretoria Durban 约翰内斯堡 南非 开普敦",
    "Africa/Lagos": "Nigeria Abuja 拉各斯 尼日利亚", "Africa/Nairobi": "Kenya 内罗毕 肯尼亚",
    "Africa/Casablanca": "Morocco Marrakesh Marrakech Rabat 卡萨布兰卡 摩洛哥", "Africa/Addis_Ababa": "Ethiopia 亚的斯亚贝巴",
    "UTC": "格林尼治 世界协调时",
}
# Multi-word English names in the table above (the rest split on spaces).
_MULTIWORD = ("South Korea", "North Korea", "New Delhi", "Chiang Mai", "Ho Chi Minh City", "Viet Nam", "Abu Dhabi",
              "Saudi Arabia", "Tel Aviv", "Ulan Bator", "United Kingdom", "Great Britain", "The Hague",
              "Czech Republic", "Saint Petersburg", "St Petersburg", "St. Petersburg", "New York City",
              "Washington DC", "San Antonio", "New Orleans", "St. Louis", "Salt Lake City", "San Francisco",
              "San Diego", "Las Vegas", "San Jose", "Silicon Valley", "Rio de Janeiro", "New Zealand",
              "South Africa", "Cape Town", "Addis Ababa")


def _place_key(text: str) -> str:
    """Case, accents, and the separators people use ('_', '-', runs of spaces) do not matter."""
    import unicodedata

    plain = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    return " ".join(plain.replace("_", " ").replace("-", " ").casefold().split())


def _place_names(value: str) -> list[str]:
    names = []
    for multi in _MULTIWORD:
        if multi in value:
            names.append(multi)
            value = value.replace(multi, " ")
    return names + value.split()


_ZONE_INDEX: dict[str, tuple[str, str]] = {}  # place key -> (IANA zone, display name); filled on first use


def _zone_index() -> dict[str, tuple[str, str]]:
    if not _ZONE_INDEX:
        from zoneinfo import available_timezones

        index: dict[str, tuple[str, str]] = {}
        for zone in sorted(available_timezones()):
            if zone in ("Factory", "localtime") or zone.startswith(("Etc/", "SystemV/", "posix/", "right/")):
                continue
            index.setdefault(_place_key(zone), (zone, zone))
            if "/" in zone:  # the city part: "America/New_York" -> "new york" (canonical zones win: sorted order)
                city = zone.rsplit("/", 1)[1]
                index.setdefault(_place_key(city), (zone, city.replace("_", " ")))
        for zone, names in _PLACE_ZONES.items():
            for name in _place_names(names):
                index[_place_key(name)] = (zone, name)
        _ZONE_INDEX.update(index)
    return _ZONE_INDEX


_MAX_WORDS_SEARCHED = 8  # a longer text is not a place name with a few extra words


def _places_within(key: str, index: dict[str, tuple[str, str]]) -> list[tuple[str, str]]:
    """The (zone, place) of the longest known names inside `key` (a _place_key): whole words of three
    letters or more, or Chinese names of two characters or more. Empty when none, or when the text is long."""
    import re

    words = re.findall(r"\w+", key)
    if not words or len(words) > _MAX_WORDS_SEARCHED:
        return []
    phrases = {(i, i + n): " ".join(words[i:i + n]) for n in range(len(words), 0, -1) for i in range(len(words) - n + 1)}
    spans = [span for span, phrase in phrases.items() if len(phrase) >= 3 and phrase in index]
    # "new york" holds "york": only names not inside a longer one count, so "new york or london" is two
    outer = [(a, b) for a, b in spans if not any(c <= a and b <= d and (c, d) != (a, b) for c, d in spans)]
    if outer:
        return [index[phrases[span]] for span in outer]
    return [index[name] for name in _cjk_names(index) if name in key]


_CJK_NAMES: list[str] = []


def _cjk_names(index: dict[str, tuple[str, str]]) -> list[str]:
    if not _CJK_NAMES:
        _CJK_NAMES.extend(name for name in index if len(name) >= 2 and all("\u4e00" <= ch <= "\u9fff" for ch in name))
    return _CJK_NAMES


def resolve_zone(name: str) -> tuple[str, str]:
    """(IANA zone, place) for an IANA name or a city / country name; place is "" for an IANA or UTC name.

    Raises TimeZoneError naming close matches when neither fits.
    """
    text = name.strip()
    if text.upper() in ("UTC", "Z", "GMT", "UCT") or text in ("协调世界时", "世界时"):
        return "UTC", ""
    index = _zone_index()
    key = _place_key(text)
    for suffix in ("市", "时间", "时区"):  # "北京市", "东京时间"
        if key not in index and key.endswith(suffix) and key[: -len(suffix)] in index:
            key = key[: -len(suffix)]
    if key in index:
        zone, place = index[key]
        return zone, ("" if "/" in text or key == _place_key(zone) and "/" in zone else text)
    within = _places_within(key, index)
    if len({zone for zone, _ in within}) == 1:  # "london rn", "sydney yet?", "深圳今天": one place, named inside
        return within[0]
    if within:
        places = ", ".join(dict.fromkeys(place for _, place in within))
        raise TimeZoneError(f"{name!r} names more than one place ({places}); expected one time zone or city")
    import difflib

    close = difflib.get_close_matches(key, list(index), n=4, cutoff=0.75)
    hints = []
    for match in close:
        zone, place = index[match]
        hint = zone if place == zone else f"{place} ({zone})"
        if hint not in hints:
            hints.append(hint)
    hint = f"; did you mean {', '.join(hints)}?" if hints else ""
    raise TimeZoneError(
        f"unknown time zone {name!r}; expected an IANA name such as 'UTC', 'Asia/Shanghai' or 'America/New_York', "
        f"or a city name such as 'Tokyo' or '北京'{hint}"
    )


def current_time(
    timezone: Annotated[str, "IANA time zone name or city, e.g. Asia/Shanghai or Tokyo"] = "UTC",
) -> dict[str, str]:
    """Get the current date and time in a time zone or city."""
    zone_name, place = resolve_zone(timezone)
    try:
        zone: Any = dt_timezone.utc if zone_name == "UTC" else ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise TimeZoneError(f"time zone {zone_name!r} has no data on this machine (install tzdata)") from exc
    return time_at(zone_name, datetime.now(zone).replace(microsecond=0), place)


def time_at(zone_name: str, now: datetime, place: str = "") -> dict[str, str]:
    """current_time's result for the instant `now` (already in zone_name's time); the embedded model's
    training data and its eval build their time observations with it, so they keep the tool's shape."""
    result = {"timezone": zone_name, "datetime": now.isoformat(), "weekday": now.strftime("%A")}
    return {"place": place, **result} if place else result


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
    if isinstance(result, complex):
        # a negative base to a fractional power, e.g. (-8)**0.5: Python answers with a complex number
        raise CalculatorError(
            f"{text} has no real-number result (a negative number to a fractional power); "
            "expected a real-valued expression, e.g. -(8**0.5) or (-8)**2"
        )
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
