"""Training exchanges for the skills a newcomer asks about: open-vocabulary places, arithmetic in words,
statistics, string operations, charts and CSV questions, and out-of-skill requests (training split only).

The held-out eval keeps its own makers in data.py; the newcomer set (newcomer.jsonl) is never drawn from here.
"""

from __future__ import annotations

import json
import random
import re
import statistics
from functools import cache
from typing import Any

from ..messages import Message
from ..prompts import with_uploads
from . import data
from .data import Exchange, _code_exchange, _run, call_code, number

__all__ = ["CODE_MAKERS", "TOOL_MAKERS", "all_templates", "place"]

# ---------------------------------------------------------------------------------------------------
# entities

ACCENTED = "áàâäãåéèêëíìîïóòôöõøúùûüñçýÿæœß"
CONNECT = ["San ", "Santa ", "Saint-", "St. ", "Port ", "New ", "El ", "La ", "Los ", "Le ", "Bad ", "Fort ", "Mount ",
           "Lake ", "Upper ", "North ", "East ", "Ciudad ", "Puerto ", "Al ", "Ban ", "Nova "]
MIDDLE = [" de ", " del ", "-sur-", " am ", " upon ", " on ", "-la-", " da ", " do ", " y ", " an der "]
SUFFIX_ZH = ["", "", "", "", "市", "县", "镇", "区"]
NUM_WORDS = {0: "zero", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight",
             9: "nine", 10: "ten", 11: "eleven", 12: "twelve", 13: "thirteen", 14: "fourteen", 15: "fifteen",
             16: "sixteen", 17: "seventeen", 18: "eighteen", 19: "nineteen", 20: "twenty", 30: "thirty",
             40: "forty", 50: "fifty", 60: "sixty", 70: "seventy", 80: "eighty", 90: "ninety", 100: "a hundred"}
ZH_DIGITS = "零一二三四五六七八九十"


def word(rng: random.Random, split: str, lo: int = 3, hi: int = 9) -> str:
    """An entity word: a real one (data.REAL_WORD_SHARE of them) or a made-up one (data.word)."""
    if rng.random() < data.REAL_WORD_SHARE:
        return data._accept(rng, split, lambda r: data.real_word(r, lo, hi), data.is_heldout_name)
    return data.word(rng, split, lo, hi)


def _syllables(rng: random.Random, n: int) -> str:
    out = ""
    for _ in range(n):
        onset = rng.choice(["", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w",
                            "z", "th", "sh", "ch", "kr", "br", "st", "gr", "tr", "bl", "kj", "sk", "dz", "ts"])
        vowel = rng.choice(["a", "e", "i", "o", "u", "a", "e", "ou", "ai", "y", "ia", "ee"])
        if rng.random() < 0.18:
            vowel = rng.choice(ACCENTED[:22])
        coda = rng.choice(["", "", "", "n", "r", "l", "k", "s", "m", "t", "ng", "x", "v"])
        out += onset + vowel + coda
    return out


def _latin(rng: random.Random) -> str:
    if rng.random() < data.REAL_WORD_SHARE * 0.6:  # a real name or word, often one tokenizer piece
        w = data.real_word(rng, 3)
        return w[0].upper() + w[1:]
    if rng.random() < 0.35:  # fully random letters: nothing to memorise, only copying works
        pool = data.LETTERS * 3 + ACCENTED
        base = "".join(rng.choice(pool) for _ in range(rng.randint(3, 10)))
    else:
        base = _syllables(rng, rng.randint(1, 4))
    return base[0].upper() + base[1:] if rng.random() < 0.85 else base


def _zh_name(rng: random.Random) -> str:
    chars = []
    for _ in range(rng.choice([2, 2, 2, 3, 3, 4])):
        if rng.random() < 0.5:
            chars.append(rng.choice(data.CJK))
        else:  # any character of the common block: rare ones are byte-fallback tokens, copied byte by byte
            chars.append(chr(rng.randint(0x4E00, 0x9FA5)))
    return "".join(chars) + rng.choice(SUFFIX_ZH)


def _make_place(rng: random.Random, zh: bool) -> str:
    if zh:
        return _zh_name(rng) if rng.random() < 0.85 else _latin(rng)
    roll = rng.random()
    if roll < 0.35:
        return _latin(rng)
    if roll < 0.55:
        return _latin(rng) + " " + _latin(rng)
    if roll < 0.72:
        return rng.choice(CONNECT) + _latin(rng)
    if roll < 0.82:
        return _latin(rng) + rng.choice(MIDDLE) + _latin(rng)
    if roll < 0.9:
        return _latin(rng) + rng.choice(["'", "-", "-"]) + _latin(rng).capitalize()
    return _zh_name(rng)  # Chinese names asked in English


def place(rng: random.Random, split: str, zh: bool = False) -> str:
    return data._accept(rng, split, lambda r: _make_place(r, zh), data.is_heldout_name)


def _num_text(rng: random.Random, n: int, p_word: float = 0.25) -> str:
    if n in NUM_WORDS and rng.random() < p_word:
        return NUM_WORDS[n]
    return str(n)


def _small_or_big(rng: random.Random, split: str) -> int:
    if rng.random() < 0.3:
        return rng.choice(list(NUM_WORDS))
    return number(rng, split, rng.choice([2, 3, 4, 5]))


def _pick(rng: random.Random, forms: list[str], zh: bool) -> str:
    return data.phrasing.dress(rng, rng.choice(forms), zh)


def _compose(*parts: list[str]) -> list[str]:
    return data.phrasing._compose(*parts)


# ---------------------------------------------------------------------------------------------------
# tool mode: weather anywhere, time for a place, arithmetic in words, out-of-skill requests

W_EN = _compose(
    ["weather ", "Weather ", "whats the weather ", "how is it outside ", "tell me todays weather ",
     "i want to know the weather ", "current weather ", "temperature right now ", "how warm is it today ",
     "is it raining ", "will it be sunny ", "give me the forecast ", "check weather "],
    ["in ", "for ", "at ", "over in "], ["{c}"], ["", "?", " pls", " please", " thx", "??", " now", " today pls", " rn",
                                                   " these days", " this morning", " this week?", " at the moment"],
) + ["{c}?", "{c} weather", "weather: {c}", "how's {c} looking weather-wise?", "is {c} cold rn", "temp in {c}",
     "{c} temperature pls", "hows the weather {c}", "any rain in {c} today", "raining in {c}?",
     "I'm flying to {c} tonight, weather?", "what should I wear in {c} today?", "{c}: is it sunny?",
     "weather check {c}", "do i need a coat in {c}", "is the weather nice in {c}", "wether in {c}", "weahter {c}",
     "the weather in {c} please", "plz check {c} weather",
     # asked by the condition, with the place right after the verb
     "How cold is {c} today?", "How warm is {c} at the moment?", "Is {c} sunny?", "Is {c} rainy this week?",
     "Any sunshine in {c}?", "Is there snow in {c}?", "Is it foggy over in {c}?", "Is it humid in {c} tonight?",
     "Is it stormy in {c}?", "How windy is {c}?", "Is {c} warm enough for shorts?", "Is it chilly in {c} this evening?",
     "Will it be hot in {c}?", "Is the sun out in {c}?", "Is it cloudy in {c} now?", "Temperature of {c}, please.",
     "Is it nice out in {c}?", "What are the conditions like in {c} this afternoon?", "is it gonna rain over in {c}",
     "Chance of rain in {c} tomorrow?", "Will there be showers in {c} later?", "Should I take an umbrella in {c}?",
     # a request verb and filler before the place, which is not the place
     "looking for the {c} forecast", "want the {c} weather report", "get me the {c} weather, thanks", "show the {c} forecast pls",
     "pull up {c} weather", "checking the {c} weather, what's it doing?", "would love the {c} forecast", "requesting {c} weather"]
W_ZH = _compose(["", "请问", "帮忙", "麻烦查下", "我想知道"], ["{c}"], ["天气", "的天气如何", "天气好吗", "气温多少", "今天冷吗", "会下雨吗", "天气咋样"],
                ["", "？", "。", "呀", "啊？"]) + ["查{c}天气", "{c}今天啥天气", "明天去{c}，天气咋样", "{c}热不热"] + _compose(
    ["{c}"], ["", "今天", "现在", "晚上", "明早", "早上", "下午", "这几天", "周末"], ["气温高吗？", "有雨吗？", "会下雪吗？", "暖和吗？", "刮风吗？", "晴天吗？", "冷不冷",
                                                                             "气温低吗？"]) + _compose(
    ["{c}"], ["", "今天", "现在", "这两天"], ["是不是很冷", "是不是在下雨", "是不是很闷", "是不是降温了", "是不是晴天"], ["", "？", "啊"])
T_EN = _compose(
    ["time ", "Time ", "whats the time ", "what time is it ", "current time ", "local time ", "clock ", "tell me the time ",
     "what's the hour ", "hour right now "],
    ["in ", "for ", "at ", "over in "], ["{z}"], ["", "?", " pls", " now", " right now?", " please", "??"],
) + ["{z} time", "{z} time now?", "time {z}", "is it night in {z}?", "is it morning in {z} now?",
     "what day is it in {z} right now", "date in {z}?", "it's late here, what about {z}?", "whats the time over in {z}",
     "time difference? just tell me the time in {z}", "current local time {z}",
     "Is it morning yet in {z}?", "Is it late in {z}?", "Is it still today in {z}?", "What's the date over in {z}?",
     "Time check: {z}?", "Is it lunchtime in {z}?", "Are people in {z} asleep now?"]
T_ZH = _compose(["", "请问", "帮我看下", "想知道"], ["{z}"], ["几点了", "现在几点", "时间", "现在的时间", "是几点", "那边几点"],
                ["", "？", "。", "呀"]) + ["{z}那边现在是晚上吗？", "{z}几号了", "查下{z}时间", "{z}现在是白天吗？", "{z}那边天黑了吗？",
                                 "{z}是早上还是晚上？"]

OPS_EN = {
    "*": ["times", "multiplied by", "x", "*", "×"],
    "/": ["divided by", "over", "/", "÷"],
    "+": ["plus", "added to", "and", "+"],
    "-": ["minus", "take away", "less", "-"],
}
OPS_ZH = {"*": ["乘以", "乘", "×", "*"], "/": ["除以", "/", "÷"], "+": ["加", "加上", "+"], "-": ["减", "减去", "-"]}
CW_EN = _compose(["", "what is ", "whats ", "what's ", "calculate ", "compute ", "how much is ", "work out ", "calc ",
                  "pls calculate ", "quick: ", "can u do ", "tell me "],
                 ["{q}"], ["", "?", " please", " pls", " =", " = ?", "??", " for me"])
CW_ZH = _compose(["", "请", "帮我", "请帮我"], ["算", "算下", "计算", "算一算", "求"], ["", " ", "一下"], ["{q}"], ["", "。", "？", "等于多少", "是多少"]) + [
    "{q}等于几", "{q}=?", "{q} 是多少呀"]


def word_arith(rng: random.Random, split: str, zh: bool, pair: tuple[int, int] | None = None) -> tuple[str, str]:
    """(question text, Python/calculator expression) for arithmetic written in words or symbols; `pair` fixes
    the numbers and asks a two-number operation (a contrast conversation's asks)."""
    roll = 0.0 if pair else rng.random()
    a, b = pair or (_small_or_big(rng, split), _small_or_big(rng, split))
    if zh:
        if roll < 0.55:
            op = rng.choice("*/+-")
            if op == "/" and b == 0:
                b = 7
            return f"{a}{rng.choice(['', ' '])}{rng.choice(OPS_ZH[op])}{rng.choice(['', ' '])}{b}", f"{a} {op} {b}"
        if roll < 0.7:
            return f"{a}的平方", f"{a} ** 2"
        if roll < 0.74:
            return f"{a}的立方", f"{a} ** 3"
        if roll < 0.8:
            e = rng.randint(2, 12)
            return rng.choice([f"{a}的{e}次方", f"{a} 的 {e} 次方", f"{a}的{e}次幂"]), f"{a} ** {e}"
        if roll < 0.9:
            return rng.choice([f"{a}的平方根", f"根号{a}", f"{a}开根号"]), f"sqrt({a})"
        p = rng.randint(1, 99)
        return rng.choice([f"{a}的百分之{p}", f"{a}的{p}%"]), f"{a} * {p} / 100"
    ta, tb = _num_text(rng, a), _num_text(rng, b)
    if roll < 0.5:
        op = rng.choice("*/+-")
        if op == "/" and b == 0:
            b, tb = 4, _num_text(rng, 4)
        if op == "+" and rng.random() < 0.2:
            return f"the sum of {ta} and {tb}", f"{a} + {b}"
        if op == "*" and rng.random() < 0.2:
            return f"the product of {ta} and {tb}", f"{a} * {b}"
        if op == "-" and rng.random() < 0.2:
            return f"{tb} subtracted from {ta}", f"{a} - {b}"
        if rng.random() < 0.2:  # the verb first: "multiply 3 by 4"
            verb = {"*": f"multiply {ta} by {tb}", "/": f"divide {ta} by {tb}", "+": f"add {ta} and {tb}",
                    "-": f"subtract {tb} from {ta}"}[op]
            return verb, f"{a} {op} {b}"
        return f"{ta} {rng.choice(OPS_EN[op])} {tb}", f"{a} {op} {b}"
    if roll < 0.62:
        return rng.choice([f"{ta} squared", f"the square of {ta}", f"{ta} to the power of two"]), f"{a} ** 2"
    if roll < 0.68:
        return rng.choice([f"{ta} cubed", f"{ta} to the third power"]), f"{a} ** 3"
    if roll < 0.76:
        e = rng.randint(2, 12)
        return rng.choice([f"{ta} to the power of {_num_text(rng, e)}", f"{ta} raised to {e}", f"{ta}^{e}"]), f"{a} ** {e}"
    if roll < 0.88:
        return rng.choice([f"the square root of {ta}", f"square root of {ta}", f"sqrt of {ta}", f"root {ta}"]), f"sqrt({a})"
    p = rng.choice([5, 10, 12, 15, 18, 20, 25, 30, 40, 50, 75, rng.randint(1, 99)])
    return rng.choice([f"{p} percent of {ta}", f"{p}% of {ta}", f"{p} pct of {ta}"]), f"{a} * {p} / 100"


def ex_weather_any(rng: random.Random, split: str) -> Exchange:
    zh = rng.random() < 0.3
    c = place(rng, split, zh)
    q = _pick(rng, W_ZH if zh else W_EN, zh).format(c=c)
    if not zh and rng.random() < 0.15:
        q = q.lower() if rng.random() < 0.5 else q[0].upper() + q[1:]
    return data.ex_weather(rng, split, (c, q, zh))


@cache
def _known_places() -> list[str]:
    from tools.builtin import _zone_index

    names = sorted({place for zone, place in _zone_index().values() if "/" not in place and not (place.isascii() and place.isupper())})
    return names


def ex_time_place(rng: random.Random, split: str) -> Exchange:
    from tools.builtin import TimeZoneError, resolve_zone

    zh = rng.random() < 0.3
    roll = rng.random()
    if roll < 0.6:
        places = [p for p in _known_places() if (any("\u4e00" <= ch <= "\u9fff" for ch in p)) == zh]
        z = rng.choice(places)
    elif roll < 0.8:
        z = data.timezone(rng, "train")
    else:
        z = place(rng, split, zh)
    q = _pick(rng, T_ZH if zh else T_EN, zh).format(z=z)
    args = {"timezone": z}
    call = Message("assistant", call_code("current_time", args), "current_time")
    try:
        zone, where = resolve_zone(z)
    except TimeZoneError as exc:
        obs = f"Error: TimeZoneError: {exc}"
        answer = (f"我不认识“{z}”这个地方或时区。请换一个城市名，或用 IANA 时区名，例如 Asia/Shanghai。" if zh else
                  f"I don't know a place or time zone called {z}. Please give a city or an IANA name such as Europe/Paris.")
        return Exchange([Message("user", q), call, Message("observation", obs), Message("assistant", answer)],
                        "tool", "current_time", args, key=z)
    now, obs = data.random_time(rng, zone, where)
    hhmm, day, wd = now.strftime("%H:%M"), now.strftime("%Y-%m-%d"), now.strftime("%A")
    label = f"{where} ({zone})" if where else zone
    answer = (f"{z}现在是{day} {hhmm}（{wd}）。" if zh else
              rng.choice([f"It is {hhmm} on {wd}, {day} in {label}.", f"The local time in {label} is {hhmm} ({wd}, {day})."]))
    return Exchange([Message("user", q), call, Message("observation", obs), Message("assistant", answer)],
                    "tool", "current_time", args, key=hhmm)


def ex_calc_words(rng: random.Random, split: str) -> Exchange:
    zh = rng.random() < 0.3
    text, e = word_arith(rng, split, zh)
    q = _pick(rng, CW_ZH if zh else CW_EN, zh).format(q=text)
    if not zh and rng.random() < 0.5:
        q = q[0].upper() + q[1:]
    args = {"expression": e}
    call = Message("assistant", call_code("calculator", args), "calculator")
    obs = data._call("calculator", args)
    if obs.startswith("Error:"):
        answer = "无法计算：" + obs[len("Error: "):] + "。" if zh else f"The calculator could not evaluate {e}: {obs[len('Error: '):]}."
        key = ""
    else:
        answer = f"{text} = {obs}" if zh else rng.choice([f"{e} = {obs}", f"The result is {obs}.", f"{text} is {obs}."])
        key = obs
    return Exchange([Message("user", q), call, Message("observation", obs), Message("assistant", answer)],
                    "tool", "calculator", args, key=key)


OUT_EN = _compose(
    ["", "can you ", "please ", "could you ", "i want you to ", "hey, "],
    ["write a poem about {w}", "write an email to my boss about {w}", "translate '{w}' into Spanish",
     "book a flight to {c}", "book a table for two tonight", "send a text to {w}", "set an alarm for 7 am",
     "play some music", "tell me a story about {w}", "summarize this article for me", "find me a hotel in {c}",
     "what's the capital of {c}", "who is the president of {c}", "recommend a movie", "explain how {w} works",
     "convert {n} dollars to euros", "what's the stock price of {w}", "order a pizza", "search the web for {w}",
     "help me with my resume", "draw me a cat", "what's the population of {c}", "write a cover letter",
     "who painted the mona lisa", "how do i fix my wifi", "what's the news today", "debug my javascript code",
     "which team won the {n} final", "how do you say '{w}' in French", "{c}'s capital city", "explain how {w}s work",
     "recommend a good book", "find a cafe near me", "why is the sky blue", "tell me a joke", "what does {w} mean",
     "who wrote hamlet", "is coffee bad for you", "what year did {c} become independent", "write a haiku",
     "plan a trip to {c}", "what's the best phone to buy", "how do I learn guitar", "summarize the history of {c}",
     "give me a recipe for {w}", "how far is {c} from {w}", "remind me to call {w} tomorrow",
     # broader everyday requests (sport, money, messages, places to go, advice, big questions)
     "who won the {c} election", "what was the score in the {w} game", "who won the {n} olympics",
     "which club won the league in {n}", "what's the price of bitcoin", "how many yen is {n} pounds",
     "what's the euro rate today", "is now a good time to buy gold", "email {w} that i'm running late",
     "message my team about {w}", "post this on instagram", "call my mom", "text {w} happy birthday",
     "where should we eat tonight", "suggest a bar in {c}", "what should I cook for dinner",
     "find a dentist near me", "give me a workout plan", "how do I lose weight", "how do I sleep better",
     "what is the meaning of life", "do you have feelings", "are aliens real", "write a song about {w}",
     "write a speech for my sister's wedding", "make me a shopping list", "what's on tv tonight",
     "give me directions to {c}", "how long is the drive to {c}", "who invented the telephone",
     "when did the second world war end", "what language do they speak in {c}", "teach me {w}",
     "tell me a riddle", "what should I name my dog", "is {w} a good gift for my dad",
     "what's trending right now", "rate my outfit", "what happened in {c} yesterday"],
    ["", "?", ".", " pls", " please"])
OUT_ZH = _compose(["", "请", "帮我", "你能"], ["写一首关于{w}的诗", "翻译这句话", "订一张去{c}的机票", "推荐一部电影", "讲个故事", "写一封邮件",
                                           "{c}的首都是哪里", "查一下股票价格", "点个外卖", "定个早上七点的闹钟", "总结这篇文章",
                                           "美元兑人民币汇率是多少", "帮我写简历", "播放音乐",
                                           "谁赢得了{n}年的世界杯", "{w}用英语怎么说", "附近有什么好吃的", "讲个笑话",
                                           "天空为什么是蓝色的", "推荐一本书",
                                           "昨天的比赛谁赢了", "人民币兑日元的汇率是多少", "比特币现在多少钱",
                                           "给{w}发个消息", "推荐一家{c}的餐厅", "帮我订一间酒店", "今晚吃什么",
                                           "人生的意义是什么", "怎么减肥", "写一首关于{w}的歌", "帮我写一篇作文",
                                           "{c}有多少人口", "第二次世界大战是哪年结束的", "周末去哪里玩",
                                           "把这句话翻译成日语", "给我妈妈打个电话", "你有感情吗", "今天有什么新闻"],
                  ["", "吗？", "。", "？"])


def ex_out_of_skill(rng: random.Random, split: str) -> Exchange:
    zh = rng.random() < 0.3
    q = rng.choice(OUT_ZH if zh else OUT_EN).format(w=word(rng, split), c=place(rng, split), n=number(rng, split, 3))
    q = q[0].upper() + q[1:] if rng.random() < 0.5 else q
    a = rng.choice(data.FALLBACK_A_ZH if zh else data.FALLBACK_A_EN)
    return Exchange([Message("user", q), Message("assistant", a)], "chat", key="MODEL_PATH")


def ex_random_shared_digits(rng: random.Random, split: str) -> Exchange:
    """A random-number request whose seed and range bounds begin with the same digits (seed 38, range 381 to
    386204): only their places in the question tell them apart, so the model must copy by position."""
    stem = str(rng.randint(10, 99))
    while data.is_heldout_number(int(stem)):
        stem = str(rng.randint(10, 99))

    def grown(extra: int) -> int:
        return int(stem + "".join(str(rng.randint(0, 9)) for _ in range(extra)))

    extra = rng.randint(0, 2)
    a, b = grown(extra), grown(extra + rng.randint(1, 3))  # b has more digits: always the larger
    s = grown(rng.randint(0, 4))
    return data.random_exchange(rng, split, rng.random() < 0.5, s, a, b)


TOOL_MAKERS = [(ex_weather_any, 0.3), (ex_time_place, 0.2), (ex_calc_words, 0.3), (ex_out_of_skill, 0.2),
               (ex_random_shared_digits, 0.08)]

# ---------------------------------------------------------------------------------------------------
# code mode

STAT_OPS = [  # name, English words, Chinese words, expression (over `data`), answer label
    ("mean", ["mean", "average", "avg", "arithmetic mean", "mean value"], ["平均值", "平均数", "均值"], "statistics.mean(data)", "mean"),
    ("median", ["median", "middle value"], ["中位数"], "statistics.median(data)", "median"),
    ("mode", ["mode", "most common number", "most frequent value"], ["众数", "出现最多的数"], "statistics.mode(data)", "mode"),
    ("sum", ["sum", "total"], ["总和", "和", "合计"], "sum(data)", "sum"),
    ("max", ["max", "maximum", "largest number", "biggest number", "highest value"], ["最大值", "最大的数"], "max(data)", "maximum"),
    ("min", ["min", "minimum", "smallest number", "lowest value"], ["最小值", "最小的数"], "min(data)", "minimum"),
    ("range", ["range", "spread between max and min"], ["极差"], "max(data) - min(data)", "range"),
    ("stdev", ["standard deviation", "std", "std dev", "stdev"], ["标准差"], "statistics.stdev(data)", "standard deviation"),
    ("variance", ["variance", "var"], ["方差"], "statistics.variance(data)", "variance"),
    ("count", ["count", "number of values", "how many numbers"], ["个数", "数量"], "len(data)", "count"),
    ("sort", ["sorted order", "ascending order"], ["从小到大排序"], "sorted(data)", "sorted list"),
    ("sort_desc", ["descending order", "order from largest to smallest"], ["从大到小排序"], "sorted(data, reverse=True)", "sorted list"),
]
ST_EN = _compose(["", "find the ", "whats the ", "what's the ", "get the ", "calculate the ", "compute the ", "give me the ",
                  "tell me the ", "i need the "], ["{s} of ", "{s} for ", "{s}: "], ["{l}", "these numbers {l}", "the list {l}", "my data {l}"],
                 ["", "?", " pls", " please", "."])
ST_EN_VERB = {"sum": ["add up {l}", "total of {l}?", "sum up {l}", "add these together: {l}", "what do {l} add up to?",
                      "sum the values {l}", "{l} added up", "add {l} together", "total up {l} for me",
                      "what's {l} all added together", "grand total of {l}", "add all of {l}", "combine {l} into one total",
                      "what do these come to: {l}", "sum everything in {l}", "{l} - what's the total?"],
              "max": ["which is the largest: {l}", "biggest of {l}?", "pick the largest value from {l}", "the highest one in {l}?"],
              "min": ["which is the smallest: {l}", "lowest of {l}?", "pick the smallest value from {l}", "the lowest one in {l}?"],
              "count": ["how many numbers in {l}?", "count the values {l}", "how many values are there in {l}",
                        "how many items does {l} have", "count how many numbers: {l}", "{l} - how many numbers is that?"],
              "sort": ["sort {l}", "sort these: {l}", "put {l} in order", "order {l} ascending", "sort {l} smallest first",
                       "arrange {l} from low to high", "sort {l} from smallest to largest"],
              "sort_desc": ["sort {l} descending", "sort {l} from high to low", "reverse sort {l}", "sort {l} largest first",
                            "arrange {l} from biggest to smallest", "order {l} from the largest down", "rank {l} high to low"],
              "median": ["middle number of {l}", "median value of {l}?", "what's the median: {l}"],
              "mean": ["average {l}", "avg of {l} pls", "mean {l}", "average out {l}"],
              "mode": ["which value comes up the most in {l}", "most repeated number in {l}?", "what number appears most in {l}",
                       "the value that occurs most often: {l}", "which value repeats the most: {l}", "most frequent number in {l}?",
                       "the number seen most often in {l}", "{l} - which one occurs the most?", "find the most common value in {l}"],
              "range": ["how far apart are the biggest and smallest of {l}", "gap between the max and min of {l}?",
                        "difference between the highest and lowest in {l}"]}
ST_ZH = _compose(["", "请", "帮我", "求一下"], ["算", "求", "计算"], ["{l}的{s}", "这组数{l}的{s}", "数据{l}的{s}"], ["", "。", "？", "是多少"]) + [
    "{l}，{s}是多少", "{l} 求{s}"]
ST_ZH_VERB = {"sort": ["把{l}排序", "给{l}排个序", "把{l}从小到大排列", "{l}升序排列"], "sort_desc": ["把{l}从大到小排", "{l}降序排列"],
              "sum": ["{l}加起来等于多少", "把{l}加在一起", "{l}的和是多少"], "count": ["{l}一共几个数", "{l}里有多少个数"],
              "max": ["{l}里哪个最大", "{l}中最大的是哪个"], "min": ["{l}里哪个最小", "{l}中最小的是哪个"]}


def _listing(rng: random.Random, values: list[Any]) -> str:
    sep = rng.choice([", ", ", ", " ", ",", "，" if rng.random() < 0.2 else ", "])
    text = sep.join(map(str, values))
    roll = rng.random()
    if roll < 0.35:
        return "[" + ", ".join(map(str, values)) + "]"
    if roll < 0.5 and len(values) > 1:
        return ", ".join(map(str, values[:-1])) + " and " + str(values[-1])
    return text


def stat_values(rng: random.Random, split: str) -> list[Any]:
    values = [number(rng, split, rng.choice([1, 2, 2, 3])) for _ in range(rng.randint(3, 9))]
    if rng.random() < 0.15:
        values = [v if rng.random() < 0.7 else -v for v in values]
    return with_repeats(rng, values) if rng.random() < 0.2 else values


def with_repeats(rng: random.Random, values: list[Any]) -> list[Any]:
    """Values as measured data often are: some repeated, often in order (so copying must keep each repeat)."""
    values = values + [rng.choice(values) for _ in range(rng.randint(1, 3))]
    return sorted(values) if rng.random() < 0.6 else values


def with_mode(rng: random.Random, values: list[Any]) -> list[Any]:
    """The list with one most frequent value (a repeat of its first), so its mode is unambiguous."""
    values = list(values)
    values[rng.randrange(len(values))] = values[0]
    while statistics.multimode(values) != [statistics.mode(values)]:
        values.append(values[0])
    return values


def ex_stats_any(rng: random.Random, split: str, op: str | None = None, values: list[Any] | None = None,
                 zh: bool | None = None) -> Exchange:
    """A statistics question; op, values and zh fix the operation, the list and the language (contrast asks)."""
    zh = rng.random() < 0.25 if zh is None else zh
    name, en, cn, expr, label = rng.choice(STAT_OPS) if op is None else next(o for o in STAT_OPS if o[0] == op)
    values = stat_values(rng, split) if values is None else list(values)
    if name == "mode" and op is None:
        values = with_mode(rng, values)
    if op is None and rng.random() < 0.12 and name not in ("mode",):
        values = [round(v / 10, 1) for v in values]
    listing = _listing(rng, values)
    if zh:
        forms = ST_ZH_VERB.get(name, []) if rng.random() < 0.5 else []
        q = _pick(rng, forms or ST_ZH, True).format(s=rng.choice(cn), l=listing)
    else:
        forms = ST_EN_VERB.get(name, []) if rng.random() < 0.4 else []
        q = _pick(rng, forms or ST_EN, False).format(s=rng.choice(en), l=listing)
        q = q[0].upper() + q[1:] if rng.random() < 0.6 else q
    code = ("import statistics\n" if "statistics" in expr else "") + f"data = [{', '.join(map(str, values))}]\nprint({expr})"
    out = _run(code).strip()
    answer = f"{cn[0]}是 {out}。" if zh else rng.choice([f"The {label} is {out}.", f"{label[0].upper() + label[1:]}: {out}"])
    return _code_exchange(q, code, out, answer, out)


STR_OPS = {  # op: (English forms, Chinese forms, code template over {s}; "{c}"/"{r}" for extra arguments)
    "len": (["how long is {w}", "length of {w}", "how many characters in {w}", "count the characters of {w}", "len {w}",
             "number of letters in {w}?", "character count of {w}", "char count for {w}", "{w} is how many characters long?"],
            ["{w}有几个字符", "{w}的长度是多少", "数一下{w}有多少个字符", "{w}多长", "{w}的字符数", "{w} 长度", "求{w}的长度",
             "{w}有多少个字母"], "print(len({s}))"),
    "reverse": (["reverse {w}", "{w} backwards", "flip {w}", "write {w} in reverse", "reverse the text {w} pls"],
                ["把{w}倒过来", "反转{w}", "{w}倒序"], "print({s}[::-1])"),
    "upper": (["uppercase {w}", "{w} in capital letters", "make {w} upper case", "convert {w} to upper case", "caps {w}",
               "{w} to all caps", "{w} in all caps", "make {w} all uppercase", "write {w} in capitals", "shout {w} in uppercase"],
              ["把{w}变成大写", "{w}转大写", "{w}全部大写", "把{w}全部转成大写字母"], "print({s}.upper())"),
    "lower": (["lowercase {w}", "{w} in lower case", "make {w} lower case", "convert {w} to lowercase", "{w} to small letters",
               "make {w} all lower case", "{w} in all lowercase", "no capitals: {w}"],
              ["把{w}变成小写", "{w}转小写", "{w}全部小写", "把{w}全部转成小写字母"], "print({s}.lower())"),
    "title": (["title case {w}", "capitalize every word of {w}", "make {w} title case", "capitalise each word in {w}",
               "capitalize the first letter of each word in {w}", "format {w} like a headline", "{w} with capital initials",
               "{w} in title case", "give {w} a capital at the start of each word", "put {w} in title case",
               "turn {w} into title case", "capitalize each word: {w}", "{w} with every word capitalized"],
              ["把{w}每个单词首字母大写", "{w}每个词首字母大写", "把{w}转成标题格式", "{w}的每个单词首字母变大写"],
              "print({s}.title())"),
    "count": (["how many {c} in {w}", "count the letter {c} in {w}", "occurrences of {c} in {w}?", "number of {c}s in {w}",
               "how often does {c} occur in {w}", "tally the {c}s in {w}", "{c} count for {w}?", "how many times is {c} in {w}",
               "count the {cs} in {w}", "count {c} in {w}", "in {w}, count the {cs}", "how many {cs} does {w} have",
               "how many times does {c} appear in {w}"],
              ["{w}里有几个{c}", "数一下{w}中{c}出现几次"], "print({s}.count({cq}))"),
    "vowels": (["count the vowels in {w}", "how many vowels does {w} have", "number of vowels in {w}", "vowel count of {w}"],
               ["{w}有几个元音字母", "数一下{w}里的元音"], "print(sum(ch in \"aeiouAEIOU\" for ch in {s}))"),
    "replace": (["replace {c} with {r} in {w}", "in {w}, change every {c} to {r}", "swap {c} for {r} in {w}",
                 "substitute {r} for {c} in {w}", "change {c} to {r} in {w}", "{w}: swap every {c} for {r}",
                 "turn the {c}s in {w} into {r}", "in {w}, make every {c} a {r}", "{w} with each {c} replaced by {r}",
                 "swap all the {cs} in {w} for {r}", "{w}: make the {cs} into {r}", "in {w} turn the {cs} into {r}",
                 "put {r} wherever {w} has {c}"],
                ["把{w}里的{c}换成{r}", "将{w}中的{c}替换为{r}"], "print({s}.replace({cq}, {rq}))"),
    "split": (["split {w} into words", "break {w} into a list of words", "split {w} on spaces", "tokenize {w} by whitespace"],
              ["把{w}按空格分开", "把{w}拆成单词列表"], "print({s}.split())"),
    "words": (["how many words are in {w}", "word count of {w}", "count the words in {w}", "number of words in {w}?",
               "{w} - how many words?", "how many words does {w} contain", "tell me the number of words in {w}",
               "count words: {w}", "{w} has how many words?", "words in {w}, how many?", "number of words for {w}"],
              ["{w}有几个单词", "数一下{w}的单词数", "{w}一共几个词", "{w}的单词个数"], "print(len({s}.split()))"),
    "palindrome": (["is {w} a palindrome", "check if {w} is a palindrome", "palindrome check: {w}", "does {w} read the same backwards"],
                   ["{w}是回文吗", "判断{w}是不是回文"],
                   "s = {s}\nt = \"\".join(ch for ch in s.lower() if ch.isalnum())\nprint(t == t[::-1])"),
}
# string operations a small model confuses: the request's words are all that tell them apart
LOOKALIKE_STR_OPS = [["count", "len", "replace", "vowels"], ["title", "upper", "lower"]]
PALINDROMES = ["level", "racecar", "noon", "madam", "refer", "rotor", "civic", "kayak", "radar", "stats", "tenet", "wow"]


def _text(rng: random.Random, split: str, op: str) -> str:
    if op == "palindrome" and rng.random() < 0.5:
        if rng.random() < 0.5:
            return rng.choice(PALINDROMES)
        half = word(rng, split, 2, 5)
        return half + (rng.choice(data.LETTERS) if rng.random() < 0.5 else "") + half[::-1]
    n = rng.choice([1, 1, 2, 2, 3, 4]) if op not in ("split", "words", "title") else rng.randint(2, 6)
    words = [word(rng, split, 2, 8) for _ in range(n)]
    if rng.random() < 0.3:
        words[0] = words[0].capitalize()
    if rng.random() < 0.15:
        words = [w.upper() if rng.random() < 0.5 else w for w in words]
    return " ".join(words)


def _quote(rng: random.Random, text: str, zh: bool) -> str:
    if zh:
        return rng.choice(["'{}'", "\"{}\"", "“{}”", "「{}」", " {} "]).format(text).strip()
    return rng.choice(["'{}'", "'{}'", "\"{}\"", "\"{}\"", "“{}”", "{}"]).format(text)


def ex_string_any(rng: random.Random, split: str, op: str | None = None, text: str | None = None) -> Exchange:
    """A string question; op and text fix the operation and the string (a contrast conversation's asks)."""
    zh = rng.random() < 0.2
    op = op or rng.choice(list(STR_OPS))
    en, cn, tmpl = STR_OPS[op]
    w = _text(rng, split, op) if text is None else text
    c = rng.choice([ch for ch in w if ch != " "])
    r = rng.choice(data.LETTERS + "0123456789") if rng.random() < 0.7 else word(rng, split, 1, 3)
    if op == "replace" and " " in w and rng.random() < 0.4:  # a word for a word: "replace 'cat' with 'dog'"
        c, r = rng.choice(w.split()), word(rng, split, 2, 6)
    quoted = _quote(rng, w, zh)
    if " " in w and quoted == w:
        quoted = f"'{w}'"
    fields = {"w": quoted, "c": _quote(rng, c, zh) if rng.random() < 0.8 else c, "r": _quote(rng, r, zh),
              "cs": c + "'s" if len(c) == 1 and rng.random() < 0.6 else _quote(rng, c, zh)}
    q = _pick(rng, cn if zh else en, zh).format(**fields)
    if not zh and rng.random() < 0.55:
        q = q[0].upper() + q[1:]
    code = tmpl.format(s=json.dumps(w, ensure_ascii=False), cq=json.dumps(c), rq=json.dumps(r))
    out = _run(code).strip()
    if op == "palindrome":
        answer = (f"结果是 {out}：{'是' if out == 'True' else '不是'}回文。" if zh else
                  f"{out}: \"{w}\" {'is' if out == 'True' else 'is not'} a palindrome.")
    else:
        answer = f"结果是 {out}。" if zh else rng.choice([f"The result is {out}.", f"Result: {out}"])
    return _code_exchange(q, code, out, answer, out)


ARW_EN = _compose(["", "what is ", "whats ", "compute ", "calculate ", "python: ", "use python to work out ", "run ", "how much is "],
                  ["{q}"], ["", "?", " please", " in python", " with code", " pls"])
ARW_ZH = _compose(["", "请", "帮我", "用代码"], ["算", "计算", "求"], ["", " ", "一下"], ["{q}"], ["", "。", "等于多少", "是多少？"]) + [
    "{q}等于几", "{q}是多少", "{q}=?"]


def ex_arith_words(rng: random.Random, split: str, pair: tuple[int, int] | None = None, zh: bool | None = None) -> Exchange:
    """Arithmetic in words for the interpreter; `pair` and `zh` fix the numbers and the language (contrast asks)."""
    zh = rng.random() < 0.4 if zh is None else zh
    text, e = word_arith(rng, split, zh, pair)
    q = _pick(rng, ARW_ZH if zh else ARW_EN, zh).format(q=text)
    q = q[0].upper() + q[1:] if not zh and rng.random() < 0.5 else q
    e = e.replace("sqrt(", "math.sqrt(")
    return _printed(rng, q, ("import math\n" if "math." in e else "") + f"print({e})", zh, text)


def _printed(rng: random.Random, q: str, code: str, zh: bool, text: str = "") -> Exchange:
    """An arithmetic ask answered from what `code` prints (or the error it raises)."""
    out = _run(code).strip()
    if "Error" in out:
        answer = f"代码出错：{out}" if zh else f"The code failed with {out}."
        return _code_exchange(q, code, out, answer, out.split(":")[0], checkable=False)
    answer = f"结果是 {out}。" if zh else rng.choice([f"The result is {out}.", f"{text} = {out}"])
    return _code_exchange(q, code, out, answer, out)


# Chinese asks about a written-out expression ("3 - 5 * 2的值是多少？"): the "…的X是多少" shape is also how a
# statistic of a list is asked, so these teach that operators between the numbers mean arithmetic. Kept at
# least 3 characters from data.py's held-out Chinese arithmetic phrasing (phrasing.far_from).
EXPR_ZH = data.phrasing.far_from(
    ["{e}的值是多少？", "{e}的值是多少", "{e}的答案是什么？", "{e}的值等于多少？", "{e}算出来是多少？", "{e}得多少？",
     "请问{e}等于多少？", "{e}的计算结果", "{e}这个算式的结果是多少？", "算式{e}的值是多少？", "{e}的得数是几？",
     "{e}等于几呢？", "帮我用Python算{e}的值", "{e}的运算结果是？", "求{e}的值。", "用代码求{e}的结果", "{e}最后得多少？"],
    data.ARITH_Q_ZH[-1:], True)


def ex_expression_zh(rng: random.Random, split: str, e: str) -> Exchange:
    """A symbolic expression (data.expression's kind) asked in Chinese, answered as data.ex_arith answers."""
    return _printed(rng, _pick(rng, EXPR_ZH, True).format(e=e), f"print({e})", True)


def expression_numbers(e: str) -> list[Any]:
    """The numbers written in an expression, as ints or floats, in order."""
    return [float(n) if "." in n else int(n) for n in re.findall(r"\d+(?:\.\d+)?", e)]


# function plots: (how people say it, numpy expression, title label, default x range)
FUNCS = [
    (["x squared", "x^2", "x**2", "x²", "the square of x", "a parabola"], ["x的平方", "x²", "x^2", "抛物线 y=x^2"], "x**2", "x^2", (-10, 10)),
    (["x cubed", "x^3", "x³", "x to the third"], ["x的立方", "x^3"], "x**3", "x^3", (-10, 10)),
    (["sin(x)", "sine of x", "a sine wave", "sin x", "the sine function", "a sine curve"], ["正弦函数", "sin(x)", "正弦曲线"], "np.sin(x)", "sin(x)", (0, 10)),
    (["cos(x)", "cosine of x", "a cosine wave", "cos x", "the cosine curve"], ["余弦函数", "cos(x)"], "np.cos(x)", "cos(x)", (0, 10)),
    (["e^x", "e to the x", "exp(x)", "the exponential function", "e to the power of x"], ["e的x次方", "指数函数"], "np.exp(x)", "exp(x)", (-2, 3)),
    (["sqrt(x)", "the square root of x", "root x"], ["根号x", "x的平方根"], "np.sqrt(x)", "sqrt(x)", (0, 10)),
    (["log(x)", "ln x", "the natural log of x", "log of x"], ["对数函数 ln(x)", "ln(x)"], "np.log(x)", "log(x)", (1, 10)),
    (["tan(x)", "tangent of x"], ["正切函数"], "np.tan(x)", "tan(x)", (-1, 1)),
    (["1/x", "one over x"], ["x的倒数"], "1 / x", "1/x", (1, 10)),
    (["abs(x)", "the absolute value of x", "|x|"], ["x的绝对值"], "np.abs(x)", "|x|", (-10, 10)),
]
POSITIVE_X = ("np.log(x)", "1 / x", "np.sqrt(x)")  # FUNCS expressions plotted for x >= 1 only when a range is given
FP_EN = _compose(["plot ", "graph ", "draw ", "show me a graph of ", "make a plot of ", "sketch ", "can you plot ", "chart "],
                 ["{f}", "y = {f}", "y={f}", "f(x) = {f}"], ["{r}"], ["", " please", " pls", "."])
FP_ZH = _compose(["画", "画出", "画一下", "绘制", "帮我画"], ["{f}", "y = {f}", "函数 {f}"], ["{r}"], ["的图像", "的图", "的曲线", ""], ["", "。"])


def _linear(rng: random.Random) -> tuple[str, str, str]:
    m, b = rng.randint(1, 9), rng.randint(-9, 9)
    tail = f" + {b}" if b > 0 else f" - {-b}" if b < 0 else ""
    spoken = ("x" if m == 1 else rng.choice([f"{m}x", f"{m}*x", f"{m} x"])) + tail
    expr = ("x" if m == 1 else f"{m}*x") + tail
    return spoken, expr, expr


def ex_plot_function(rng: random.Random, split: str, func: tuple[Any, ...] | None = None,
                     span: tuple[int, int] | None = None, zh: bool | None = None) -> Exchange:
    """A function plot; `func` (a FUNCS row), `span` (an x range the user states) and `zh` fix those choices
    (contrast_exchanges asks several functions over the same range)."""
    zh = rng.random() < 0.25 if zh is None else zh
    if func is None and rng.random() < 0.2:
        spoken, expr, label = _linear(rng)
        lo, hi = -10, 10
    else:
        en, cn, expr, label, (lo, hi) = func or rng.choice(FUNCS)
        spoken = rng.choice(cn if zh else en)
    if span is None and rng.random() < 0.45:  # the user states a range
        start = rng.randint(lo, hi - 1) if lo >= 0 or expr == "np.sqrt(x)" else rng.randint(-10, 5)
        start = max(start, 1) if expr in POSITIVE_X else start
        span = (start, start + rng.randint(1, 20))
    a, b = span or (lo, hi)
    rtext = ""
    if span is not None:
        rtext = (rng.choice([f"，x 从 {a} 到 {b}", f" 在 {a} 到 {b} 之间", f"（{a} 到 {b}）"]) if zh else
                 rng.choice([f" from {a} to {b}", f" for x from {a} to {b}", f" between {a} and {b}", f" on [{a}, {b}]",
                             f" x={a}..{b}"]))
    q = _pick(rng, FP_ZH if zh else FP_EN, zh).format(f=spoken, r=rtext)
    q = q[0].upper() + q[1:] if not zh and rng.random() < 0.5 else q
    title = f"y = {label}"
    code = (f"import numpy as np\nimport matplotlib.pyplot as plt\nx = np.linspace({a}, {b}, 200)\n"
            f"plt.plot(x, {expr})\nplt.title(\"{title}\")\nplt.xlabel(\"x\")\nplt.ylabel(\"y\")\nplt.show()")
    obs = f"[image: plot_{rng.randint(1, 9)}.png 640x480]"
    answer = f"这是 {title} 在 {a} 到 {b} 之间的图像。" if zh else f"Here is the plot of {title} for x from {a} to {b}."
    return _code_exchange(q, code, obs, answer, label, checkable=False)


LABEL_WORDS = ["apples", "pears", "plums", "Mon", "Tue", "Wed", "Thu", "Fri", "Jan", "Feb", "Mar", "Apr", "red", "blue",
               "green", "cats", "dogs", "north", "south", "east", "west", "tea", "coffee", "Q1", "Q2", "Q3", "Q4"]


def _labels(rng: random.Random, split: str, n: int, zh: bool = False) -> list[str]:
    """n different chart labels: English words (some common, some made up), or with `zh` made-up Chinese
    category names of 1-3 common characters (as "苹果", "周一" label a chart)."""
    out: list[str] = []
    while len(out) < n:
        if zh:
            w = "".join(rng.choice(data.CJK) for _ in range(rng.choice([1, 2, 2, 2, 3])))
        else:
            w = rng.choice(LABEL_WORDS) if rng.random() < 0.3 else word(rng, split, 2, 8)
            if rng.random() < 0.3:
                w = w.capitalize()
        if w not in out:
            out.append(w)
    return out


def _title_opts(rng: random.Random, split: str, zh: bool) -> tuple[str, str]:
    """(phrase the user adds, title) — a user-given title or ''."""
    if rng.random() < 0.35:
        t = " ".join(word(rng, split, 3, 8) for _ in range(rng.randint(1, 3)))
        t = t[0].upper() + t[1:]
        phrase = (rng.choice([f"，标题是“{t}”", f"，标题为{t}"]) if zh else
                  rng.choice([f" titled '{t}'", f" with the title \"{t}\"", f", title: {t}", f" and call it '{t}'"]))
        return phrase, t
    return "", ""


CH_EN = {
    "bar": ["bar chart of {d}", "bar graph of {d}", "bar plot: {d}", "bars for {d}", "a bar chart showing {d}"],
    "pie": ["pie chart of {d}", "pie chart: {d}", "pie of {d}", "a pie chart with {d}"],
    "line": ["line plot of the points {d}", "line chart of {d}", "plot the points {d}", "connect the points {d}",
             "line graph through {d}"],
    "scatter": ["scatter plot of {d}", "scatter the points {d}", "scatter chart of {d}", "dot plot of the points {d}"],
    "hist": ["histogram of {d}", "a histogram for {d}", "distribution histogram of {d}", "hist of {d}"],
}
CH_ZH = {"bar": ["画{d}的柱状图", "柱状图：{d}", "用条形图显示{d}", "帮我做个柱状图，数据是{d}", "条形图 {d}"],
         "pie": ["画{d}的饼图", "饼图：{d}", "做一个饼图，{d}"],
         "line": ["画出点{d}的折线图", "折线图：{d}"], "scatter": ["画点{d}的散点图", "散点图：{d}"],
         "hist": ["画{d}的直方图", "直方图：{d}"]}
CH_VERB_EN = ["", "make a ", "draw a ", "create a ", "plot a ", "can you make a ", "i want a ", "show a ", "please draw a "]
DEFAULT_TITLES = {"bar": "Bar chart", "pie": "Pie chart", "line": "Line plot", "scatter": "Scatter plot", "hist": "Histogram"}


def ex_chart(rng: random.Random, split: str) -> Exchange:
    zh = rng.random() < 0.2
    kind = rng.choice(["bar", "bar", "pie", "line", "scatter", "hist"])
    tphrase, title = _title_opts(rng, split, zh)
    title = title or DEFAULT_TITLES[kind]
    n = rng.randint(2, 6)
    lines = ["import matplotlib.pyplot as plt"]
    if kind in ("bar", "pie"):
        labels = _labels(rng, split, n, zh and rng.random() < 0.6)
        values = [number(rng, split, rng.choice([1, 2, 2, 3])) for _ in range(n)]
        sep = rng.choice([" ", ": ", "=", " - "] + (["：", ""] if zh else []))
        items = [f"{lab}{sep}{v}" for lab, v in zip(labels, values)]
        d = (rng.choice(["，", "、", ", "]) if zh else ", " if rng.random() < 0.7 else " and " if n == 2 else "; ").join(items)
        if rng.random() < 0.3 and n > 2:
            d = ("，".join(items[:-1]) + "和" + items[-1]) if zh else ", ".join(items[:-1]) + " and " + items[-1]
        lines += [f"labels = {json.dumps(labels, ensure_ascii=False)}", f"values = [{', '.join(map(str, values))}]"]
        lines.append("plt.bar(labels, values)" if kind == "bar" else "plt.pie(values, labels=labels, autopct=\"%1.1f%%\")")
        key = labels[0]
    elif kind in ("line", "scatter"):
        xs = sorted(rng.sample(range(0, 30), n)) if rng.random() < 0.7 else list(range(1, n + 1))
        ys = [number(rng, split, rng.choice([1, 2])) for _ in range(n)]
        style = rng.random()
        if style < 0.6:
            d = ", ".join(f"({x}, {y})" if rng.random() < 0.8 else f"({x},{y})" for x, y in zip(xs, ys))
        else:
            d = (f"x = {_listing(rng, xs)} and y = {_listing(rng, ys)}" if not zh else f"x={xs}，y={ys}")
        lines += [f"x = [{', '.join(map(str, xs))}]", f"y = [{', '.join(map(str, ys))}]"]
        lines.append("plt.plot(x, y, marker=\"o\")" if kind == "line" else "plt.scatter(x, y)")
        key = title
    else:
        values = [number(rng, split, rng.choice([1, 2])) for _ in range(rng.randint(6, 14))]
        values = with_repeats(rng, values) if rng.random() < 0.5 else values
        d = _listing(rng, values)
        lines += [f"data = [{', '.join(map(str, values))}]", "plt.hist(data, bins=\"auto\")"]
        key = title
    lines.append(f"plt.title({json.dumps(title, ensure_ascii=False)})")
    if kind in ("line", "scatter"):
        lines += ["plt.xlabel(\"x\")", "plt.ylabel(\"y\")"]
    elif kind == "hist":
        lines += ["plt.xlabel(\"value\")", "plt.ylabel(\"count\")"]
    lines.append("plt.show()")
    if zh:
        q = _pick(rng, CH_ZH[kind], True).format(d=d) + tphrase
    else:
        q = rng.choice(CH_VERB_EN) + rng.choice(CH_EN[kind]).format(d=d) + tphrase
        q = data.phrasing.dress(rng, q[0].upper() + q[1:] if rng.random() < 0.6 else q, False)
    code = "\n".join(lines)
    obs = f"[image: plot_{rng.randint(1, 9)}.png 640x480]"
    answer = f"这是{title}。" if zh else rng.choice([f"Here is the {kind} chart: \"{title}\".", f"Done: \"{title}\" is shown above."])
    return _code_exchange(q, code, obs, answer, key, checkable=False)


CSV_FORMS_EN = {
    "rows": ["how many rows are in {f}", "row count of {f}?", "{f}: number of rows", "how many records does {f} have",
             "how many lines of data in {f}", "how many entries are in {f}", "count the rows in {f}",
             "number of records in {f}?", "{f} - how many rows?", "what's the row count for {f}"],
    "cols": ["what columns does {f} have", "list the columns of {f}", "column names in {f}?", "which fields are in {f}"],
    "mean": ["mean of the {col} column in {f}", "average {col} in {f}?", "what's the average {col} in {f}",
             "in {f}, what is the mean {col}"],
    "max": ["highest {col} in {f}?", "max of {col} in {f}", "what is the largest {col} in {f}"],
    "sum": ["total {col} in {f}", "sum of the {col} column of {f}", "add up {col} in {f}"],
    "plot": ["plot the {col} column of {f}", "chart {col} from {f}", "graph {col} in {f}", "draw {col} from {f} as a line"],
    "hist": ["histogram of {col} in {f}", "show the distribution of {col} from {f}"],
    "preview": ["show me the top of {f}", "preview {f}", "what's inside {f}", "give me a quick look at {f}",
                "print the head of {f}", "first few lines of {f}", "take a look at {f}"],
}
CSV_FORMS_ZH = {"rows": ["{f}有多少行", "{f}一共几行数据", "{f}总共有几行？", "{f}一共有多少条记录", "{f}里有几条数据",
                         "数一下{f}有多少行", "{f}有几行", "{f}的行数是多少", "{f}共有多少行数据？", "{f}里面有多少行呀",
                         "告诉我{f}的行数"], "cols": ["{f}有哪些列", "列出{f}的列名"],
                "mean": ["{f}里{col}列的平均值", "求{f}中{col}的平均数"], "max": ["{f}里{col}的最大值"],
                "sum": ["{f}中{col}的总和"], "plot": ["画出{f}的{col}列", "把{f}的{col}画成折线图"],
                "hist": ["画{f}中{col}的直方图"], "preview": ["看看{f}的前几行", "预览一下{f}", "{f}里都有什么"]}
UPLOAD_NOTE_SHARE = 0.3
CSV_OPENERS = ["", "", "i uploaded {f}. ", "I just uploaded a file. ", "using the file I uploaded, ", "file: {f}. "]


def _column(rng: random.Random, split: str, col: str, n: int) -> list[Any]:
    """n values of a made-up table's column, typed by its name (made-up names get numbers)."""
    if col == "date":
        return [f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}" for _ in range(n)]
    if col in ("city", "name", "region", "product"):
        return [word(rng, split, 3, 8).capitalize() for _ in range(n)]
    if col in ("price", "amount", "total") or rng.random() < 0.3:
        digits = rng.choice([1, 2])
        return [round(rng.uniform(0, 999), digits) for _ in range(n)]
    top = 99 if col in ("age", "score") else 9999
    return [rng.randint(0, top) for _ in range(n)]


def preview_table(rng: random.Random, split: str, cols: list[str], rows: int) -> tuple[list[tuple[Any, ...]], str]:
    """The first rows of a made-up table and what `print(df.shape); print(df.head())` shows for it: the
    real pandas output, as the sandbox returns it (an earlier generator's own layout did not match it, and
    the model's answers after a real preview were garbled)."""
    import pandas as pd  # only the training generator needs it, so it is imported here

    head = list(zip(*(_column(rng, split, col, min(rows, 5)) for col in cols)))
    return head, f"({rows}, {len(cols)})\n{pd.DataFrame(head, columns=cols)}"


def csv_table(rng: random.Random, split: str) -> tuple[str, list[str]]:
    """A made-up uploaded file's name and 2-5 columns, drawn from the usual names plus a few made-up words;
    in three tables of four half the pool is made-up words (some with a unit suffix: "_kg", "_usd"), so that only
    the question tells the model which column it is asked about."""
    fname = word(rng, split, 3, 9) + rng.choice([".csv", ".csv", "_data.csv", "2024.csv", "-export.csv", "_v2.csv"])
    pool = data.CSV_COLUMNS + [word(rng, split, 3, 7) for _ in range(3)]
    if rng.random() < 0.75:
        pool = pool[:len(data.CSV_COLUMNS) // 2] + [word(rng, split, 3, 8) + rng.choice(["", "_c", "_kg", "_usd", "_id"])
                                                    for _ in range(len(data.CSV_COLUMNS) // 2)]
    return fname, rng.sample(pool, rng.randint(2, 5))


def ex_csv_any(rng: random.Random, split: str, table: tuple[str, list[str]] | None = None, op: str | None = None,
               col: str | None = None, zh: bool | None = None) -> Exchange:
    """A question about an uploaded CSV; `table` (csv_table), `op`, `col` and `zh` fix those choices
    (contrast_exchanges asks several of the same file, which is then never missing)."""
    zh = rng.random() < 0.2 if zh is None else zh
    fname, cols = table or csv_table(rng, split)
    unusual = [c for c in cols if c not in data.CSV_COLUMNS]
    col = col or (rng.choice(unusual) if unusual and rng.random() < 0.6 else rng.choice(cols))  # names seen only here
    op = op or rng.choice(list(CSV_FORMS_EN))
    forms = CSV_FORMS_ZH[op] if zh else CSV_FORMS_EN[op]
    q = rng.choice(forms).format(f=fname, col=col)
    if not zh:
        q = rng.choice(CSV_OPENERS).format(f=fname) + q + rng.choice(["", "?", " please"])
        q = data.phrasing.dress(rng, q if q.startswith(fname) else q[0].upper() + q[1:], False)  # a name keeps its case
    missing = table is None and op in ("rows", "cols") and rng.random() < 0.15  # the user forgot to upload it
    if not missing and rng.random() < UPLOAD_NOTE_SHARE:
        q = with_uploads(q, [fname])  # as the Code page asks right after an upload
    head = f"import pandas as pd\ndf = pd.read_csv(\"{fname}\")\n"
    rows = rng.randint(2, 12) if rng.random() < 0.35 else rng.randint(3, 5000)  # uploaded samples are often tiny
    if missing:
        code = head + ("print(len(df))" if op == "rows" else "print(list(df.columns))")
        obs = f"FileNotFoundError: [Errno 2] No such file or directory: '{fname}'"
        answer = f"找不到文件 {fname}，请先上传它。" if zh else f"The file {fname} was not found. Please upload it first, then ask again."
        return _code_exchange(q, code, obs, answer, fname, checkable=False)
    if op == "rows":
        code, obs = head + "print(len(df))", str(rows)
        answer = f"{fname} 有 {rows} 行。" if zh else f"{fname} has {rows} rows."
        key = obs
    elif op == "cols":
        code, obs = head + "print(list(df.columns))", str(cols)
        answer = f"{fname} 的列：{', '.join(cols)}。" if zh else f"{fname} has {len(cols)} columns: {', '.join(cols)}."
        key = cols[0]
    elif op in ("mean", "max", "sum"):
        code = head + f"print(df[\"{col}\"].{op}())"
        value = round(rng.uniform(0, 5000), rng.choice([0, 1, 2, 4])) if op == "mean" else rng.randint(0, 99999)
        obs = str(float(value)) if op == "mean" else str(value)
        label = {"mean": ("mean", "平均值"), "max": ("maximum", "最大值"), "sum": ("sum", "总和")}[op]
        answer = f"{col} 的{label[1]}是 {obs}。" if zh else f"The {label[0]} of {col} in {fname} is {obs}."
        key = obs
    elif op == "preview":
        code = head + "print(df.shape)\nprint(df.head())"
        obs = preview_table(rng, split, cols, rows)[1]
        answer, key = data.preview_answer(fname, rows, cols, zh), str(rows)
    else:
        plot = f"df[\"{col}\"].plot()" if op == "plot" else f"df[\"{col}\"].plot(kind=\"hist\")"
        code = (f"import pandas as pd\nimport matplotlib.pyplot as plt\ndf = pd.read_csv(\"{fname}\")\n{plot}\n"
                f"plt.title(\"{col}\")\nplt.show()")
        obs = f"[image: plot_{rng.randint(1, 9)}.png 640x480]"
        answer = f"这是 {fname} 中 {col} 列的图。" if zh else f"Here is the {col} column of {fname}."
        key = col
    return _code_exchange(q, code, obs, answer, key, checkable=False)


CODE_MAKERS = [(ex_stats_any, 0.2), (ex_string_any, 0.24), (ex_arith_words, 0.16), (ex_plot_function, 0.11),
               (ex_chart, 0.18), (ex_csv_any, 0.17), (ex_out_of_skill, 0.18)]


def contrast_exchanges(rng: random.Random, split: str) -> list[Exchange]:
    """2-4 asks about the same data, each with another operation: a list or a string (another statistic or
    string operation), two numbers (1-3 arithmetic asks in words, an operator may come twice, then a
    statistic of the two), a Chinese written-out expression (its value, and statistics of its numbers),
    an x range (another function to plot) or an uploaded CSV (another question, or another column): only
    the request's words tell the answers apart, so the model must read them (not guess the op from the
    data's look)."""
    k = rng.randint(2, 4)
    roll = rng.random()
    if roll < 0.33:
        ops = rng.sample([o[0] for o in STAT_OPS], k)
        values = stat_values(rng, split)
        if "mode" in ops:
            values = with_mode(rng, values)
        return [ex_stats_any(rng, split, op, values) for op in ops]
    if roll < 0.44:  # the same two numbers: arithmetic ("3600 除以 24") or a statistic of them
        zh = rng.random() < 0.5
        pair = (_small_or_big(rng, split), _small_or_big(rng, split))
        asks = [ex_arith_words(rng, split, pair, zh) for _ in range(k - 1)]
        return asks + [ex_stats_any(rng, split, rng.choice(["sum", "mean", "max", "min"]), list(pair), zh)]
    if roll < 0.52:  # a written-out expression in Chinese, and statistics of its numbers, in either order
        e = data.expression(rng, split)
        while "sqrt" in e or len(expression_numbers(e)) < 2:
            e = data.expression(rng, split)
        values = expression_numbers(e)
        asks = [ex_stats_any(rng, split, op, values, True) for op in rng.sample(["sum", "mean", "max", "min", "median"], k - 1)]
        asks.insert(rng.randrange(k), ex_expression_zh(rng, split, e))
        return asks
    if roll < 0.7:
        text = _text(rng, split, "words")
        pool = [o for o in STR_OPS if o != "palindrome"]
        if rng.random() < 0.5:  # look-alike asks side by side (count a letter / length / replace it; title / upper / lower)
            pool = rng.choice(LOOKALIKE_STR_OPS)
        ops = rng.sample(pool, min(k, len(pool)))
        return [ex_string_any(rng, split, op, text) for op in ops]
    zh = rng.random() < 0.2
    if roll < 0.82:  # several functions over the same stated range
        a = rng.randint(1, 5) if rng.random() < 0.5 else rng.randint(-10, -1)
        span = (a, a + rng.randint(2, 20))
        funcs = [f for f in FUNCS if span[0] >= 1 or f[2] not in POSITIVE_X]
        return [ex_plot_function(rng, split, f, span, zh) for f in rng.sample(funcs, k)]
    table = csv_table(rng, split)  # one uploaded file: other operations, or one operation on other columns
    if rng.random() < 0.5 or len(table[1]) < k:
        return [ex_csv_any(rng, split, table, op, zh=zh) for op in rng.sample(list(CSV_FORMS_EN), k)]
    op = rng.choice(["mean", "max", "sum", "plot", "hist"])
    return [ex_csv_any(rng, split, table, op, col, zh) for col in rng.sample(table[1], k)]


def all_templates() -> list[str]:
    """Every phrasing form the generator can ask with (data.py's, phrasing.py's and this module's)."""
    from . import phrasing

    out: list[str] = []
    for lst in (data.WEATHER_Q_EN, data.WEATHER_Q_ZH, data.TIME_Q_EN, data.TIME_Q_ZH, data.TIME_Q_NOZONE_EN,
                data.TIME_Q_NOZONE_ZH, data.CALC_Q_EN, data.CALC_Q_ZH, data.RAND_Q_EN, data.RAND_Q_ZH, data.ARITH_Q_EN,
                data.ARITH_Q_ZH, data.STATS_Q_EN, data.STATS_Q_ZH, data.PLOT_Q_EN, data.PLOT_Q_ZH, data.CSV_Q_EN,
                data.CSV_Q_ZH, data.FALLBACK_Q_EN, data.FALLBACK_Q_ZH, data.GREET_EN, data.GREET_ZH, data.WHO_EN,
                data.WHO_ZH, data.CAN_EN, data.CAN_ZH, data.THANKS_EN, data.THANKS_ZH, list(data.STR_Q_HELDOUT.values()),
                [o[1] for o in data.STR_OPS], [o[2] for o in data.STR_OPS],
                phrasing.WEATHER_EN, phrasing.WEATHER_ZH, phrasing.TIME_EN, phrasing.TIME_ZH, phrasing.CALC_EN,
                phrasing.CALC_ZH, phrasing.RAND_EN, phrasing.RAND_ZH, phrasing.ARITH_EN, phrasing.ARITH_ZH,
                phrasing.STATS_EN, phrasing.STATS_ZH, W_EN, W_ZH, T_EN, T_ZH, CW_EN, CW_ZH, OUT_EN, OUT_ZH, ST_EN, ST_ZH,
                ARW_EN, ARW_ZH, FP_EN, FP_ZH):
            out += lst
    for forms in phrasing.STRING_EN.values():
        out += forms
    for forms in list(ST_EN_VERB.values()) + list(ST_ZH_VERB.values()):
        out += forms
    for en, cn, _ in STR_OPS.values():
        out += en + cn
    for kind in CH_EN:
        out += [v + f for v in CH_VERB_EN for f in CH_EN[kind]] + CH_ZH[kind]
    for forms in list(CSV_FORMS_EN.values()) + list(CSV_FORMS_ZH.values()):
        out += [o + f for o in CSV_OPENERS for f in forms] if forms in CSV_FORMS_EN.values() else forms
    return out
