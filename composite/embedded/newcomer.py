"""The newcomer set: hand-written prompts phrased the way new users type (newcomer.jsonl), and its eval.

Per skill: exact tool calls, code that runs in the sandbox and prints the right result (or draws the asked
chart), and final answers that state the observation's key value. Model code only runs in the sandbox.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from . import MODEL_DIR

__all__ = ["NEWCOMER_FILE", "NEWCOMER_FILES", "SKILLS", "NewcomerCase", "format_newcomer_report", "load_newcomer",
           "run_newcomer_eval"]

NEWCOMER_FILE = Path(__file__).with_name("newcomer.jsonl")
NEWCOMER_FILES = Path(__file__).with_name("newcomer_files")  # CSV files the prompts say they uploaded
SKILLS = ("weather", "time", "calculator", "arithmetic_code", "statistics", "strings", "plots", "csv", "out_of_skill")
TARGET_OVERALL = 90.0
WEATHER_WORDS = ["Sunny", "Partly cloudy", "Light rain", "Overcast", "Clear", "Light snow"]


@dataclass
class NewcomerCase:
    id: str
    skill: str
    mode: str  # tool / code / chat
    prompt: str
    tool: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    ref_code: str = ""
    output: str | None = None  # expected stdout of code; None for charts (checked by `must`)
    must: list[str] = field(default_factory=list)  # fragments a chart's code must contain
    files: list[str] = field(default_factory=list)
    slot: str = ""  # the place as the prompt writes it, when the call names it differently (time zones)


def load_newcomer(path: Path = NEWCOMER_FILE) -> list[NewcomerCase]:
    from ..errors import ConfigError

    cases = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            cases.append(NewcomerCase(**json.loads(line)))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path}:{number}: not a newcomer case ({exc}); expected a JSON object with id, skill, "
                              "mode, prompt and the expected call / code") from exc
    return cases


# ---------------------------------------------------------------------------------------------------
# checks


def _zone(name: Any) -> str | None:
    from tools.builtin import TimeZoneError, resolve_zone

    try:
        return resolve_zone(str(name))[0]
    except TimeZoneError:
        return None


def _calc(expression: Any) -> float | None:
    from tools import default_registry

    result = default_registry.call("calculator", {"expression": str(expression)})
    return float(result.value) if result.ok and isinstance(result.value, (int, float)) else None


def call_matches(case: NewcomerCase, name: str, args: dict[str, Any]) -> bool:
    """The call does what was asked: the same city, a name of the same zone, an expression of the same value."""
    if name != case.tool or set(args) != set(case.args):
        return False
    if case.tool == "current_time":
        return _zone(args["timezone"]) == case.args["timezone"]
    if case.tool == "calculator":
        got, want = _calc(args["expression"]), _calc(case.args["expression"])
        return got is not None and want is not None and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)
    if case.tool == "get_weather":  # the weather service reads "new york" and "New York" alike: case is not the city
        return str(args["city_name"]).strip().casefold() == case.args["city_name"].casefold()
    return args == case.args


def output_matches(got: str, want: str) -> bool:
    if got == want:
        return True
    try:
        return math.isclose(float(got), float(want), rel_tol=1e-9)
    except ValueError:
        return False


def _squash(text: str) -> str:
    return "".join(text.split()).replace("'", '"')


def chart_matches(code: str, must: list[str]) -> bool:
    body = _squash(code)
    return all(_squash(fragment) in body for fragment in must)


def answer_states(key: str, answer: str) -> bool:
    """Whether a final answer states the observation's key value: the value itself, or, for a printed list
    (a CSV's columns), each of its items in order ("has 3 columns: name, age, score" states
    "['name', 'age', 'score']")."""
    if key in answer:
        return True
    if not (key.startswith("[") and key.endswith("]")):
        return False
    items = [item.strip().strip("'\"") for item in key[1:-1].split(",")]
    at = 0
    for item in items:
        found = answer.find(item, at) if item else -1
        if found < 0:
            return False
        at = found + len(item)
    return True


def weather_payload(city: str) -> dict[str, Any]:
    """A fixed observation per city, shaped like tools.builtin.get_weather's return value."""
    h = zlib.crc32(city.encode("utf-8"))
    temp = h % 45 - 10
    return {"city": city, "temperature_c": temp, "feels_like_c": temp - h % 4, "humidity_percent": 30 + h % 60,
            "description": WEATHER_WORDS[h % len(WEATHER_WORDS)], "wind_kmph": h % 30, "wind_direction": "NW"}


def time_payload(zone: str) -> dict[str, str]:
    """A fixed observation per zone, tools.builtin.current_time's result at a fixed instant: the clock is not
    read, so an answer is judged on the same time in every run (the real clock made the figure depend on
    the hour the eval ran)."""
    from datetime import datetime, timedelta, timezone
    from zoneinfo import ZoneInfo

    from tools.builtin import time_at

    minutes = zlib.crc32(zone.encode("utf-8")) % (24 * 60)
    instant = datetime(2026, 6, 15, tzinfo=timezone.utc) + timedelta(minutes=minutes)
    return time_at(zone, instant.astimezone(ZoneInfo(zone)))


def reference_turn(case: NewcomerCase) -> tuple[Any, str, str]:
    """(reference assistant message, its observation, the key value an answer must state); key "" = no answer check."""
    from ..messages import Message
    from ..toolcall import call_tool, render_value
    from .data import call_code, tool_registry

    if case.mode == "tool":
        msg = Message("assistant", call_code(case.tool, case.args), case.tool)
        if case.tool == "get_weather":
            data = weather_payload(case.args["city_name"])
            return msg, render_value(data), f"{data['temperature_c']}°C"
        if case.tool == "current_time":
            data = time_payload(case.args["timezone"])
            return msg, render_value(data), data["datetime"][11:16]
        obs = call_tool(tool_registry(), case.tool, case.args).observation()
        return msg, obs, obs
    msg = Message("assistant", f"```python\n{case.ref_code}\n```", "interpreter")
    if case.output is None:
        return msg, "[image: plot_1.png 640x480]", ""
    return msg, case.output, case.output


# ---------------------------------------------------------------------------------------------------
# eval


class _Runner:
    """One sandbox for the whole eval, with the newcomer CSV files uploaded."""

    def __init__(self) -> None:
        self.sandbox: Any = None
        self.failures = 0  # executions the sandbox could not run (counted as wrong)

    def _start(self) -> Any:
        from ..sandbox import Sandbox

        sandbox = Sandbox()
        for path in sorted(NEWCOMER_FILES.glob("*.csv")):
            sandbox.upload(path.name, path.read_bytes())
        return sandbox

    def run(self, code: str) -> tuple[str, bool, int]:
        """(stdout+result text, ran without error, images drawn); a kernel that cannot be (re)started is
        replaced once, then the case counts as wrong."""
        from ..errors import SandboxError

        for attempt in range(2):
            try:
                if self.sandbox is None:
                    self.sandbox = self._start()
                result = self.sandbox.execute(code, timeout=60)
                return result.text(("stdout", "result")).strip(), result.ok, len(result.images)
            except SandboxError:
                self.close()
                self.sandbox = None
        self.failures += 1
        return "", False, 0

    def close(self) -> None:
        from ..errors import SandboxError

        if self.sandbox is not None:
            try:
                self.sandbox.shutdown()
            except SandboxError:
                pass  # already gone


def _messages(case: NewcomerCase) -> tuple[list[Any], Any]:
    from ..messages import Message
    from ..prompts import SYSTEM_PROMPTS
    from .data import tool_schemas

    tools = tool_schemas() if case.mode == "tool" else None
    return [Message("system", SYSTEM_PROMPTS[case.mode]), Message("user", case.prompt)], tools


def run_newcomer_eval(model_dir: Path = MODEL_DIR, cases: list[NewcomerCase] | None = None, run_code: bool = True,
                      progress: bool = False, on_row: Any = None, copy_guard: float | None = None) -> dict[str, Any]:
    """Per-skill and overall accuracy on the newcomer set (percentages); on_row(row) sees each case's result."""
    from ..errors import ToolCallError
    from ..messages import Message
    from ..toolcall import parse_tool_call
    from .evaluate import greedy, load

    cases = load_newcomer() if cases is None else cases
    runtime = load(model_dir, copy_guard=copy_guard)
    dialect, tok = runtime.dialect, runtime.dialect.tokenizer
    stops = dialect.stop_ids()
    runner = _Runner() if run_code else None
    rows: list[dict[str, Any]] = []
    iterator: Any = cases
    if progress:
        from tqdm import tqdm

        iterator = tqdm(cases, desc="newcomer")
    started = time.perf_counter()
    try:
        for case in iterator:
            messages, tools = _messages(case)
            ids = greedy(runtime, dialect.render(messages, tools=tools), stops, max_new=240, messages=messages)
            turn = dialect.parse(ids)[0]
            row: dict[str, Any] = {"id": case.id, "skill": case.skill, "prompt": case.prompt,
                                   "got": tok.decode(ids, keep_special=True)[:240]}
            if case.skill == "out_of_skill":
                row["call_ok"] = None
                row["answer_ok"] = turn.kind == "text" and "MODEL_PATH" in turn.content and len(dialect.parse(ids)) == 1
                rows.append(row)
                if on_row is not None:
                    on_row(row)
                continue
            if case.mode == "tool":
                ok = False
                if turn.kind == "tool_call":
                    try:
                        ok = call_matches(case, turn.tool_name, parse_tool_call(turn.code))
                    except ToolCallError:
                        ok = False
                row["call_ok"] = ok
            else:
                ok = False
                if turn.kind == "code" and turn.code.strip() and runner is not None:
                    out, ran, images = runner.run(turn.code)
                    if case.output is not None:
                        ok = ran and output_matches(out, case.output)
                    else:
                        ok = ran and images > 0 and chart_matches(turn.code, case.must)
                    row["printed"] = out[:120]
                row["call_ok"] = ok
            ref, obs, key = reference_turn(case)
            if key:
                follow = messages + [ref, Message("observation", obs)]
                ids2 = greedy(runtime, dialect.render(follow, tools=tools), stops, messages=follow)
                answer = dialect.parse(ids2)[0]
                row["answer_ok"] = answer.kind == "text" and answer_states(key, answer.content)
                row["answer"] = answer.content[:160]
            else:
                row["answer_ok"] = None
            rows.append(row)
            if on_row is not None:
                on_row(row)
    finally:
        if runner is not None:
            runner.close()
    report = summarize(rows, time.perf_counter() - started)
    report["sandbox_failures"] = runner.failures if runner is not None else None
    return report


def _pct(values: list[bool]) -> float | None:
    return round(100.0 * sum(values) / len(values), 1) if values else None


def summarize(rows: list[dict[str, Any]], seconds: float = 0.0) -> dict[str, Any]:
    """Per skill: calls (exact tool calls / correct code), answers, and cases fully right (every measured step)."""
    per_skill = {}
    for skill in SKILLS:
        mine = [r for r in rows if r["skill"] == skill]
        if not mine:
            continue
        calls = [r["call_ok"] for r in mine if r["call_ok"] is not None]
        answers = [r["answer_ok"] for r in mine if r["answer_ok"] is not None]
        full = [all(v for v in (r["call_ok"], r["answer_ok"]) if v is not None) for r in mine]
        per_skill[skill] = {"cases": len(mine), "calls": _pct(calls), "answers": _pct(answers), "overall": _pct(full)}
    full = [all(v for v in (r["call_ok"], r["answer_ok"]) if v is not None) for r in rows]
    return {
        "cases": len(rows),
        "overall": _pct(full),
        "calls": _pct([r["call_ok"] for r in rows if r["call_ok"] is not None]),
        "answers": _pct([r["answer_ok"] for r in rows if r["answer_ok"] is not None]),
        "per_skill": per_skill,
        "seconds": round(seconds, 1),
        "failures": [r for r in rows if not all(v for v in (r["call_ok"], r["answer_ok"]) if v is not None)],
    }


def format_newcomer_report(report: dict[str, Any], max_failures: int = 15) -> str:
    def show(value: Any) -> str:
        return "  n/a" if value is None else f"{value:5.1f} %"

    lines = [f"newcomer set: {report['cases']} hand-written prompts ({report['seconds']} s)",
             f"overall (every measured step right): {show(report['overall'])} (target >= {TARGET_OVERALL:.0f} %)",
             f"first turn right (exact tool call / code result): {show(report['calls'])}",
             f"final answers stating the key value: {show(report['answers'])}",
             f"{'skill':<16} {'cases':>5} {'call/code':>9} {'answer':>8} {'overall':>8}"]
    for skill, s in report["per_skill"].items():
        lines.append(f"{skill:<16} {s['cases']:>5} {show(s['calls']):>9} {show(s['answers']):>8} {show(s['overall']):>8}")
    for row in report["failures"][:max_failures]:
        lines.append(f"  miss {row['id']} [{row['skill']}] {row['prompt']!r} got {row['got'][:140]!r}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# near copies: the newcomer prompts must not be (nearly) what the training generator asks


_NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
                 "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred").split()


def skeleton(text: str, entities: list[str] | tuple[str, ...] = ()) -> str:
    """A prompt with its values abstracted: entities (city, zone) -> X, quoted text -> Q, file names -> F,
    numbers (digits or words) -> N, runs of values (lists, points, label-value pairs) -> L; lower case,
    no punctuation but the slots. Two prompts with the same skeleton differ only in their values."""
    import re

    for entity in sorted((e for e in entities if e), key=len, reverse=True):
        text = re.sub(re.escape(entity), " entx ", text, flags=re.IGNORECASE)
    text = re.sub(r"(?<!\w)'[^']*'(?!\w)|\"[^\"]*\"|“[^”]*”|「[^」]*」", " quotq ", text)
    text = re.sub(r"[\w.-]+\.csv", " filef ", text)
    text = text.lower()
    text = re.sub(r"-?\d+(\.\d+)?", " N ", text)
    text = re.sub(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", " N ", text)
    text = re.sub(r"[^\w\s]", " ", text)  # punctuation (Chinese included) goes; CJK characters stay
    text = " " + " ".join(text.split()) + " "
    text = re.sub(r" N(?: (?:and )?N)+(?= )", " L", text)  # lists: 1 2 3, 1, 2 and 3
    text = re.sub(r"(?: [^\s]+ N(?= )){3,}", " L", text)  # label-value pairs: apples 3, pears 5, plums 2
    text = re.sub(r" L(?: (?:and )?[LN])+(?= )", " L", text)
    return " ".join(text.split())


def _is_cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def near_copy(a: str, b: str) -> bool:
    """Skeletons less than 2 words apart (3 characters for Chinese), the held-out eval's own rule; identical
    when the prompt is shorter than 4 words (8 characters)."""
    from .phrasing import _distance

    if _is_cjk(a) or _is_cjk(b):
        x, y = list(a.replace(" ", "")), list(b.replace(" ", ""))
        limit = 3 if max(len(x), len(y)) >= 8 else 1  # in a short prompt one character can be the whole request
    else:
        x, y = a.split(), b.split()
        limit = 2 if max(len(x), len(y)) >= 4 else 1  # "median of L" is not "result of L"
    return abs(len(x) - len(y)) < limit and _distance(x, y) < limit


def case_entities(case: NewcomerCase) -> list[str]:
    values = [str(v) for v in case.args.values()] if case.tool in ("get_weather", "current_time") else []
    return values + ([case.slot] if case.slot else [])


@cache
def _newcomer_skeletons() -> tuple[str, ...]:
    return tuple(skeleton(case.prompt, case_entities(case)) for case in load_newcomer())


@cache
def _near_any(skel: str) -> bool:
    return any(near_copy(skel, other) for other in _newcomer_skeletons())


def near_newcomer(question: str, entities: list[str] | tuple[str, ...] = ()) -> bool:
    """Whether a generated question is a near copy of a newcomer prompt (the generator then draws another)."""
    return _near_any(skeleton(question, entities))
