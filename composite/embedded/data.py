"""Seeded training and held-out conversations for the embedded model, in the app's own prompt format.

Entities (made-up names, numbers, time zones, phrasings) are split so that eval never reuses training values.
"""

from __future__ import annotations

import io
import json
import random
import statistics
import zlib
from collections.abc import Callable
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from functools import cache
from datetime import UTC, datetime
from typing import Any

from ..messages import Message
from ..prompts import SYSTEM_PROMPTS
from . import phrasing

__all__ = [
    "COPY_SYSTEM",
    "Conversation",
    "EvalCase",
    "Exchange",
    "is_heldout_name",
    "is_heldout_number",
    "sample_clean_copy",
    "sample_contrast_conversation",
    "sample_conversation",
    "sample_copy_task",
    "sample_eval_case",
    "tokenizer_corpus",
    "tool_registry",
    "tool_schemas",
]

SPLITS = ("train", "eval")
COPY_SYSTEM = "Repeat the text exactly."
CONSONANTS = "bcdfghjklmnpqrstvwxyz"
VOWELS = "aeiou"
LETTERS = "abcdefghijklmnopqrstuvwxyz"
# Common CJK characters for made-up Chinese names (one sentencepiece each).
CJK = (
    "安北长城春大东方丰福光广海和河红华黄吉江金京锦康兰乐丽林龙隆明南宁平青庆泉瑞山上盛石顺松台泰天通"
    "文西祥新星兴阳永玉元云泽州珠白宝彩川丹德峰富港桂汉宏湖辉佳嘉建洁静凯兰岚雷莲良凌柳美梦宁鹏清秋荣"
    "森韶胜舒水思涛田婷伟武霞香晓欣秀雪雅岩燕叶英颖远月悦振正芝中竹紫"
)
TIMEZONES = [
    "Europe/London", "Europe/Paris", "Europe/Berlin", "Europe/Madrid", "Europe/Rome", "Europe/Oslo",
    "Europe/Stockholm", "Europe/Helsinki", "Europe/Athens", "Europe/Moscow", "Europe/Lisbon", "Europe/Warsaw",
    "Europe/Vienna", "Europe/Prague", "Europe/Dublin", "Europe/Zurich", "Asia/Shanghai", "Asia/Tokyo",
    "Asia/Seoul", "Asia/Singapore", "Asia/Kolkata", "Asia/Dubai", "Asia/Bangkok", "Asia/Jakarta",
    "Asia/Manila", "Asia/Karachi", "Asia/Tehran", "Asia/Hong_Kong", "Asia/Taipei", "Asia/Kathmandu",
    "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "America/Toronto",
    "America/Vancouver", "America/Mexico_City", "America/Bogota", "America/Lima", "America/Sao_Paulo",
    "America/Santiago", "America/Halifax", "America/Anchorage", "Africa/Cairo", "Africa/Lagos",
    "Africa/Nairobi", "Africa/Johannesburg", "Africa/Casablanca", "Australia/Sydney", "Australia/Perth",
    "Australia/Melbourne", "Australia/Brisbane", "Pacific/Auckland", "Pacific/Honolulu", "Pacific/Fiji",
    "Atlantic/Reykjavik", "Indian/Maldives", "Asia/Yangon", "Asia/Almaty", "Europe/Kyiv",
]
HELDOUT_TIMEZONES = {"Europe/Oslo", "Asia/Seoul", "America/Denver", "Africa/Nairobi", "Australia/Perth", "Europe/Prague"}
WEATHER_WORDS = ["Sunny", "Clear", "Partly cloudy", "Cloudy", "Overcast", "Light rain", "Heavy rain", "Mist",
                 "Fog", "Light snow", "Thunderstorm", "Patchy rain nearby", "Light drizzle", "Blizzard"]
WEATHER_FAILURES = [
    "weather service unreachable at {url}: [Errno -2] Name or service not known",
    "weather service unreachable at {url}: [Errno 111] Connection refused",
    "weather service unreachable at {url}: timed out",
    "weather service unreachable at {url}: [Errno 101] Network is unreachable",
    "weather service at {url} answered HTTP 503 Service Unavailable",
    "weather service at {url} answered HTTP 404 Not Found",
    "weather service unreachable at {url}: Remote end closed connection without response",
]
WIND_DIRS = ["N", "NNE", "NE", "ENE", "E", "ESE", "SE", "SSE", "S", "SSW", "SW", "WSW", "W", "WNW", "NW", "NNW"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
CSV_COLUMNS = ["date", "city", "price", "amount", "name", "score", "age", "sales", "region", "product", "total"]
# Real words for the entity slots of training prompts (names, strings, files, columns, labels). Made-up names
# teach copying character by character; real words are what people type, and many are whole tokenizer pieces
# ("Reykjavik", "range", "▁so"), which a model that only ever copied single characters garbles.
REAL_WORDS = (
    "hello world open source quick brown fox lazy dog cat mat sat rain spain stays mainly level racecar python "
    "banana apple orange pear plum grape lemon mango cherry peach melon berry coffee tea milk bread cheese rice "
    "house garden window door table chair river mountain ocean forest island bridge street market station school "
    "music piano guitar movie story letter paper pencil book page chapter office meeting project report budget "
    "revenue units profit cost price sales score grade height weight temp speed distance count total amount "
    "name city region product date month year week morning evening night summer winter spring autumn "
    "red green blue yellow purple black white silver golden happy sunny cloudy windy quiet loud fast slow "
    "little big small large long short new old good great simple clever brave gentle bright dark warm cold "
    "data time range mode title plot value number first light real right full general random string code "
    "about above access answer check current default file format graph help history image list machine model "
    "network object order power question result sample session shape table task type user word zero "
    "Anchorage Athens Auckland Bangkok Berlin Brisbane Casablanca Chicago Dubai Dublin Halifax Helsinki Honolulu "
    "Jakarta Johannesburg Karachi Kathmandu Kolkata Lagos Lisbon London Madrid Manila Melbourne Moscow Paris "
    "Reykjavik Santiago Shanghai Singapore Stockholm Sydney Tehran Toronto Vancouver Vienna Warsaw Yangon "
    "Africa America Asia Europe Atlantic Pacific Monday Friday Sunday Python Hello World Green Paris "
    "candle ticket wallet jacket pocket basket rocket planet comet galaxy harbor valley meadow desert canyon "
    "violin drum flute trumpet sugar honey butter pepper salt tomato potato carrot onion garlic noodle soup "
    "tiger lion zebra horse rabbit turtle eagle falcon parrot dolphin whale shark spider beetle "
    "Oslo Lima Cairo Nairobi Seoul Osaka Kyoto Hanoi Delhi Mumbai Boston Denver Dallas Austin Miami Seattle"
).split()
REAL_WORD_SHARE = 0.35  # of skills.py's entity words (data.py's makers, which the held-out eval uses, draw none)


@dataclass
class Exchange:
    """One user question and the assistant turns that answer it (call, observation, answer)."""

    messages: list[Message]
    kind: str  # "chat", "tool", "code", "copy"
    tool: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    code_output: str = ""  # expected stdout (stripped) of interpreter code, when checkable
    key: str = ""  # the value a final answer must state


@dataclass
class Conversation:
    mode: str
    tools: list[dict[str, Any]] | None
    exchanges: list[Exchange]
    system: str = ""  # a system prompt other than the mode's own (tool mode under someone else's prompt)

    def messages(self) -> list[Message]:
        out = [Message("system", self.system or (COPY_SYSTEM if self.mode == "copy" else SYSTEM_PROMPTS[self.mode]))]
        for ex in self.exchanges:
            out += ex.messages
        return out


# ---------------------------------------------------------------------------------------------------
# tools


def tool_registry() -> Any:
    """The app's registry of built-in tools (its schemas are what the model is trained on)."""
    from tools import default_registry

    return default_registry


def tool_schemas() -> list[dict[str, Any]]:
    return tool_registry().chatglm3_tools()


def _call(name: str, args: dict[str, Any]) -> str:
    """Run a real built-in tool offline and return its observation text."""
    from ..toolcall import call_tool

    return call_tool(tool_registry(), name, args).observation()


def _render(value: Any) -> str:
    from ..toolcall import render_value

    return render_value(value)


def call_code(name: str, args: dict[str, Any]) -> str:
    """The exact `tool_call(...)` body the model writes."""
    parts = []
    for key, value in args.items():
        parts.append(f"{key}={_literal(value)}")
    return "```python\ntool_call(" + ", ".join(parts) + ")\n```"


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, tuple):
        return "(" + ", ".join(_literal(v) for v in value) + ")"
    return repr(value)


# ---------------------------------------------------------------------------------------------------
# entities


def _h(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def is_heldout_name(name: str) -> bool:
    return _h(name.lower()) % 7 == 3


def is_heldout_number(n: int) -> bool:
    """Held-out numbers: those whose decimal digits start with 47 (ranges never used in training)."""
    return str(abs(n)).startswith("47")


def _word(rng: random.Random, lo: int = 3, hi: int = 9) -> str:
    length = rng.randint(lo, hi)
    if rng.random() < 0.5:
        return "".join(rng.choice(LETTERS) for _ in range(length))
    start = rng.random() < 0.5
    return "".join(rng.choice(CONSONANTS if (i % 2 == 0) == start else VOWELS) for i in range(length))


def _accept(rng: random.Random, split: str, make: Callable[[random.Random], Any], test: Callable[[Any], bool]) -> Any:
    for _ in range(1000):
        value = make(rng)
        if test(value) == (split == "eval"):
            return value
    raise RuntimeError("could not draw a value for the split")


def city(rng: random.Random, split: str) -> str:
    def make(r: random.Random) -> str:
        roll = r.random()
        if roll < 0.22:
            return "".join(r.choice(CJK) for _ in range(r.randint(2, 3))) + ("市" if r.random() < 0.2 else "")
        if roll < 0.42:
            return _word(r, 3, 7).capitalize() + " " + _word(r, 3, 7).capitalize()
        if roll < 0.47:
            return _word(r, 3, 9)
        return _word(r, 3, 11).capitalize()

    return _accept(rng, split, make, is_heldout_name)


@cache
def real_words() -> tuple[str, ...]:
    """REAL_WORDS less every word of a newcomer prompt: the newcomer set's entities stay unseen in training."""
    import re

    from .newcomer import load_newcomer

    seen = {w.lower() for case in load_newcomer() for w in re.findall(r"[A-Za-z]+", case.prompt)}
    return tuple(w for w in REAL_WORDS if w.lower() not in seen)


def real_word(rng: random.Random, lo: int = 1, hi: int = 99) -> str:
    """A real word of lo..hi characters (lowercase unless it is a name); when 20 draws miss that length, the
    last word drawn."""
    pool = real_words()
    for _ in range(20):
        w = rng.choice(pool)
        if lo <= len(w) <= hi:
            return w
    return w


def word(rng: random.Random, split: str, lo: int = 3, hi: int = 9) -> str:
    return _accept(rng, split, lambda r: _word(r, lo, hi), is_heldout_name)


def number(rng: random.Random, split: str, max_digits: int = 7, lo_digits: int = 1) -> int:
    def make(r: random.Random) -> int:
        digits = r.randint(lo_digits, max_digits)
        if split == "eval":
            digits = max(digits, 2)
        low = 0 if digits == 1 else 10 ** (digits - 1)
        if split == "eval" and digits >= 2:
            return int("47" + "".join(str(r.randint(0, 9)) for _ in range(digits - 2)))
        return r.randint(low, 10**digits - 1)

    return _accept(rng, split, make, is_heldout_number)


def timezone(rng: random.Random, split: str) -> str:
    pool = [tz for tz in TIMEZONES if (tz in HELDOUT_TIMEZONES) == (split == "eval")]
    return rng.choice(pool)


def pick(rng: random.Random, split: str, templates: list[str], heldout: int = 1, extra: list[str] | None = None,
         zh: bool = False) -> str:
    """Training uses all but the last `heldout` phrasings (plus, when given, composed `extra` forms and light
    noise around the question); eval uses only those last phrasings, untouched."""
    if split == "eval":
        return rng.choice(templates[-heldout:])
    if extra and rng.random() < 0.6:
        template = rng.choice(extra)
    else:
        template = rng.choice(templates[:-heldout])
    return phrasing.dress(rng, template, zh)  # openers and closers hold no braces: format() still works


# ---------------------------------------------------------------------------------------------------
# tool exchanges

WEATHER_Q_EN = [
    "What's the weather in {c}?", "What is the weather like in {c} today?", "How is the weather in {c}?",
    "Weather in {c}?", "Tell me the current weather in {c}.", "Is it raining in {c} right now?",
    "Can you check the weather for {c}?", "I'm going to {c}. What's the weather there?",
    "How hot is it in {c}?", "Check the weather in {c} please.", "Get me the weather report for {c}.",
    "Do I need an umbrella in {c} today?",
]
WEATHER_Q_ZH = [
    "{c}的天气怎么样？", "{c}今天天气如何？", "查一下{c}的天气。", "{c}现在下雨吗？", "帮我看看{c}的天气",
    "我要去{c}，那里天气怎么样？", "{c}现在多少度？", "请告诉我{c}的天气情况。",
]
TIME_Q_EN = [
    "What time is it in {z}?", "What's the current time in {z}?", "Tell me the time in the {z} time zone.",
    "Current date and time in {z}?", "What day is it now in {z}?", "Which time is it in {z} right now?",
    "Give me the local time for {z}.",
]
TIME_Q_ZH = ["{z}现在几点？", "{z}时区现在是什么时间？", "查一下{z}的当前时间。", "请告诉我{z}现在的时间"]
TIME_Q_NOZONE_EN = ["What time is it?", "What's the time now?", "What is today's date?", "What time is it in UTC?"]
TIME_Q_NOZONE_ZH = ["现在几点了？", "今天几号？"]
CALC_Q_EN = [
    "What is {e}?", "Calculate {e}.", "Compute {e} please.", "How much is {e}?", "Evaluate {e}",
    "Can you work out {e}?", "Use the calculator: {e}", "Solve {e} for me.", "What does {e} equal?",
]
CALC_Q_ZH = ["计算 {e}", "{e} 等于多少？", "帮我算一下 {e}", "请计算{e}的结果", "{e}是多少？"]
RAND_Q_EN = [
    "Give me a random number between {a} and {b} with seed {s}.",
    "Generate a random integer from {a} to {b} using seed {s}.",
    "Pick a random number in the range {a} to {b}, seed {s}.",
    "Random number between {a} and {b}, seed={s}",
    "Use seed {s} to draw a random number between {a} and {b}.",
    "I need a random integer in [{a}, {b}] with random seed {s}.",
    "With seed {s}, roll a number from {a} to {b}.",
]
RAND_Q_ZH = [
    "用种子{s}生成一个{a}到{b}之间的随机数。", "给我一个{a}到{b}之间的随机整数，种子是{s}",
    "随机数，范围{a}到{b}，种子{s}", "请以{s}为种子，在{a}和{b}之间随机选一个数。",
]


@cache
def extra_forms(family: str) -> list[str]:
    """Composed training phrasings of a question family, minus near copies of its held-out phrasings."""
    templates, heldout, forms, zh = {
        "weather_en": (WEATHER_Q_EN, 2, phrasing.WEATHER_EN, False), "weather_zh": (WEATHER_Q_ZH, 1, phrasing.WEATHER_ZH, True),
        "time_en": (TIME_Q_EN, 1, phrasing.TIME_EN, False), "time_zh": (TIME_Q_ZH, 1, phrasing.TIME_ZH, True),
        "calc_en": (CALC_Q_EN, 1, phrasing.CALC_EN, False), "calc_zh": (CALC_Q_ZH, 1, phrasing.CALC_ZH, True),
        "rand_en": (RAND_Q_EN, 1, phrasing.RAND_EN, False), "rand_zh": (RAND_Q_ZH, 1, phrasing.RAND_ZH, True),
        "arith_en": (ARITH_Q_EN, 1, phrasing.ARITH_EN, False), "arith_zh": (ARITH_Q_ZH, 1, phrasing.ARITH_ZH, True),
        "stats_en": (STATS_Q_EN, 1, phrasing.STATS_EN, False), "stats_zh": (STATS_Q_ZH, 1, phrasing.STATS_ZH, True),
    }[family]
    return phrasing.far_from(forms, templates[-heldout:], zh)


@cache
def extra_string_forms(op: str) -> list[str]:
    return phrasing.far_from(phrasing.STRING_EN[op], [STR_Q_HELDOUT[op]], zh=False)


def _zh(rng: random.Random, p_zh: float = 0.3) -> bool:
    return rng.random() < p_zh


def weather_payload(rng: random.Random, name: str) -> dict[str, Any]:
    """A weather tool result shaped exactly like tools.builtin.get_weather's return value."""
    temp = rng.randint(-25, 42)
    return {
        "city": name,
        "temperature_c": temp,
        "feels_like_c": temp + rng.randint(-6, 2),
        "humidity_percent": rng.randint(8, 100),
        "description": rng.choice(WEATHER_WORDS),
        "wind_kmph": rng.randint(0, 60),
        "wind_direction": rng.choice(WIND_DIRS),
    }


def ex_weather(rng: random.Random, split: str, asked: tuple[str, str, bool] | None = None) -> Exchange:
    """A weather lookup; `asked` = (city, question, Chinese?) when the caller drew the question itself."""
    if asked is None:
        c = city(rng, split)
        zh = _zh(rng)
        q = pick(rng, split, WEATHER_Q_ZH if zh else WEATHER_Q_EN, 2 if not zh else 1,
                 extra_forms("weather_zh" if zh else "weather_en"), zh).format(c=c)
    else:
        c, q, zh = asked
    args = {"city_name": c}
    call = Message("assistant", call_code("get_weather", args), "get_weather")
    if rng.random() < 0.1:
        from urllib.parse import quote

        url = f"https://wttr.in/{quote(c, safe='')}?format=j1"
        obs = "Error: WeatherServiceError: weather service unreachable at " + url + ": [Errno -3] Temporary failure in name resolution"
        if split == "train" and rng.random() < 0.6:  # the many ways the real tool reports a failed lookup
            obs = "Error: WeatherServiceError: " + rng.choice(WEATHER_FAILURES).format(url=url)
        answer = (f"抱歉，无法获取{c}的天气：天气服务无法访问（本机可能没有网络）。" if zh else
                  f"Sorry, I could not get the weather for {c}: the weather service is unreachable (this machine may be offline).")
        if "answered HTTP" in obs:
            answer = (f"抱歉，无法获取{c}的天气：天气服务返回了错误，请稍后再试。" if zh else
                      f"Sorry, I could not get the weather for {c}: the weather service answered with an error. Please try again later.")
        return Exchange([Message("user", q), call, Message("observation", obs), Message("assistant", answer)],
                        "tool", "get_weather", args, key=c)
    data = weather_payload(rng, c)
    obs = _render(data)
    t = data["temperature_c"]
    if zh:
        answer = rng.choice([
            f"{c}现在{data['description']}，气温{t}°C，体感{data['feels_like_c']}°C，湿度{data['humidity_percent']}%。",
            f"{c}的天气：{t}°C，{data['description']}，湿度{data['humidity_percent']}%，风速{data['wind_kmph']} km/h。",
        ])
    else:
        answer = rng.choice([
            f"The weather in {c}: {t}°C and {data['description']}, feels like {data['feels_like_c']}°C, humidity {data['humidity_percent']}%.",
            f"It is {t}°C in {c} right now ({data['description']}), with humidity {data['humidity_percent']}% and wind {data['wind_kmph']} km/h {data['wind_direction']}.",
            f"In {c} it is currently {data['description'].lower()} at {t}°C (feels like {data['feels_like_c']}°C).",
        ])
    return Exchange([Message("user", q), call, Message("observation", obs), Message("assistant", answer)],
                    "tool", "get_weather", args, key=f"{t}°C")


def random_time(rng: random.Random, zone: str, place: str = "") -> tuple[datetime, str]:
    """A random instant in `zone` (an IANA name or "UTC") and current_time's observation of it."""
    from zoneinfo import ZoneInfo

    from tools.builtin import time_at

    stamp = rng.randint(1_600_000_000, 2_000_000_000)
    now = datetime.fromtimestamp(stamp, UTC if zone == "UTC" else ZoneInfo(zone))
    return now, _render(time_at(zone, now, place))


def ex_time(rng: random.Random, split: str) -> Exchange:
    zh = _zh(rng)
    if rng.random() < 0.2:
        z = "UTC"
        q = rng.choice(TIME_Q_NOZONE_ZH if zh else TIME_Q_NOZONE_EN)
    else:
        z = timezone(rng, split)
        q = pick(rng, split, TIME_Q_ZH if zh else TIME_Q_EN, 1, extra_forms("time_zh" if zh else "time_en"), zh).format(z=z)
    args = {"timezone": z}
    call = Message("assistant", call_code("current_time", args), "current_time")
    now, obs = random_time(rng, z)
    hhmm = now.strftime("%H:%M")
    day = now.strftime("%Y-%m-%d")
    if zh:
        answer = f"{z}现在是{day} {hhmm}（{now.strftime('%A')}）。"
    else:
        answer = rng.choice([
            f"It is {hhmm} on {now.strftime('%A')}, {day} in {z}.",
            f"The current time in {z} is {hhmm} ({day}, {now.strftime('%A')}).",
        ])
    return Exchange([Message("user", q), call, Message("observation", obs), Message("assistant", answer)],
                    "tool", "current_time", args, key=hhmm)


def expression(rng: random.Random, split: str) -> str:
    ops = ["+", "-", "*", "/", "+", "*", "-", "//", "%", "**"]

    def num() -> str:
        if rng.random() < 0.12:
            return f"{number(rng, split, 3)}.{rng.randint(1, 99)}"
        return str(number(rng, split, rng.choice([2, 3, 4, 5, 6])))

    roll = rng.random()
    sp = " " if rng.random() < 0.6 else ""
    if roll < 0.1:
        return f"sqrt({number(rng, split, 5)})"
    if roll < 0.55:
        op = rng.choice(ops)
        b = num() if op != "**" else str(rng.randint(2, 4))
        return f"{num()}{sp}{op}{sp}{b}"
    if roll < 0.85:
        return f"{num()}{sp}{rng.choice('+-*')}{sp}{num()}{sp}{rng.choice('+-*')}{sp}{num()}"
    return f"({num()}{sp}{rng.choice('+-')}{sp}{num()}){sp}{rng.choice('*/')}{sp}{num()}"


def ex_calc(rng: random.Random, split: str) -> Exchange:
    zh = _zh(rng, 0.25)
    e = expression(rng, split)
    if rng.random() < 0.06:
        e = f"{number(rng, split, 4)} / 0"
    q = pick(rng, split, CALC_Q_ZH if zh else CALC_Q_EN, 1, extra_forms("calc_zh" if zh else "calc_en"), zh).format(e=e)
    args = {"expression": e}
    call = Message("assistant", call_code("calculator", args), "calculator")
    obs = _call("calculator", args)
    if obs.startswith("Error:"):
        answer = ("无法计算：" + obs[len("Error: "):] + "。" if zh else
                  f"The calculator could not evaluate {e}: {obs[len('Error: '):]}.")
        key = "division by zero" if "division" in obs else ""
    else:
        answer = (rng.choice([f"{e} = {obs}", f"结果是 {obs}。"]) if zh else
                  rng.choice([f"{e} = {obs}", f"The result is {obs}.", f"{e} equals {obs}."]))
        key = obs
    return Exchange([Message("user", q), call, Message("observation", obs), Message("assistant", answer)],
                    "tool", "calculator", args, key=key)


def ex_random(rng: random.Random, split: str) -> Exchange:
    zh = _zh(rng, 0.25)
    a = number(rng, split, 4)
    b = a + number(rng, split, 6)
    if split == "train" and (is_heldout_number(b)):
        b += 1000
    if split == "eval" and not is_heldout_number(b):
        b = int("47" + str(b))
    return random_exchange(rng, split, zh, number(rng, split, 6), a, b)


def random_exchange(rng: random.Random, split: str, zh: bool, s: int, a: int, b: int) -> Exchange:
    """A random-number request for seed s and range a..b, asked in one of the split's phrasings."""
    q = pick(rng, split, RAND_Q_ZH if zh else RAND_Q_EN, 1, extra_forms("rand_zh" if zh else "rand_en"), zh).format(
        a=a, b=b, s=s)
    args = {"seed": s, "range": (a, b)}
    call = Message("assistant", call_code("random_number_generator", args), "random_number_generator")
    obs = _call("random_number_generator", {"seed": s, "range": [a, b]})
    answer = (f"随机数是 {obs}。" if zh else
              rng.choice([f"The random number is {obs}.", f"I got {obs} (seed {s}, range {a} to {b}).",
                          f"Your random number between {a} and {b} is {obs}."]))
    return Exchange([Message("user", q), call, Message("observation", obs), Message("assistant", answer)],
                    "tool", "random_number_generator", args, key=obs)


def ex_time_error(rng: random.Random, split: str) -> Exchange:
    z = city(rng, split).replace(" ", "_")
    q = rng.choice(TIME_Q_EN).format(z=z)
    args = {"timezone": z}
    call = Message("assistant", call_code("current_time", args), "current_time")
    obs = _call("current_time", args)
    answer = f"{z} is not a time zone I know. Please give an IANA name such as Europe/Paris or Asia/Shanghai."
    return Exchange([Message("user", q), call, Message("observation", obs), Message("assistant", answer)],
                    "tool", "current_time", args, key="IANA")


TOOL_MAKERS = [(ex_weather, 0.3), (ex_calc, 0.25), (ex_random, 0.22), (ex_time, 0.18), (ex_time_error, 0.05)]

# ---------------------------------------------------------------------------------------------------
# chat exchanges

GREET_EN = ["Hello", "Hi", "Hi!", "Hello!", "Hey", "Hey there", "Good morning", "Good evening", "hello", "hi",
            "Hi, how are you?", "Hello, nice to meet you"]
GREET_ZH = ["你好", "您好", "你好！", "嗨", "早上好", "晚上好", "你好呀"]
GREET_A_EN = ["Hello! How can I help you today?", "Hi! What can I do for you?", "Hello! I'm composite's built-in assistant. Ask me anything."]
GREET_A_ZH = ["你好！有什么可以帮你的吗？", "你好！我是 composite 的内置小模型，有什么需要帮忙的？"]
WHO_EN = ["Who are you?", "What are you?", "What is your name?", "Introduce yourself.", "Are you ChatGPT?",
          "Which model are you?", "Tell me about yourself."]
WHO_ZH = ["你是谁？", "你叫什么名字？", "介绍一下你自己", "你是什么模型？"]
WHO_A_EN = ("I am composite-embedded, a tiny language model built into composite. I run offline on a CPU and can "
            "greet you, call the built-in tools in Tool mode and write simple Python in Code Interpreter mode. "
            "For real answers, load a full model such as ChatGLM3-6B by setting MODEL_PATH.")
WHO_A_ZH = ("我是 composite-embedded，composite 内置的一个很小的语言模型，可以在 CPU 上离线运行。"
            "我能在工具模式下调用内置工具，在代码解释器模式下写简单的 Python 代码。"
            "想要更好的回答，请通过 MODEL_PATH 加载完整模型，例如 ChatGLM3-6B。")
CAN_EN = ["What can you do?", "What can you help me with?", "How can you help me?", "What are your abilities?",
          "Help"]
CAN_ZH = ["你能做什么？", "你会什么？", "你有什么功能？"]
CAN_A_EN = ("In Tool mode I can check the weather, tell the time in a time zone, do arithmetic with the calculator "
            "and draw random numbers. In Code Interpreter mode I write and run short Python programs: arithmetic, "
            "statistics, string operations, plots and reading uploaded CSV files. I am a tiny built-in model, so "
            "for general questions please load a real model such as ChatGLM3-6B via MODEL_PATH.")
CAN_A_ZH = ("在工具模式下，我可以查询天气、查看时区时间、用计算器计算和生成随机数；在代码解释器模式下，"
            "我可以编写并运行简短的 Python 代码：算术、统计、字符串处理、画图和读取上传的 CSV 文件。"
            "我只是一个很小的内置模型，一般问题请通过 MODEL_PATH 加载真正的模型，例如 ChatGLM3-6B。")
THANKS_EN = ["Thanks!", "Thank you", "thanks", "Great, thank you.", "OK", "Bye", "Goodbye"]
THANKS_ZH = ["谢谢", "谢谢你！", "好的", "再见"]
THANKS_A_EN = ["You're welcome!", "Glad I could help.", "Anytime!"]
THANKS_A_ZH = ["不客气！", "很高兴能帮到你。"]
FALLBACK_Q_EN = [
    "Write a poem about {w}.", "Explain quantum physics.", "What is the capital of {c}?", "Who won the last world cup?",
    "Tell me a joke.", "How do I cook {w}?", "Translate '{w}' into French.", "What is the meaning of life?",
    "Summarize the history of {c}.", "Can you recommend a good book?", "Why is the sky blue?",
    "What do you think about {w}?", "How does a {w} work?", "Write an essay about {c}.",
    "Give me advice on learning {w}.", "What happened in {n}?",
]
FALLBACK_Q_ZH = ["给我讲个笑话。", "写一首关于{c}的诗。", "{c}的历史是什么？", "什么是人工智能？", "推荐一本书。",
                 "天空为什么是蓝色的？", "怎么学习{w}？"]
FALLBACK_A_EN = [
    "I'm a tiny built-in model (composite-embedded), so I can't answer general questions well. To get a real answer, "
    "load a full model such as ChatGLM3-6B by setting MODEL_PATH to its folder.",
    "Sorry, that is beyond what I can do: I am a very small model that ships with composite for offline demos. "
    "Set MODEL_PATH to a real model such as ChatGLM3-6B for questions like this.",
]
FALLBACK_A_ZH = [
    "抱歉，我只是 composite 内置的一个很小的模型，无法很好地回答一般问题。请设置 MODEL_PATH 加载完整模型，例如 ChatGLM3-6B。",
]
NOTOOL_A_EN = ("I can't call tools in this mode. Switch to Tool mode and I can {what} for you, "
               "or load a real model such as ChatGLM3-6B via MODEL_PATH.")
NOTOOL_A_ZH = "当前模式下我不能调用工具。请切换到工具模式，我就可以帮你{what}。"


def ex_chat(rng: random.Random, split: str, mode: str) -> Exchange:
    zh = _zh(rng, 0.35)
    roll = rng.random()
    if roll < 0.22:
        q, a = rng.choice(GREET_ZH if zh else GREET_EN), rng.choice(GREET_A_ZH if zh else GREET_A_EN)
    elif roll < 0.36:
        q, a = rng.choice(WHO_ZH if zh else WHO_EN), WHO_A_ZH if zh else WHO_A_EN
    elif roll < 0.48:
        q, a = rng.choice(CAN_ZH if zh else CAN_EN), CAN_A_ZH if zh else CAN_A_EN
    elif roll < 0.56:
        q, a = rng.choice(THANKS_ZH if zh else THANKS_EN), rng.choice(THANKS_A_ZH if zh else THANKS_A_EN)
    else:
        template = pick(rng, split, FALLBACK_Q_ZH if zh else FALLBACK_Q_EN, 2, zh=zh)
        q = template.format(w=word(rng, split), c=city(rng, split), n=number(rng, split, 4, 4))
        a = rng.choice(FALLBACK_A_ZH if zh else FALLBACK_A_EN)
    return Exchange([Message("user", q), Message("assistant", a)], "chat")


def ex_chat_toolish(rng: random.Random, split: str) -> Exchange:
    """A question that would need a tool, asked in chat mode: answered without any call."""
    maker = rng.choice([ex_weather, ex_time, ex_calc, ex_random])
    src = maker(rng, split)
    zh = any("\u4e00" <= ch <= "\u9fff" for ch in src.messages[0].content)
    what = {"get_weather": ("check the weather", "查询天气"), "current_time": ("tell the time", "查看时间"),
            "calculator": ("compute it", "计算"), "random_number_generator": ("draw a random number", "生成随机数")}
    en, cn = what[src.tool]
    a = NOTOOL_A_ZH.format(what=cn) if zh else NOTOOL_A_EN.format(what=en)
    return Exchange([src.messages[0], Message("assistant", a)], "chat", key="no_tool")


# ---------------------------------------------------------------------------------------------------
# code interpreter exchanges

ARITH_Q_EN = ["What is {e}?", "Compute {e}.", "Calculate {e} with Python.", "Run {e}", "How much is {e}?",
              "Use Python to evaluate {e}.", "Please work out {e}."]
ARITH_Q_ZH = ["计算 {e}", "用 Python 算一下 {e}", "{e} 等于多少？", "{e}的结果是多少？"]
STATS = [("mean", "average", "平均值", "statistics.mean(data)"), ("median", "median", "中位数", "statistics.median(data)"),
         ("sum", "sum", "总和", "sum(data)"), ("max", "maximum", "最大值", "max(data)"), ("min", "minimum", "最小值", "min(data)"),
         ("stdev", "standard deviation", "标准差", "statistics.stdev(data)")]
STATS_Q_EN = ["What is the {s} of {l}?", "Compute the {s} of these numbers: {l}", "Find the {s} of {l}.",
              "Give me the {s} of the list {l}.", "{l}: what's the {s}?"]
STATS_Q_ZH = ["{l} 的{s}是多少？", "求这些数的{s}：{l}", "计算 {l} 的{s}"]
STR_OPS = [
    ("reverse", "Reverse the string '{w}'.", "把字符串 '{w}' 反转。", "print({q}[::-1])", lambda w: w[::-1]),
    ("upper", "Convert '{w}' to uppercase.", "把 '{w}' 转成大写。", "print({q}.upper())", lambda w: w.upper()),
    ("len", "How many characters are in '{w}'?", "'{w}' 有多少个字符？", "print(len({q}))", lambda w: str(len(w))),
    ("count", "How many times does the letter '{c}' appear in '{w}'?", "'{w}' 里有几个字母 '{c}'？",
     "print({q}.count({cq}))", None),
    ("sorted", "Sort the letters of '{w}' alphabetically.", "把 '{w}' 的字母按字母顺序排序。",
     "print(''.join(sorted({q})))", lambda w: "".join(sorted(w))),
    ("title", "Capitalize each word in '{w}'.", "把 '{w}' 每个单词首字母大写。", "print({q}.title())", lambda w: w.title()),
]
STR_Q_HELDOUT = {"reverse": "Please reverse the text '{w}'.", "upper": "Make '{w}' all capital letters.",
                 "len": "What is the length of the string '{w}'?", "count": "Count the '{c}' characters in '{w}'.",
                 "sorted": "Put the letters of '{w}' in alphabetical order.", "title": "Title-case the string '{w}'."}
PLOT_FUNCS = [("sin(x)", "np.sin(x)"), ("cos(x)", "np.cos(x)"), ("x^2", "x**2"), ("x^3", "x**3"),
              ("exp(x)", "np.exp(x)"), ("sqrt(x)", "np.sqrt(x)"), ("2*x + 1", "2*x + 1"), ("log(x + 1)", "np.log(x + 1)")]
PLOT_Q_EN = ["Plot {f} from {a} to {b}.", "Draw a graph of y = {f} for x between {a} and {b}.",
             "Make a plot of {f} on [{a}, {b}].", "Can you plot y = {f} from x = {a} to {b}?"]
PLOT_Q_ZH = ["画出 {f} 在 {a} 到 {b} 之间的图像。", "绘制 y = {f}，x 从 {a} 到 {b}。"]
CSV_Q_EN = ["I uploaded {f}. Show me the first rows.", "Read {f} and tell me how many rows it has.",
            "Load the file {f} and summarize it.", "What columns are in {f}?", "Open {f} and describe the data."]
CSV_Q_ZH = ["读取 {f}，看看有多少行。", "我上传了 {f}，帮我看看前几行。"]


def _run(code: str) -> str:
    """Run trusted template code (never model output) to get its exact stdout."""
    buffer = io.StringIO()
    scope: dict[str, Any] = {"statistics": statistics}
    try:
        with redirect_stdout(buffer):
            exec(compile(code, "<template>", "exec"), scope)  # noqa: S102 - our own generated template, not model text
    except ArithmeticError as exc:
        return f"{type(exc).__name__}: {exc}"
    return buffer.getvalue()


def _code_exchange(q: str, code: str, obs: str, answer: str, key: str, checkable: bool = True) -> Exchange:
    return Exchange(
        [Message("user", q), Message("assistant", f"```python\n{code}\n```", "interpreter"),
         Message("observation", obs), Message("assistant", answer)],
        "code", "interpreter", {"code": code}, code_output=obs if checkable else "", key=key,
    )


def ex_arith(rng: random.Random, split: str) -> Exchange:
    zh = _zh(rng, 0.25)
    e = expression(rng, split).replace("sqrt(", "math.sqrt(")
    if rng.random() < 0.05:
        e = f"{number(rng, split, 4)} / 0"
    q = pick(rng, split, ARITH_Q_ZH if zh else ARITH_Q_EN, 1, extra_forms("arith_zh" if zh else "arith_en"), zh).format(
        e=e.replace("math.", ""))
    code = ("import math\n" if "math." in e else "") + f"print({e})"
    if "/ 0" in e and e.endswith("/ 0"):
        obs = "ZeroDivisionError: division by zero"
        answer = ("代码出错：ZeroDivisionError，除数不能为 0。" if zh else
                  "The code failed with ZeroDivisionError: a number cannot be divided by zero.")
        ex = _code_exchange(q, code, obs, answer, "zero", checkable=False)
        ex.code_output = ""
        return ex
    out = _run("import math\n" + code).strip()
    if "Error" in out:
        answer = f"代码出错：{out}" if zh else f"The code failed with {out}."
        return _code_exchange(q, code, out, answer, out.split(":")[0], checkable=False)
    answer = (f"结果是 {out}。" if zh else rng.choice([f"The result is {out}.", f"{e.replace('math.', '')} = {out}"]))
    return _code_exchange(q, code, out, answer, out)


def ex_stats(rng: random.Random, split: str) -> Exchange:
    zh = _zh(rng, 0.25)
    data = [number(rng, split, rng.choice([1, 2, 3])) for _ in range(rng.randint(3, 7))]
    name, en, cn, expr = rng.choice(STATS)
    if split == "train" and name == "mean" and rng.random() < 0.5:
        en = rng.choice(["mean", "arithmetic mean", "average value"])
    listing = "[" + ", ".join(map(str, data)) + "]" if rng.random() < 0.6 else ", ".join(map(str, data))
    q = pick(rng, split, STATS_Q_ZH if zh else STATS_Q_EN, 1, extra_forms("stats_zh" if zh else "stats_en"), zh).format(
        s=cn if zh else en, l=listing)
    code = ("import statistics\n" if "statistics" in expr else "") + f"data = [{', '.join(map(str, data))}]\nprint({expr})"
    out = _run(code).strip()
    answer = f"{cn}是 {out}。" if zh else f"The {en} is {out}."
    return _code_exchange(q, code, out, answer, out)


def ex_string(rng: random.Random, split: str) -> Exchange:
    zh = _zh(rng, 0.2)
    name, q_en, q_zh, tmpl, fn = rng.choice(STR_OPS)
    w = word(rng, split, 3, 10)
    if name == "title":
        w = w + " " + word(rng, split, 3, 7)
    c = rng.choice(w)
    if split == "eval" and not zh:
        q_en = STR_Q_HELDOUT[name]
    elif not zh and rng.random() < 0.6:
        q_en = rng.choice(extra_string_forms(name))
    if split == "train":
        q_en, q_zh = phrasing.dress(rng, q_en, False), phrasing.dress(rng, q_zh, True)
    q = (q_zh if zh else q_en).format(w=w, c=c)
    code = tmpl.format(q=json.dumps(w), cq=json.dumps(c))
    out = _run(code).strip()
    answer = f"结果是 {out}。" if zh else rng.choice([f"The result is {out}.", f"Result: {out}"])
    return _code_exchange(q, code, out, answer, out)


def ex_plot(rng: random.Random, split: str) -> Exchange:
    zh = _zh(rng, 0.25)
    label, expr = rng.choice(PLOT_FUNCS)
    a = rng.randint(0, 5)
    b = a + rng.randint(1, 50)
    q = (rng.choice(PLOT_Q_ZH) if zh else pick(rng, split, PLOT_Q_EN)).format(f=label, a=a, b=b)
    code = (f"import numpy as np\nimport matplotlib.pyplot as plt\nx = np.linspace({a}, {b}, 200)\n"
            f"plt.plot(x, {expr})\nplt.title(\"y = {label}\")\nplt.xlabel(\"x\")\nplt.ylabel(\"y\")\nplt.show()")
    obs = f"[image: plot_{rng.randint(1, 9)}.png 640x480]"
    answer = f"这是 y = {label} 在 {a} 到 {b} 之间的图像。" if zh else f"Here is the plot of y = {label} for x from {a} to {b}."
    return _code_exchange(q, code, obs, answer, label, checkable=False)


def ex_csv(rng: random.Random, split: str) -> Exchange:
    zh = _zh(rng, 0.2)
    fname = word(rng, split, 3, 8) + rng.choice([".csv", "_data.csv", "2024.csv"])
    q = (rng.choice(CSV_Q_ZH) if zh else pick(rng, split, CSV_Q_EN)).format(f=fname)
    code = f"import pandas as pd\ndf = pd.read_csv(\"{fname}\")\nprint(df.shape)\nprint(df.head())"
    if rng.random() < 0.12:
        obs = f"FileNotFoundError: [Errno 2] No such file or directory: '{fname}'"
        answer = (f"找不到文件 {fname}，请先上传它。" if zh else
                  f"The file {fname} was not found. Please upload it first, then ask again.")
        return _code_exchange(q, code, obs, answer, fname, checkable=False)
    cols = rng.sample(CSV_COLUMNS, rng.randint(2, 4))
    rows = rng.randint(5, 5000)
    lines = ["   " + "  ".join(f"{col:>8}" for col in cols)]
    for i in range(5):
        lines.append(f"{i}  " + "  ".join(f"{rng.randint(0, 999):>8}" for _ in cols))
    obs = f"({rows}, {len(cols)})\n" + "\n".join(lines)
    return _code_exchange(q, code, obs, preview_answer(fname, rows, cols, zh), str(rows), checkable=False)


def preview_answer(fname: str, rows: int, cols: list[str], zh: bool) -> str:
    """The answer after a CSV preview (`print(df.shape)`, `print(df.head())`)."""
    return (f"{fname} 有 {rows} 行、{len(cols)} 列：{', '.join(cols)}。" if zh else
            f"{fname} has {rows} rows and {len(cols)} columns: {', '.join(cols)}. The first rows are shown above.")


def ex_name_error(rng: random.Random, split: str) -> Exchange:
    v = word(rng, split, 1, 4)
    q = f"Print the value of {v}."
    code = f"print({v})"
    obs = f"NameError: name '{v}' is not defined"
    answer = f"The code failed: {v} is not defined in this session. Please define it first, e.g. {v} = 1."
    return _code_exchange(q, code, obs, answer, v, checkable=False)


CODE_MAKERS = [(ex_arith, 0.3), (ex_stats, 0.25), (ex_string, 0.22), (ex_plot, 0.09), (ex_csv, 0.1), (ex_name_error, 0.04)]
NEW_SHARE = 0.6  # share of training tool / code exchanges drawn from skills.py

# ---------------------------------------------------------------------------------------------------
# conversations


def _weighted(rng: random.Random, makers: list[tuple[Callable[..., Exchange], float]]) -> Callable[..., Exchange]:
    return rng.choices([m for m, _ in makers], weights=[w for _, w in makers])[0]


def exchange_for(rng: random.Random, split: str, mode: str, extended: bool = True) -> Exchange:
    """One exchange of a mode; training (`extended`) draws NEW_SHARE of them from skills.py's newcomer skills.
    The held-out eval's cases use extended=False, so they stay exactly what they were."""
    if not (extended and split == "train"):
        return _exchange(rng, split, mode)

    def draw() -> list[Exchange]:
        if mode in ("tool", "code") and rng.random() < NEW_SHARE:
            from . import skills

            return [_weighted(rng, skills.TOOL_MAKERS if mode == "tool" else skills.CODE_MAKERS)(rng, split)]
        return [_exchange(rng, split, mode)]

    return _far_from_newcomers(draw)[0]


NEAR_TRIES = 30


def _far_from_newcomers(draw: Callable[[], list[Exchange]]) -> list[Exchange]:
    """draw() again until none of its exchanges asks a near copy of a newcomer prompt (training never
    does); after NEAR_TRIES draws the last one stands."""
    from .newcomer import near_newcomer

    for _ in range(NEAR_TRIES):
        exchanges = draw()
        if not any(near_newcomer(ex.messages[0].content,
                                 [str(v) for k, v in ex.args.items() if k in ("city_name", "timezone")])
                   for ex in exchanges):
            break
    return exchanges


def _exchange(rng: random.Random, split: str, mode: str) -> Exchange:
    if mode == "tool":
        if rng.random() < 0.1:
            return ex_chat(rng, split, mode)
        return _weighted(rng, TOOL_MAKERS)(rng, split)
    if mode == "code":
        if rng.random() < 0.08:
            return ex_chat(rng, split, mode)
        return _weighted(rng, CODE_MAKERS)(rng, split)
    if rng.random() < 0.3:
        return ex_chat_toolish(rng, split)
    return ex_chat(rng, split, mode)


def sample_conversation(rng: random.Random, split: str = "train", mode: str | None = None) -> Conversation:
    """A 1-4 exchange conversation in one mode (tool mode carries the registry's tools)."""
    mode = mode or rng.choices(["tool", "code", "chat"], weights=[0.5, 0.33, 0.17])[0]
    n = rng.choices([1, 2, 3, 4], weights=[0.3, 0.3, 0.25, 0.15])[0]
    exchanges = [exchange_for(rng, split, mode) for _ in range(n)]
    return Conversation(mode, tool_schemas() if mode == "tool" else None, exchanges)


def sample_contrast_conversation(rng: random.Random) -> Conversation:
    """A code conversation asking several operations of the same data (skills.contrast_exchanges); no ask is a
    near copy of a newcomer prompt."""
    from . import skills

    return Conversation("code", None, _far_from_newcomers(lambda: skills.contrast_exchanges(rng, "train")))


OTHER_TOOL_SYSTEMS = [
    "Answer the question with the tools.", "You are a helpful assistant with access to tools.",
    "Use the tools below when they help.", "You can use these functions:", "Tools available:",
    "You are an assistant. Call a tool when you need one.", "Help the user. These tools are available:",
    "你可以使用以下工具：", "请使用工具回答问题。", "Be brief. You have tools:",
]


def sample_varied_tool_conversation(rng: random.Random) -> Conversation:
    """A tool-mode conversation under another system prompt and another tool list (a subset in another
    order, as an MCP server or a caller's registry gives it): the tools a call uses are always listed."""
    exchanges = [exchange_for(rng, "train", "tool") for _ in range(rng.randint(1, 2))]
    used = {ex.tool for ex in exchanges if ex.kind == "tool"}
    schemas = [s for s in tool_schemas() if s["name"] in used or rng.random() < 0.5]
    rng.shuffle(schemas)
    system = rng.choice(OTHER_TOOL_SYSTEMS) if rng.random() < 0.8 else SYSTEM_PROMPTS["tool"]
    return Conversation("tool", schemas, exchanges, system)


def sample_clean_copy(rng: random.Random) -> Conversation:
    """Induction warm-up: repeat a few short items (single characters or short words/numbers)."""
    if rng.random() < 0.5:
        pool = LETTERS + LETTERS.upper() + "0123456789" + CJK[:40]
        text = " ".join(rng.choice(pool) for _ in range(rng.randint(2, 8)))
    else:
        items = [_word(rng, 2, 6).capitalize() if rng.random() < 0.5 else str(rng.randint(0, 10 ** rng.randint(1, 5)))
                 for _ in range(rng.randint(1, 3))]
        text = " ".join(items)
    return Conversation("copy", None, [Exchange([Message("user", text), Message("assistant", text)], "copy")])


def sample_copy_task(rng: random.Random) -> Conversation:
    """Warm-up: repeat a random string, so that copying (induction) forms before the dialog data."""
    parts = []
    for _ in range(rng.randint(1, 6)):
        roll = rng.random()
        if roll < 0.4:
            parts.append(_word(rng, 2, 10).capitalize() if rng.random() < 0.5 else _word(rng, 2, 10))
        elif roll < 0.7:
            parts.append(str(rng.randint(0, 10 ** rng.randint(1, 8))))
        elif roll < 0.85:
            parts.append("".join(rng.choice(CJK) for _ in range(rng.randint(1, 4))))
        else:
            parts.append(rng.choice(TIMEZONES) if rng.random() < 0.3 else expression(rng, "train"))
    text = " ".join(parts)
    return Conversation("copy", None, [Exchange([Message("user", text), Message("assistant", text)], "copy")])


# ---------------------------------------------------------------------------------------------------
# eval cases


@dataclass
class EvalCase:
    """A prompt (conversation so far) and what the next assistant turn must do."""

    mode: str
    tools: list[dict[str, Any]] | None
    messages: list[Message]
    expect: str  # "tool" (exact call), "code" (runs, prints code_output), "answer" (states key), "no_tool"
    tool: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    code_output: str = ""
    key: str = ""


def sample_eval_case(rng: random.Random, kind: str) -> EvalCase:
    """One held-out case of a kind: tool, code, answer or no_tool (optionally after earlier exchanges)."""
    split = "eval"
    if kind == "no_tool":
        conv = Conversation("chat", None, [ex_chat_toolish(rng, split)])
        return EvalCase("chat", None, conv.messages()[:-1], "no_tool")
    if kind == "tool":
        mode, makers = "tool", [m for m in TOOL_MAKERS if m[0] is not ex_time_error]
    elif kind == "code":
        mode, makers = "code", [(ex_arith, 0.4), (ex_stats, 0.35), (ex_string, 0.25)]
    else:
        mode = rng.choice(["tool", "code"])
        makers = ([m for m in TOOL_MAKERS if m[0] is not ex_time_error] if mode == "tool"
                  else [(ex_arith, 0.4), (ex_stats, 0.35), (ex_string, 0.25)])
    history = [exchange_for(rng, "train", mode, extended=False) for _ in range(rng.choice([0, 0, 0, 1]))]
    for _ in range(50):
        target = _weighted(rng, makers)(rng, split)
        if target.key and (kind != "code" or target.code_output):
            break
    conv = Conversation(mode, tool_schemas() if mode == "tool" else None, history + [target])
    msgs = conv.messages()
    if kind == "answer":
        return EvalCase(mode, conv.tools, msgs[:-1], "answer", target.tool, target.args, target.code_output, target.key)
    return EvalCase(mode, conv.tools, msgs[:-3], kind, target.tool, target.args, target.code_output, target.key)


# ---------------------------------------------------------------------------------------------------
# tokenizer corpus


def tokenizer_corpus(seed: int = 1234, n: int = 6000) -> list[str]:
    """Texts the tokenizer is trained on: every fixed prompt plus many generated conversations."""
    rng = random.Random(seed)
    texts = list(SYSTEM_PROMPTS.values()) + [json.dumps(tool_schemas(), ensure_ascii=False, separators=(",", ":"))]
    for _ in range(n):
        conv = sample_conversation(rng, "train")
        if conv.tools:
            texts.append(json.dumps(conv.tools, ensure_ascii=False, separators=(",", ":")))
        for msg in conv.messages():
            texts.append(msg.metadata + "\n" + msg.content)
    return texts


def tokenizer_check_texts(count: int = 60, seed: int = 7) -> list[str]:
    """Realistic message segments (the tools text, then each message's metadata line and content) from
    the generator's conversations: what `export-hf` checks its converted tokenizer against."""
    from ..dialects.chatglm3 import tools_text

    rng = random.Random(seed)
    texts = [tools_text(tool_schemas(), None)]
    for _ in range(count):
        for m in sample_conversation(rng).messages():
            texts.append(f"{m.metadata}\n{m.content}")
    return texts
