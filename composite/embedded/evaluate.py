"""Held-out evaluation and speed benchmark of the embedded model (greedy decoding with a KV cache).

Interpreter code the model writes is only ever run inside `composite.sandbox.Sandbox`.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

from . import MODEL_DIR
from .data import EvalCase, sample_eval_case

__all__ = ["KIND_SHARES", "THRESHOLDS", "benchmark", "format_report", "greedy", "load", "run_eval"]

# kind of case -> share of the eval set
KIND_SHARES = {"tool": 0.35, "code": 0.25, "answer": 0.25, "no_tool": 0.15}
THRESHOLDS = {"tool_exact": 95.0, "code_correct": 95.0, "answer_key": 90.0, "well_formed": 100.0, "stop_ok": 100.0}


def load(model_dir: Path = MODEL_DIR, engine: str = "auto", copy_guard: float | None = None) -> Any:
    """The exported model as the app runs it: the project's runtime, float32 on the CPU (engine auto: the
    NumPy engine, whose greedy tokens are the torch engine's), with its copy guard (copy_guard: a ratio
    instead of the model's own setting; 0 measures the model without it)."""
    from ..backends.local import check_copy_guard, load_model

    runtime = load_model(model_dir, device="cpu", dtype="float32", engine=engine)
    if copy_guard is not None:
        runtime.copy_guard = check_copy_guard(copy_guard, "--copy-guard")
    return runtime


def greedy(runtime: Any, prompt: list[int], stop_ids: set[int], max_new: int = 160, messages: Any = None) -> list[int]:
    """Greedy decoding through the app's own decode loop; the stop token, when reached, is the last id.
    `messages` (the conversation the prompt renders) gives the copy guard its sources, as in the app."""
    from ..messages import SamplingParams

    guard = runtime.guard_for(messages) if messages else None
    return list(runtime.generate_ids(prompt, SamplingParams(temperature=0, max_new_tokens=max_new), stop_ids,
                                     guard=guard))


def _normalize(value: Any) -> Any:
    return json.loads(json.dumps(value))  # tuples and lists compare equal


def _eval_cases(n_cases: int, seed: int) -> list[EvalCase]:
    rng = random.Random(seed)
    kinds: list[str] = []
    for kind, share in KIND_SHARES.items():
        kinds += [kind] * max(1, round(n_cases * share))
    kinds = kinds[:n_cases]
    rng.shuffle(kinds)
    return [sample_eval_case(rng, kind) for kind in kinds]


class _CodeRunner:
    """Runs model-written code in the project's sandbox (never in this process)."""

    def __init__(self) -> None:
        self.sandbox: Any = None
        self.error = ""
        try:
            from ..sandbox import Sandbox
        except ImportError as exc:
            self.error = f"composite.sandbox unavailable: {exc}"
            return
        self._cls = Sandbox

    def run(self, code: str) -> str | None:
        """The code's stdout (stripped), or None when no sandbox can run it."""
        if self.error:
            return None
        from ..errors import SandboxError

        try:
            if self.sandbox is None:
                self.sandbox = self._cls()
            result = self.sandbox.execute(code, timeout=20)
        except SandboxError as exc:
            self.error = f"sandbox failed: {exc}"
            return None
        return result.text(("stdout", "result")).strip()

    def close(self) -> None:
        if self.sandbox is not None:
            self.sandbox.shutdown()


def run_eval(n_cases: int = 200, seed: int = 7, model_dir: Path = MODEL_DIR, run_code: bool = True,
             progress: bool = False, max_failures: int = 25, copy_guard: float | None = None) -> dict[str, Any]:
    """Accuracy on held-out cases. Percentages; None where a metric had no case or could not be measured."""
    from ..errors import ToolCallError
    from ..toolcall import parse_tool_call

    runtime = load(model_dir, copy_guard=copy_guard)
    dialect = runtime.dialect
    tok = dialect.tokenizer
    stops = dialect.stop_ids()
    cases = _eval_cases(n_cases, seed)
    runner = _CodeRunner() if run_code else None
    counts = {k: 0 for k in ("tool", "tool_exact", "code", "code_correct", "code_exact", "code_run", "answer",
                             "answer_key", "no_tool", "no_tool_calls", "calls", "well_formed", "stop_ok")}
    failures: list[dict[str, Any]] = []
    iterator: Any = cases
    if progress:
        from tqdm import tqdm

        iterator = tqdm(cases, desc="eval")
    started = time.perf_counter()
    try:
        for case in iterator:
            ids = greedy(runtime, dialect.render(case.messages, tools=case.tools), stops, messages=case.messages)
            expected_stop = tok["<|observation|>"] if case.expect in ("tool", "code") else tok["<|user|>"]
            stop_ok = bool(ids) and ids[-1] == expected_stop
            counts["stop_ok"] += stop_ok
            turn = dialect.parse(ids)[0]
            ok = False
            if case.expect == "tool":
                counts["tool"] += 1
                counts["calls"] += 1
                args = None
                if turn.kind == "tool_call":
                    try:
                        args = parse_tool_call(turn.code)
                    except ToolCallError:
                        args = None
                counts["well_formed"] += args is not None
                ok = args is not None and turn.tool_name == case.tool and _normalize(args) == _normalize(case.args)
                counts["tool_exact"] += ok
            elif case.expect == "code":
                counts["code"] += 1
                counts["calls"] += 1
                well = turn.kind == "code" and bool(turn.code.strip())
                counts["well_formed"] += well
                counts["code_exact"] += well and turn.code.strip() == case.args["code"].strip()
                output = runner.run(turn.code) if (runner is not None and well) else None
                if output is not None:
                    counts["code_run"] += 1
                    ok = output == case.code_output
                    counts["code_correct"] += ok
                else:  # malformed code (counts as wrong), or no sandbox to run it in
                    ok = well and turn.code.strip() == case.args["code"].strip()
            elif case.expect == "answer":
                counts["answer"] += 1
                ok = turn.kind == "text" and case.key in turn.content
                counts["answer_key"] += ok
            else:
                counts["no_tool"] += 1
                called = turn.kind != "text" or any(t.kind != "text" for t in dialect.parse(ids))
                counts["no_tool_calls"] += called
                ok = not called
            if not (ok and stop_ok):
                failures.append({"expect": case.expect, "prompt": case.messages[-1].content[:120],
                                 "want": case.key if case.expect == "answer" else case.args, "got": tok.decode(ids, keep_special=True)[:200]})
    finally:
        if runner is not None:
            runner.close()

    def pct(num: str, den: str) -> float | None:
        return round(100.0 * counts[num] / counts[den], 1) if counts[den] else None

    # measured when every well-formed block ran in the sandbox (malformed ones are simply wrong)
    code_measured = counts["code"] > 0 and runner is not None and not runner.error
    return {
        "cases": len(cases),
        "tool_exact": pct("tool_exact", "tool"),
        "code_correct": pct("code_correct", "code") if code_measured else None,
        "code_exact": pct("code_exact", "code"),
        "answer_key": pct("answer_key", "answer"),
        "no_tool_calls": counts["no_tool_calls"],
        "well_formed": pct("well_formed", "calls"),
        "stop_ok": round(100.0 * counts["stop_ok"] / max(1, len(cases)), 1),
        "counts": counts,
        "code_note": "" if code_measured else (runner.error if runner is not None and runner.error else "not measured"),
        "seconds": round(time.perf_counter() - started, 1),
        "failures": failures[:max_failures],
    }


def format_report(report: dict[str, Any]) -> str:
    def show(value: Any) -> str:
        return "not measured" if value is None else f"{value} %"

    lines = [
        f"held-out cases: {report['cases']} ({report['seconds']} s)",
        f"exact tool name + arguments: {show(report['tool_exact'])} (target >= 95 %)",
        f"interpreter code runs and prints the right result: {show(report['code_correct'])} (target >= 95 %)"
        + (f" [{report['code_note']}]" if report["code_note"] else ""),
        f"interpreter code identical to the reference: {show(report['code_exact'])}",
        f"final answers stating the observation's key value: {show(report['answer_key'])} (target >= 90 %)",
        f"tool calls with no tools offered: {report['no_tool_calls']} (target 0)",
        f"well-formed calls: {show(report['well_formed'])} (required 100 %)",
        f"correct stop tokens: {show(report['stop_ok'])} (required 100 %)",
    ]
    for failure in report["failures"][:10]:
        lines.append(f"  miss [{failure['expect']}] {failure['prompt']!r} want {failure['want']!r} got {failure['got']!r}")
    return "\n".join(lines)


def benchmark(model_dir: Path = MODEL_DIR, new_tokens: int = 200, runs: int = 5, engine: str = "auto") -> dict[str, Any]:
    """Load time (imports excluded and included) and greedy decode tokens/s at batch 1, on `engine`."""
    t0 = time.perf_counter()
    if engine == "torch":
        import torch  # noqa: F401 - library imports timed separately from the weights
        from transformers import GlmForCausalLM  # noqa: F401
    else:
        import numpy  # noqa: F401
        from safetensors.numpy import load_file  # noqa: F401

    imported = time.perf_counter() - t0
    t1 = time.perf_counter()
    runtime = load(model_dir, engine)
    dialect = runtime.dialect
    loaded = time.perf_counter() - t1
    from ..messages import Message
    from ..prompts import SYSTEM_PROMPTS

    prompt = dialect.render([Message("system", SYSTEM_PROMPTS["chat"]), Message("user", "Who are you?")])
    greedy(runtime, prompt, set(), max_new=8)  # warm-up
    rates = []
    for _ in range(runs):
        t2 = time.perf_counter()
        out = greedy(runtime, prompt, set(), max_new=new_tokens)
        rates.append(len(out) / (time.perf_counter() - t2))
    return {
        "load_seconds": round(loaded, 3),  # weights + tokenizer, libraries already imported
        "import_seconds": round(imported, 3),  # the engine's libraries (once per process)
        "engine": runtime.info.engine,
        "decode_tokens": len(out),
        "decode_tokens_per_second": round(statistics.median(rates), 1),  # median of the runs
        "decode_runs": [round(r, 1) for r in rates],
        "prompt_tokens": len(prompt),
        "parameters": runtime.info.parameters,
        "threads": __import__("torch").get_num_threads() if runtime.info.engine == "torch" else 1,
    }
