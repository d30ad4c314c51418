"""Training-only phrasings: many composed question forms and light conversational noise.

The held-out eval asks with phrasings the model never saw, so training must teach it to find the entity
(city, zone, expression, numbers, list, word) wherever it sits in a sentence, not at one template's
position. Each family below is composed from parts; `data.py` keeps only the forms that are not near
copies of a held-out phrasing (`far_from`: at least 2 words apart in English, 3 characters in Chinese)
and passes them to `pick` as extra training forms.
"""

from __future__ import annotations

import random
from itertools import product

__all__ = ["ARITH_EN", "ARITH_ZH", "CALC_EN", "CALC_ZH", "RAND_EN", "RAND_ZH", "STATS_EN", "STATS_ZH", "STRING_EN",
           "TIME_EN", "TIME_ZH", "WEATHER_EN", "WEATHER_ZH", "dress", "far_from"]


def _compose(*parts: list[str]) -> list[str]:
    return ["".join(p) for p in product(*parts)]


_TAILS_EN = ["?", "", ".", " please.", " now?", " today?", " right now?", " for me.", ", please?"]

WEATHER_EN = _compose(
    ["What's the weather", "What is the weather", "How's the weather", "Tell me the weather", "Show me the weather",
     "Check the weather", "Look up the weather", "Find the weather", "Give me the weather", "Weather forecast",
     "What's the forecast", "What's the temperature", "How warm is it", "How cold is it", "Is it sunny",
     "Is it windy", "Will it rain", "Is it snowing", "Current conditions", "Weather update", "I need the weather",
     "Please check the weather", "Any rain", "How humid is it", "Forecast", "Weather conditions", "Any snow"],
    [" in ", " for ", " at "], ["{c}"], _TAILS_EN,
) + ["{c} weather?", "{c}: weather, please.", "Weather for {c}, please.", "{c} forecast?", "Temperature in {c}?",
     "Is {c} hot today?", "Is it cold in {c} now?", "I'm visiting {c} tomorrow. How's the weather?",
     "My friend lives in {c}. Is it raining there?", "{c} - what is the weather like?",
     "Should I bring an umbrella to {c}?", "Should I take a jacket in {c}?", "Will I need sunglasses in {c} today?",
     "Is it a good day for a walk in {c}?", "I'd like a weather report: {c}.", "{c} weather report, please.",
     "Is it freezing in {c}?", "How many degrees is it in {c}?"]
WEATHER_ZH = _compose(["", "请", "帮我", "麻烦"], ["查一下", "看看", "告诉我", "查询"], ["{c}"],
                      ["的天气", "的气温", "现在的天气", "今天的天气", "的温度"], ["。", "", "？"]) + _compose(
    ["{c}"], ["的天气", "今天", "现在", "这几天", "天气"], ["怎么样？", "如何？", "冷不冷？", "热吗？", "下雨吗？"])

TIME_EN = _compose(
    ["What time is it", "What's the time", "Tell me the time", "Current time", "Local time", "Show the time",
     "Time", "What is the date and time", "What day is it", "Check the clock", "What's the date",
     "What hour is it", "Do you know the time"],
    [" in ", " for ", " at "], ["{z}"], _TAILS_EN,
) + ["{z} time?", "{z}: current time, please.", "Time zone {z}: what time is it?", "Clock in {z}?",
     "I'm calling someone in {z}. What time is it there?"]
TIME_ZH = _compose(["", "请", "帮我"], ["查一下", "看看", "告诉我"], ["{z}"], ["的时间", "现在几点", "的当前时间", "的日期"],
                   ["。", "", "？"]) + ["{z}现在几点了？", "{z}那边几点了？", "{z}时间？", "{z}现在是几号？"]

CALC_EN = _compose(
    ["What is ", "What's ", "Calculate ", "Compute ", "Evaluate ", "Work out ", "Solve ", "Find ", "Tell me ",
     "Figure out ", "Please calculate ", "Can you calculate ", "Could you compute ", "Quick math: ", "Math: ",
     "Help me compute ", "I need the value of ", "Give me the result of "],
    ["{e}"], ["?", ".", "", " please.", " for me.", " quickly.", " using the calculator.", " exactly?"],
) + ["{e} = ?", "{e}=?", "Result of {e}?", "What do you get for {e}?", "{e} gives what?", "Calculator: {e}",
     "How much is {e} exactly?", "I want to know {e}.", "What does {e} come to?", "What's {e} equal to?",
     "{e} equals?", "Tell me what {e} makes."]
CALC_ZH = _compose(["", "请", "帮我", "麻烦"], ["算一下", "计算一下", "求", "算算"], ["", " "], ["{e}"], ["", "。", "的值", "的结果"]) + [
    "{e} = ?", "{e}等于几？", "{e} 的结果？", "计算：{e}", "{e}等于什么？"]

_RAND_RANGE = ["between {a} and {b}", "from {a} to {b}", "in the range {a} to {b}", "in [{a}, {b}]",
               "from {a} up to {b}", "in the interval {a} to {b}"]
_RAND_SEED = ["with seed {s}", "using seed {s}", "seed {s}", "seed={s}", "with random seed {s}", "and seed {s}"]
_RAND_VERB = ["Give me a random number", "Generate a random number", "Pick a number", "Draw a random integer",
              "Roll a random number", "I want a random number", "Choose a random integer", "Random integer",
              "Get me a random number", "Make a random number"]
RAND_EN = (_compose(_RAND_VERB, [" "], _RAND_RANGE, [", ", " "], _RAND_SEED, [".", "", "?", " please."])
           + _compose(["Using seed {s}, ", "Seed {s}: ", "With random seed {s}, ", "Seed is {s}. ", "Take seed {s} and "],
                      [v[0].lower() + v[1:] for v in _RAND_VERB], [" "], _RAND_RANGE, [".", "", "?"]))
RAND_ZH = _compose(["", "请"], ["用种子{s}", "以{s}为种子", "种子是{s}，", "种子{s}，"], ["生成", "给我", "随机选"],
                   ["一个{a}到{b}之间的随机数", "{a}到{b}的随机整数", "一个在{a}和{b}之间的整数"], ["。", ""]) + _compose(
    ["在{a}和{b}之间生成随机数", "从{a}到{b}里随机挑一个数", "随机生成{a}到{b}的整数", "{a}到{b}之间随机一个数"],
    ["，种子{s}", "，种子为{s}", "，种子是{s}", "（种子{s}）"], ["。", ""])

ARITH_EN = _compose(
    ["What is ", "Compute ", "Calculate ", "Evaluate ", "Work out ", "Run ", "Find ", "Tell me ", "Please compute ",
     "Can you calculate ", "Use Python for ", "Quick math: ", "Print the result of "],
    ["{e}"], ["?", ".", "", " in Python.", " with Python.", " using code.", " please.", " for me."],
) + ["{e} = ?", "Result of {e}?", "Python: {e}", "What do you get for {e}?"]
ARITH_ZH = _compose(["", "请", "帮我"], ["用 Python 计算", "算一下", "计算", "求"], [" ", ""], ["{e}"], ["", "。", "的值"]) + [
    "{e} = ?", "{e}等于几？", "用代码算 {e}"]

STATS_EN = _compose(
    ["What is the {s} of", "Find the {s} of", "Calculate the {s} of", "Compute the {s} of", "Tell me the {s} of",
     "Get the {s} of", "I need the {s} of", "Work out the {s} of", "Show me the {s} of"],
    [" {l}", " the numbers {l}", " this list: {l}", " these values: {l}", " the data {l}"],
    ["?", ".", "", " please.", " with Python."],
) + ["Here are some numbers: {l}. What is the {s}?", "For {l}, what is the {s}?", "Given {l}, compute the {s}.",
     "{l} - {s}?", "Data {l}: find the {s}."]
STATS_ZH = ["{l}的{s}？", "请求出{l}的{s}。", "这组数{l}的{s}是多少", "帮我算{l}的{s}", "数据：{l}，{s}是多少？",
            "{l} 这些数的{s}", "求 {l} 的{s}。", "算一下{l}的{s}"]

STRING_EN = {
    "reverse": ["Reverse '{w}'.", "Write '{w}' backwards.", "What is '{w}' reversed?", "Spell '{w}' backwards.",
                "Reverse the word '{w}' please.", "Can you reverse the string '{w}'?", "Flip '{w}' around."],
    "upper": ["Uppercase '{w}'.", "Turn '{w}' into upper case.", "Change '{w}' to capital letters.",
              "What is '{w}' in uppercase?", "Convert the string '{w}' to upper case please."],
    "len": ["How long is the string '{w}'?", "Count the characters in '{w}'.", "Length of '{w}'?",
            "How many letters does '{w}' have?", "Tell me the number of characters in '{w}'."],
    "count": ["How often does '{c}' occur in '{w}'?", "Count how many '{c}' are in '{w}'.", "Number of '{c}' in '{w}'?",
              "In '{w}', how many times does '{c}' appear?", "How many '{c}' letters does '{w}' contain?"],
    "sorted": ["Sort the characters of '{w}'.", "Arrange the letters in '{w}' alphabetically.",
               "Alphabetize the letters of '{w}'.", "Sort '{w}' letter by letter."],
    "title": ["Convert '{w}' to title case.", "Capitalize the words in '{w}'.",
              "Make each word of '{w}' start with a capital letter.", "Title case for '{w}', please."],
}

_OPENERS_EN = ["Hi! ", "Hello, ", "Hey, ", "Quick question: ", "Question: ", "Next one: ", "OK, ", "Sorry, ",
               "One more: ", "Please help: ", "I have a task. ", "Another question. ", "Good morning! "]
_NOISE_EN = ["I'm planning a trip", "my friend asked me this", "this is for a report", "just curious",
             "I need this for work", "we are testing the app", "it's for my homework", "my boss wants to know"]
_CLOSERS_EN = [" Thanks!", " Thank you.", " Please.", " Thanks in advance.", " I need it for a report.", " Just curious."]
_OPENERS_ZH = ["你好，", "请问，", "麻烦你，", "问一下：", "好的，", "再问一个：", "嗨，"]
_CLOSERS_ZH = ["谢谢！", "麻烦了。", "多谢。", "谢谢你。"]


def _words(text: str) -> list[str]:
    for mark in "?.,:!":
        text = text.replace(mark, " " + mark)
    return text.split()


def _distance(a: list[str], b: list[str]) -> int:
    """Levenshtein distance between two sequences."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def far_from(forms: list[str], held_out: list[str], zh: bool) -> list[str]:
    """The forms that are no near copy of any held-out phrasing (2+ words apart; 3+ characters in Chinese)."""
    if zh:
        return [f for f in forms if all(_distance(list(f), list(h)) >= 3 for h in held_out)]
    held = [_words(h) for h in held_out]
    return [f for f in forms if all(_distance(_words(f), h) >= 2 for h in held)]


def dress(rng: random.Random, question: str, zh: bool) -> str:
    """Training-only noise around a question: an opener or a short aside before it, a closing remark after it."""
    roll = rng.random()
    if roll < 0.22:
        question = rng.choice(_OPENERS_ZH if zh else _OPENERS_EN) + question
    elif roll < 0.3 and not zh:
        noise = rng.choice(_NOISE_EN)
        question = noise[0].upper() + noise[1:] + ". " + question
    if rng.random() < 0.2:
        question = question + rng.choice(_CLOSERS_ZH if zh else _CLOSERS_EN)
    return question
