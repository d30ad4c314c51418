"""The benchmark suite: `python -m composite bench [--json out.json] [--quick] [--only SECTION ...]`.

Each figure is a median over repeated runs next to its baseline measured in the same run (the two
interleaved, so load from other processes hits both alike); speed is reported as ratios.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, TextIO

__all__ = ["Settings", "QUICK", "SECTIONS", "run", "format_table", "machine"]

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("streaming", "ttft", "sandbox", "app", "cli")
STORY = "Tell me a long story about a dragon."
NOTE = ("Please keep these notes about the trip in mind for later: the train leaves Oslo at nine, the "
        "hotel in Bergen is near the harbour, and the museum closes at five on Sundays. ")


@dataclass
class Settings:
    repeats: int = 5  # runs per figure (the median is reported)
    stream_tokens: int = 200  # answer length cap for the streaming comparison
    turns: int = 8  # conversation length for time to first token
    conversation_tokens: int = 1900  # prompt size the conversation grows to by its last turn
    answer_tokens: int = 24  # answer cap per turn in that conversation
    sandbox_starts: int = 4
    sandbox_trips: int = 40
    app_starts: int = 2
    cli_runs: int = 3


QUICK = Settings(repeats=1, stream_tokens=16, turns=2, conversation_tokens=120, answer_tokens=4, sandbox_starts=1,
                 sandbox_trips=2, app_starts=1, cli_runs=1)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (None where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine() -> dict[str, Any]:
    """Where the figures come from: CPU model, cores, memory, load, torch version and device."""
    import torch

    cpu = cpu_model() or platform.processor() or platform.machine()
    memory = None
    try:
        memory = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_bytes": memory,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),
    }


# -- model figures --------------------------------------------------------------------------------
def _without_reuse(runtime):
    from .backends.prefix_cache import PrefixCache

    saved = runtime.prefix_cache
    runtime.prefix_cache = PrefixCache(0)
    return saved


def _stream_rate(runtime, messages, params) -> tuple[float, int]:
    """Tokens/s of one full stream_turn (forward passes counted: the stop token's too) and that count."""
    from .events import TurnEnd

    started = time.perf_counter()
    end = None
    for event in runtime.stream_turn(messages, None, params):
        if isinstance(event, TurnEnd):
            end = event
    seconds = time.perf_counter() - started
    n = end.completion_tokens + (1 if end.finish_reason == "stop" else 0)
    return n / seconds, n


def bench_streaming(runtime, settings: Settings, progress: Callable[[str], None],
                    app_runtime=None) -> dict[str, Any]:
    """The app's streaming path (stream_turn: events, detokenizing, parsing) vs raw model.generate,
    same model, prompt and token count, greedy, full prefill in both. `app_runtime`: the engine the
    app runs (the NumPy engine for the embedded model), measured in the same rounds when it differs."""
    import torch

    from .messages import Message, SamplingParams
    from .prompts import system_prompt

    messages = [Message("system", system_prompt("chat")), Message("user", STORY)]
    params = SamplingParams(temperature=0, max_new_tokens=settings.stream_tokens)
    ids, _ = runtime.prompt_ids(messages, None, params)
    inputs = torch.tensor([ids], device=runtime.model.device)
    other = app_runtime if app_runtime is not None and app_runtime is not runtime else None
    saved = _without_reuse(runtime)
    saved_other = _without_reuse(other) if other is not None else None
    app, raw, counts, engine = [], [], [], []
    try:
        for i in range(settings.repeats + 1):  # the first pair warms up and is not counted
            # the stop token took a forward pass too: raw generate runs the same number of passes
            app_rate, n = _stream_rate(runtime, messages, params)
            app_seconds = n / app_rate
            if other is not None:
                other_rate, other_n = _stream_rate(other, messages, params)
                if i:
                    engine.append(other_rate)
                if other_n != n:
                    progress(f"streaming: the {other.info.engine} engine made {other_n} tokens, torch {n}")
            started = time.perf_counter()
            with torch.inference_mode():
                out = runtime.model.generate(inputs, attention_mask=torch.ones_like(inputs), max_new_tokens=n,
                                             min_new_tokens=n, do_sample=False, pad_token_id=0)
            raw_seconds = time.perf_counter() - started
            if out.shape[1] - inputs.shape[1] != n:
                raise RuntimeError(f"raw generate made {out.shape[1] - inputs.shape[1]} tokens, expected {n}")
            if i:
                app.append(n / app_seconds)
                raw.append(n / raw_seconds)
                counts.append(n)
            progress(f"streaming {i}/{settings.repeats}: app {n / app_seconds:.0f} tok/s, raw {n / raw_seconds:.0f} tok/s")
    finally:
        runtime.prefix_cache = saved
        if other is not None:
            other.prefix_cache = saved_other
    app_rate, raw_rate = _median(app), _median(raw)
    result = {"prompt_tokens": len(ids), "tokens": int(_median(counts)), "app_tokens_per_s": app_rate,
              "raw_tokens_per_s": raw_rate, "ratio": app_rate / raw_rate, "goal_ratio": 0.95,
              "runs": settings.repeats}
    if engine:
        result["app_engine"] = other.info.engine
        result["app_engine_tokens_per_s"] = _median(engine)
        result["app_engine_ratio"] = _median(engine) / raw_rate
    return result


def _note(runtime, history, target: int, turn: int) -> str:
    """A user message that brings the rendered conversation to about `target` tokens, word by word (so every
    turn adds about the same number of tokens and turn 8 is compared with turn 1 on equal new work); numbered,
    so no two turns are the same."""
    from .messages import Message

    words = (f"Note {turn}. " + NOTE * (target // 8 + 1)).split()
    low, high = 3, len(words)  # the longest prefix of words that stays within target (binary search)
    while low < high:
        mid = (low + high + 1) // 2
        if len(runtime.dialect.render([*history, Message("user", " ".join(words[:mid]))])) <= target:
            low = mid
        else:
            high = mid - 1
    return " ".join(words[:low]) + " What should I remember?"


def bench_ttft(runtime, settings: Settings, progress: Callable[[str], None]) -> dict[str, Any]:
    """Time to the first streamed token at turn 1 and the last turn of a growing conversation,
    through the agent loop, with and without prefix KV-cache reuse."""
    from .agent import Agent
    from .backends.prefix_cache import PrefixCache, conversation
    from .events import TextDelta, TurnEnd
    from .messages import Message, SamplingParams
    from .prompts import system_prompt

    params = SamplingParams(temperature=0, max_new_tokens=settings.answer_tokens)
    notes: list[str] = []  # made in the first run so that the last prompt is about conversation_tokens
    times: dict[str, list[list[float]]] = {"reuse": [], "no_reuse": []}
    prompts: dict[str, list[int]] = {}
    saved = runtime.prefix_cache
    try:
        for r in range(settings.repeats):
            for variant in ("reuse", "no_reuse"):
                runtime.prefix_cache = PrefixCache(8 if variant == "reuse" else 0)
                history = [Message("system", system_prompt("chat"))]
                firsts, sizes = [], []
                with conversation(f"bench-{r}-{variant}"):
                    for turn in range(settings.turns):
                        if len(notes) == turn:
                            target = settings.conversation_tokens * (turn + 1) // settings.turns
                            notes.append(_note(runtime, history, target, turn + 1))
                        history.append(Message("user", notes[turn]))
                        started, first = time.perf_counter(), None
                        for event in Agent(runtime, "chat").run(history, params):
                            if isinstance(event, TextDelta) and first is None:
                                first = time.perf_counter() - started
                            elif isinstance(event, TurnEnd):
                                first = first if first is not None else time.perf_counter() - started
                                sizes.append(event.prompt_tokens)
                        firsts.append(first)
                times[variant].append(firsts)
                prompts[variant] = sizes
                progress(f"time to first token {r + 1}/{settings.repeats} {variant}: turn 1 {firsts[0] * 1000:.0f} ms, "
                         f"turn {len(firsts)} {firsts[-1] * 1000:.0f} ms ({sizes[-1]} prompt tokens)")
    finally:
        runtime.prefix_cache = saved
    result: dict[str, Any] = {"turns": settings.turns, "prompt_tokens_by_turn": prompts["reuse"],
                              "goal_last_over_first_with_reuse": 1.3, "runs": settings.repeats}
    for variant, runs in times.items():
        first = _median([run[0] for run in runs])
        last = _median([run[-1] for run in runs])
        result[variant] = {"turn1_ms": first * 1000, "last_turn_ms": last * 1000, "last_over_first": last / first}
    result["last_turn_speedup"] = result["no_reuse"]["last_turn_ms"] / result["reuse"]["last_turn_ms"]
    return result


# -- sandbox ---------------------------------------------------------------------------------------
def _bench_sandbox_module():
    import importlib.util

    path = ROOT / "benchmarks" / "bench_sandbox.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("composite_bench_sandbox", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench_sandbox(settings: Settings, progress: Callable[[str], None]) -> dict[str, Any]:
    """benchmarks/bench_sandbox.py's measurement: sandboxed kernel vs raw jupyter_client."""
    module = _bench_sandbox_module()
    if module is None:
        return {"skipped": "benchmarks/bench_sandbox.py is not in this checkout"}
    progress("sandbox: starting kernels (raw jupyter_client and the sandbox, interleaved)")
    measured = module.measure(max(2, settings.sandbox_starts), max(2, settings.sandbox_trips), ("full",))
    starts, trips = measured["starts"], measured["trips"]
    ready = {k: _median(v) for k, v in starts.items()}
    trip = {k: _median(v) * 1000 for k, v in trips.items()}
    return {"ready_s": ready, "print1_round_trip_ms": trip, "ready_ratio": ready["full"] / ready["raw"],
            "round_trip_ratio": trip["full"] / trip["raw"], "first_start_s": measured["first"],
            "starts": len(starts["raw"]), "trips": len(trips["raw"])}


# -- the app and the CLI as processes --------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _cold_start(script: Path, ready_text: str, browser, timeout: float = 240.0) -> dict[str, float | None]:
    """Start `streamlit run script`; seconds to /_stcore/health, to the first page with `ready_text`
    rendered in Chromium, and the server's resident memory then."""
    import urllib.request

    port = _free_port()
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port)],
        cwd=str(script.parent), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        health = None
        while health is None:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {proc.returncode} before it was healthy")
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"streamlit was not healthy after {timeout:.0f} s")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as reply:
                    if reply.status == 200:
                        health = time.perf_counter() - started
            except OSError:
                time.sleep(0.05)
        page = browser.new_page()
        try:
            page.goto(f"http://127.0.0.1:{port}/", timeout=timeout * 1000)
            page.get_by_text(ready_text).first.wait_for(timeout=timeout * 1000)
            rendered = time.perf_counter() - started
        finally:
            page.close()
        return {"health_s": health, "first_page_s": rendered, "rss_bytes": _rss(proc.pid)}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def bench_app(settings: Settings, progress: Callable[[str], None]) -> dict[str, Any]:
    """`streamlit run main.py` to the first rendered page with the embedded model loaded (its
    sidebar facts shown) vs a one-line Streamlit app; server memory of each."""
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        return {"skipped": "no /usr/bin/chromium: the first rendered page needs a browser"}
    from playwright.sync_api import sync_playwright

    app, bare = [], []
    with tempfile.TemporaryDirectory(prefix="bench-app-") as tmp, sync_playwright() as p:
        hello = Path(tmp) / "hello.py"
        hello.write_text('import streamlit as st\n\nst.title("hello from streamlit")\n', encoding="utf-8")
        browser = p.chromium.launch(executable_path=str(chromium), headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            for i in range(settings.app_starts):
                bare.append(_cold_start(hello, "hello from streamlit", browser))
                app.append(_cold_start(ROOT / "main.py", "M params", browser))
                progress(f"app cold start {i + 1}/{settings.app_starts}: main.py {app[-1]['first_page_s']:.1f} s, "
                         f"bare app {bare[-1]['first_page_s']:.1f} s")
        finally:
            browser.close()

    def summary(runs):
        rss = [r["rss_bytes"] for r in runs if r["rss_bytes"]]
        return {"health_s": _median([r["health_s"] for r in runs]),
                "first_page_s": _median([r["first_page_s"] for r in runs]),
                "rss_mib": _median(rss) / 2**20 if rss else None}

    result = {"main_py": summary(app), "bare_streamlit": summary(bare), "runs": settings.app_starts}
    result["first_page_ratio"] = result["main_py"]["first_page_s"] / result["bare_streamlit"]["first_page_s"]
    return result


def _wall(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(command, cwd=str(ROOT), capture_output=True, text=True, env={**os.environ})
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()[-400:]}")
        times.append(time.perf_counter() - started)
    return _median(times)


def _import_profile(command: list[str]) -> list[dict[str, Any]]:
    """The slowest top-level imports of `command` (python -X importtime), cumulative seconds."""
    done = subprocess.run([sys.executable, "-X", "importtime", *command], cwd=str(ROOT), capture_output=True, text=True)
    top = []
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[2].startswith(" ") and not parts[2].startswith("  ") and parts[1].strip().isdigit():
            top.append({"module": parts[2].strip(), "seconds": int(parts[1]) / 1e6})
    return sorted(top, key=lambda item: -item["seconds"])[:6]


def bench_cli(settings: Settings, progress: Callable[[str], None]) -> dict[str, Any]:
    """`python -m composite chat "hi"` wall time vs the interpreter alone and `import torch` alone."""
    chat = ["-m", "composite", "chat", "hi", "--max-new-tokens", "8"]
    result: dict[str, Any] = {"runs": settings.cli_runs, "goal_chat_s": 2.0}
    for name, command in (("python_s", ["-c", "pass"]), ("import_torch_s", ["-c", "import torch"]),
                          ("chat_hi_s", chat)):
        result[name] = _wall([sys.executable, *command], settings.cli_runs)
        progress(f"cli: {name} {result[name]:.2f} s")
    result["chat_over_import_torch"] = result["chat_hi_s"] / result["import_torch_s"]
    result["slowest_imports"] = _import_profile(chat)
    return result


# -- the suite -------------------------------------------------------------------------------------
def run(settings: Settings | None = None, sections: tuple[str, ...] = SECTIONS,
        progress: Callable[[str], None] | None = None, model_path: str | None = None) -> dict[str, Any]:
    """Run the chosen sections; returns the JSON-ready result (machine, settings, one key per section)."""
    settings = settings or Settings()
    progress = progress or (lambda line: None)
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        from .errors import ConfigError

        raise ConfigError(f"unknown bench section(s) {', '.join(unknown)}; expected some of {', '.join(SECTIONS)}")
    result: dict[str, Any] = {"machine": machine(), "settings": asdict(settings),
                              "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    runtime = None
    if {"streaming", "ttft"} & set(sections):
        from .backends.local import load_model

        # raw model.generate needs the torch engine; the app runs what engine "auto" picks
        runtime = load_model(model_path, device="auto", engine="torch")
        app_runtime = load_model(model_path, device="auto", engine="auto")
        if app_runtime.info.engine == runtime.info.engine:
            app_runtime = runtime
        result["model"] = runtime.info.summary()
        result["app_engine"] = app_runtime.info.engine
        result["machine"]["torch_threads"] = __import__("torch").get_num_threads()
    for section in sections:
        progress(f"-- {section}")
        if section == "streaming":
            result[section] = bench_streaming(runtime, settings, progress, app_runtime)
        elif section == "ttft":
            result[section] = bench_ttft(app_runtime, settings, progress)
        elif section == "sandbox":
            result[section] = bench_sandbox(settings, progress)
        elif section == "app":
            result[section] = bench_app(settings, progress)
        elif section == "cli":
            result[section] = bench_cli(settings, progress)
    return result


def format_table(result: dict[str, Any]) -> str:
    """A Markdown table of the figures (what README shows), the machine first."""
    m = result["machine"]
    mem = f", {m['memory_bytes'] / 2**30:.0f} GiB" if m.get("memory_bytes") else ""
    load = f", load {m['load_average'][0]:.1f}" if m.get("load_average") else ""
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores{mem}{load}; torch {m['torch']} on {m['device']}"
             f" ({m['torch_threads']} thread(s)); Python {m['python']}; {result['date']}"]
    if "model" in result:
        lines.append(f"Model: {result['model']}")
    lines += ["", "| figure (median) | measured | baseline (same run) | ratio | goal |", "| --- | --- | --- | --- | --- |"]
    s = result.get("streaming")
    if s:
        lines.append(f"| streaming tokens/s, app path vs raw `model.generate` ({s['tokens']} tokens, n={s['runs']}) | "
                     f"{s['app_tokens_per_s']:.0f} | {s['raw_tokens_per_s']:.0f} | {s['ratio']:.2f} | ≥ 0.95 |")
        if "app_engine_tokens_per_s" in s:
            lines.append(f"| streaming tokens/s, app path on the {s['app_engine']} engine (the app's) vs raw "
                         f"`model.generate` | {s['app_engine_tokens_per_s']:.0f} | {s['raw_tokens_per_s']:.0f} | "
                         f"{s['app_engine_ratio']:.2f} | ≥ 0.95 |")
    t = result.get("ttft")
    if t:
        size = t["prompt_tokens_by_turn"][-1] if t["prompt_tokens_by_turn"] else "?"
        for variant, label in (("reuse", "with prefix reuse"), ("no_reuse", "without reuse")):
            v = t[variant]
            goal = "≤ 1.3" if variant == "reuse" else ""
            lines.append(f"| time to first token ({result.get('app_engine', 'torch')} engine), turn {t['turns']} "
                         f"({size} prompt tokens) vs turn 1, {label} (ms) | "
                         f"{v['last_turn_ms']:.0f} | {v['turn1_ms']:.0f} | {v['last_over_first']:.2f} | {goal} |")
        lines.append(f"| time to first token at turn {t['turns']}: without reuse / with reuse | | | "
                     f"{t['last_turn_speedup']:.1f}× | |")
    b = result.get("sandbox")
    if b and "skipped" not in b:
        lines.append(f"| sandbox kernel: start to ready (s), vs raw jupyter_client (n={b['starts']}) | "
                     f"{b['ready_s']['full']:.2f} | {b['ready_s']['raw']:.2f} | {b['ready_ratio']:.2f} | |")
        lines.append(f"| sandbox `print(1)` round trip (ms), vs raw jupyter_client (n={b['trips']}) | "
                     f"{b['print1_round_trip_ms']['full']:.2f} | {b['print1_round_trip_ms']['raw']:.2f} | "
                     f"{b['round_trip_ratio']:.2f} | |")
    a = result.get("app")
    if a and "skipped" not in a:
        lines.append(f"| `streamlit run main.py` to first rendered page, model loaded (s), vs a one-line app "
                     f"(n={a['runs']}) | {a['main_py']['first_page_s']:.1f} | {a['bare_streamlit']['first_page_s']:.1f} | "
                     f"{a['first_page_ratio']:.2f} | |")
        if a["main_py"]["rss_mib"]:
            lines.append(f"| app server memory with the embedded model loaded (MiB), vs the one-line app | "
                         f"{a['main_py']['rss_mib']:.0f} | {a['bare_streamlit']['rss_mib']:.0f} | "
                         f"{a['main_py']['rss_mib'] / a['bare_streamlit']['rss_mib']:.2f} | |")
    c = result.get("cli")
    if c:
        lines.append(f"| `python -m composite chat \"hi\"` wall (s), vs `python -c \"import torch\"` (n={c['runs']}) | "
                     f"{c['chat_hi_s']:.2f} | {c['import_torch_s']:.2f} | {c['chat_over_import_torch']:.2f} | < 2 s |")
    for name in ("sandbox", "app"):
        if result.get(name, {}).get("skipped"):
            lines.append(f"| {name}: skipped ({result[name]['skipped']}) | | | | |")
    if c and c.get("slowest_imports"):
        lines.append("")
        lines.append("Slowest imports of `chat \"hi\"` (cumulative s): " + ", ".join(
            f"{item['module']} {item['seconds']:.2f}" for item in c["slowest_imports"]))
    return "\n".join(lines)


def main(args, out: TextIO, err: TextIO) -> int:
    """The `bench` subcommand: run, print the table, write --json."""
    settings = QUICK if args.quick else Settings()
    if args.repeats:
        settings.repeats = args.repeats
    sections = tuple(args.only) if args.only else SECTIONS

    def progress(line: str) -> None:
        err.write(f"[bench] {line}\n")
        err.flush()

    result = run(settings, sections, progress, model_path=args.model)
    out.write(format_table(result) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
        err.write(f"[bench] wrote {args.json}\n")
    return 0
