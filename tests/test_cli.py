"""The command line: one-shot and interactive chat, JSON transcripts, tool/batch runs and bad input."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from composite.cli import main

ROOT = Path(__file__).resolve().parent.parent


def run(argv, stdin=""):
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, out, err, io.StringIO(stdin))
    return code, out.getvalue(), err.getvalue()


def test_chat_once_prints_a_json_transcript(tiny_model_dir):
    code, out, err = run(["chat", "hello", "--model", str(tiny_model_dir), "--json", "--temperature", "0",
                          "--max-new-tokens", "6", "--system", "Be brief."])
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [m["role"] for m in lines] == ["system", "user", "assistant"]
    assert lines[0]["content"] == "Be brief." and lines[1]["content"] == "hello"
    assert set(lines[2]) >= {"role", "metadata", "content"}


def test_chat_once_streams_plain_text(tiny_model_dir):
    code, out, err = run(["chat", "hi", "--model", str(tiny_model_dir), "--temperature", "0", "--max-new-tokens", "5"])
    assert code == 0 and out.strip() and "loading" in err


def test_interactive_chat_handles_clear_and_exit(tiny_model_dir):
    code, out, err = run(["chat", "--model", str(tiny_model_dir), "--temperature", "0", "--max-new-tokens", "4"],
                         stdin="hello\n\nclear\nagain\nexit\nnever read\n")
    assert code == 0
    assert out.count("Assistant:") == 2 and "(history cleared)" in out


def test_missing_model_exits_2_with_a_clear_message(tmp_path):
    code, out, err = run(["chat", "hi", "--model", str(tmp_path / "nope")])
    assert code == 2 and "does not exist" in err and "Traceback" not in err


def test_invalid_sampling_exits_2(tiny_model_dir):
    code, _, err = run(["chat", "hi", "--model", str(tiny_model_dir), "--top-p", "0"])
    assert code == 2 and "top_p" in err


def test_module_entry_point_help_is_fast_and_lists_commands():
    proc = subprocess.run([sys.executable, "-m", "composite", "--help"], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert proc.returncode == 0
    for command in ("chat", "tool", "code", "exec", "tools", "convert"):
        assert command in proc.stdout
    heavy = subprocess.run([sys.executable, "-c", "import composite.cli, sys; print('torch' in sys.modules)"],
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert heavy.stdout.strip() == "False"  # heavy imports happen where they are used
