"""Batch tool runs: many prompts through the tool loop, scored against expected calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from .errors import ConfigError
from .events import ToolCall

__all__ = ["read_batch", "run_batch", "score_call"]


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


def run_batch(agent, system_history, params, batch_path, out_path, out: TextIO, err: TextIO) -> int:
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
    scored = [r for r in results if "expect" in r]
    summary = {"prompts": len(results), "scored": len(scored)}
    if scored:
        summary["tool_name_accuracy"] = sum(r["name_correct"] for r in scored) / len(scored)
        summary["exact_arguments_accuracy"] = sum(r["arguments_correct"] for r in scored) / len(scored)
    err.write("summary: " + json.dumps(summary) + "\n")
    return 0
