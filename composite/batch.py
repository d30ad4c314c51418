"""Batch tool runs: many prompts through the tool loop, scored against expected calls, recorded in the
history store; listing and case-by-case comparison of recorded runs (`python -m composite runs`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from .errors import ConfigError
from .events import ToolCall

__all__ = ["read_batch", "run_batch", "score_call", "summarize", "compare_runs", "runs_cli"]


def read_batch(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL file of {"prompt": ..., "expect": {"name": ..., "arguments": {...}}?} lines."""
    rows = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read batch file {path}: {exc.strerror or exc}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f"{path}:{number}: not valid JSON ({exc}); expected {{\"prompt\": ...}}") from exc
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise ConfigError(f"{path}:{number}: expected an object with a non-empty \"prompt\" string")
        expect = row.get("expect")
        if expect is not None and (not isinstance(expect, dict) or "name" not in expect):
            raise ConfigError(f"{path}:{number}: \"expect\" must be an object with a \"name\" (and \"arguments\")")
        rows.append(row)
    if not rows:
        raise ConfigError(f"batch file {path} has no prompts")
    return rows


def score_call(expect: dict[str, Any], call: ToolCall | None) -> dict[str, bool]:
    """Tool-name and exact-argument agreement of the first call with the expected one."""
    name_ok = call is not None and call.name == expect.get("name")
    args_ok = name_ok and "arguments" in expect and call.arguments == expect["arguments"]
    return {"name_correct": bool(name_ok), "arguments_correct": bool(args_ok)}


def run_batch(agent, system_history, params, batch_path, out_path, out: TextIO, err: TextIO,
              record: bool = True, settings: dict[str, Any] | None = None) -> int:
    """Run every prompt, write the results as JSON lines and (unless record is False) store the run:
    prompts file hash, model, backend, parameters, per-case results and the accuracy summary."""
    from .messages import Message

    rows = read_batch(batch_path)
    results = []
    try:
        from tqdm import tqdm

        progress = tqdm(rows, desc="prompts", file=err)
    except ImportError:  # tqdm is a requirement, but scoring must not depend on a progress bar
        progress = rows
    for row in progress:
        history = list(system_history) + [Message("user", row["prompt"])]
        first_call = None
        reason = "answered"
        for event in agent.run(history, params):
            if isinstance(event, ToolCall) and first_call is None:
                first_call = event
            reason = getattr(event, "reason", reason)
        result: dict[str, Any] = {
            "prompt": row["prompt"],
            "call": None if first_call is None else {"name": first_call.name, "arguments": first_call.arguments},
            "answer": history[-1].content if history[-1].role == "assistant" else "",
            "finish": reason,
            "transcript": [m.to_dict() for m in history],
        }
        if "expect" in row:
            result["expect"] = row["expect"]
            result.update(score_call(row["expect"], first_call))
        results.append(result)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results)
    if out_path:
        Path(out_path).write_text(lines, encoding="utf-8")
    else:
        out.write(lines)
    summary = summarize(results)
    if record:
        _record(agent, params, batch_path, results, summary, settings or {}, err)
    err.write("summary: " + json.dumps(summary) + "\n")
    return 0


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    scored = [r for r in results if "expect" in r]
    summary: dict[str, Any] = {"prompts": len(results), "scored": len(scored)}
    if scored:
        summary["tool_name_accuracy"] = sum(r["name_correct"] for r in scored) / len(scored)
        summary["exact_arguments_accuracy"] = sum(r["arguments_correct"] for r in scored) / len(scored)
    return summary


def _record(agent, params, batch_path, results, summary, settings, err: TextIO) -> None:
    """Store the run; a store that cannot be used costs the record, not the batch's results."""
    import hashlib
    from dataclasses import asdict, is_dataclass

    from .errors import StoreError
    from .store import open_store

    info = getattr(agent.backend, "info", None)
    recorded_params = {**(asdict(params) if is_dataclass(params) else dict(params or {})), **settings}
    try:
        digest = hashlib.sha256(Path(batch_path).read_bytes()).hexdigest()
        store = open_store()
        try:
            run = store.record_run(
                prompts_sha256=digest, prompts_file=str(Path(batch_path).resolve()), cases=results, summary=summary,
                model=getattr(info, "name", "") or type(agent.backend).__name__, backend=getattr(info, "backend", ""),
                params=recorded_params)
        finally:
            store.close()
    except (StoreError, OSError) as exc:
        err.write(f"note: the run was not recorded: {exc}\n")
        return
    err.write(f"recorded run {run.id} in {store.where} (python -m composite runs)\n")


# -- recorded runs ------------------------------------------------------------------------------------
def _call_text(case: dict[str, Any]) -> str:
    call = case.get("call")
    if not call:
        return "no call"
    args = ", ".join(f"{k}={v!r}" for k, v in (call.get("arguments") or {}).items())
    return f"{call.get('name')}({args})"


def _verdict(case: dict[str, Any]) -> str:
    if "expect" not in case:
        return ""
    return "exact" if case.get("arguments_correct") else "name only" if case.get("name_correct") else "wrong"


def compare_runs(a_cases: list[dict[str, Any]], b_cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cases whose call, score or answer differ between two runs, matched by prompt (and by
    occurrence for repeated prompts); a prompt in one run only is a difference too."""

    def keyed(cases):
        seen: dict[str, int] = {}
        out = {}
        for case in cases:
            prompt = str(case.get("prompt", ""))
            seen[prompt] = seen.get(prompt, 0) + 1
            out[(prompt, seen[prompt])] = case
        return out

    a, b = keyed(a_cases), keyed(b_cases)
    rows = []
    for key in list(a) + [k for k in b if k not in a]:
        ca, cb = a.get(key), b.get(key)
        if ca is not None and cb is not None:
            same = (ca.get("call") == cb.get("call") and _verdict(ca) == _verdict(cb)
                    and ca.get("answer", "") == cb.get("answer", ""))
            if same:
                continue
        rows.append({
            "prompt": key[0],
            "a": None if ca is None else {"call": _call_text(ca), "verdict": _verdict(ca), "answer": ca.get("answer", "")},
            "b": None if cb is None else {"call": _call_text(cb), "verdict": _verdict(cb), "answer": cb.get("answer", "")},
        })
    return rows


def _accuracy(summary: dict[str, Any], key: str) -> str:
    value = summary.get(key)
    return "-" if value is None else f"{100 * value:.1f} %"


def _run_line(run) -> str:
    s = run.summary
    return (f"{run.id}  {run.created_at:%Y-%m-%d %H:%M}  {run.model or '?'} ({run.backend or '?'})  "
            f"prompts {s.get('prompts', '?')}  tool name {_accuracy(s, 'tool_name_accuracy')}  "
            f"exact arguments {_accuracy(s, 'exact_arguments_accuracy')}  file {Path(run.prompts_file).name} "
            f"[{run.prompts_sha256[:8]}]")


def _short(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def runs_cli(action: str | None, ids: list[str], as_json: bool, limit: int, out: TextIO, err: TextIO) -> int:
    """`runs` lists recorded runs; `runs show A` prints one; `runs compare A B` shows where two differ."""
    from dataclasses import asdict

    from .errors import ConfigError
    from .store import open_store

    wanted = {None: 0, "list": 0, "show": 1, "compare": 2}
    if action not in wanted:
        raise ConfigError(f"unknown runs action {action!r}; expected list, show RUN or compare RUN_A RUN_B")
    if len(ids) != wanted[action]:
        raise ConfigError(f"runs {action or 'list'} takes {wanted[action]} run id(s), got {len(ids)}: "
                          "python -m composite runs compare RUN_A RUN_B")
    store = open_store()
    try:
        if action in (None, "list"):
            runs = store.list_runs(limit=limit)
            if as_json:
                for run in runs:
                    out.write(json.dumps(asdict(run), default=str, ensure_ascii=False) + "\n")
            elif not runs:
                out.write(f"no recorded runs in {store.where}; `python -m composite tool --batch FILE` records one\n")
            else:
                for run in runs:
                    out.write(_run_line(run) + "\n")
            return 0
        if action == "show":
            run, cases = store.get_run(ids[0])
            if as_json:
                out.write(json.dumps({**asdict(run), "cases": cases}, default=str, ensure_ascii=False) + "\n")
                return 0
            out.write(_run_line(run) + "\n" + f"parameters: {json.dumps(run.params)}\n")
            for i, case in enumerate(cases, 1):
                out.write(f"{i:>4}  {_short(case.get('prompt', ''), 50):<50}  {_call_text(case)}  {_verdict(case)}\n")
            return 0
        (run_a, cases_a), (run_b, cases_b) = store.get_run(ids[0]), store.get_run(ids[1])
    finally:
        store.close()
    rows = compare_runs(cases_a, cases_b)
    if as_json:
        out.write(json.dumps({"a": asdict(run_a), "b": asdict(run_b), "differences": rows}, default=str,
                             ensure_ascii=False) + "\n")
        return 0
    out.write(f"A  {_run_line(run_a)}\nB  {_run_line(run_b)}\n")
    if run_a.prompts_sha256 != run_b.prompts_sha256:
        out.write("note: the two runs used different prompts files; cases are matched by prompt text\n")
    for key in sorted(set(run_a.params) | set(run_b.params)):
        if run_a.params.get(key) != run_b.params.get(key):
            out.write(f"parameter {key}: A {run_a.params.get(key)!r}  B {run_b.params.get(key)!r}\n")
    if not rows:
        out.write(f"no differences in {len(cases_a)} cases\n")
        return 0
    for row in rows:
        out.write(f"- {_short(row['prompt'], 70)}\n")
        for side in ("a", "b"):
            got = row[side]
            text = "(not in this run)" if got is None else (
                f"{got['call']}" + (f"  [{got['verdict']}]" if got["verdict"] else "")
                + (f"  answer: {_short(got['answer'], 60)}" if got["answer"] else ""))
            out.write(f"    {side.upper()}: {text}\n")
    out.write(f"{len(rows)} of {max(len(cases_a), len(cases_b))} cases differ\n")
    return 0
