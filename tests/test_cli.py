"""The command line: one-shot and interactive chat, JSON transcripts, tool/batch runs and bad input."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path


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


def test_tools_lists_builtins_and_user_tool_errors(tmp_path, monkeypatch):
    (tmp_path / "oops.py").write_text("this is not python\n")
    monkeypatch.setenv("TOOLS_PATH", str(tmp_path))
    code, out, _ = run(["tools", "--json"])
    rows = [json.loads(line) for line in out.splitlines()]
    names = [r["name"] for r in rows if "name" in r]
    assert code == 0 and {"calculator", "get_weather", "current_time", "random_number_generator"} <= set(names)
    assert any("oops.py" in r.get("load_error", "") for r in rows)
    assert rows[0]["parameters"]["type"] == "object"


def test_tool_unknown_tool_name_exits_2(tiny_model_dir):
    code, _, err = run(["tool", "hi", "--model", str(tiny_model_dir), "--tools", "calculator,nope"])
    assert code == 2 and "nope" in err and "calculator" in err


def test_batch_scores_expected_calls_with_a_scripted_model(tmp_path):
    from composite.agent import Agent
    from composite.batch import run_batch
    from composite.messages import SamplingParams
    from tests.helpers import ScriptedBackend
    from tools import build_registry

    batch = tmp_path / "prompts.jsonl"
    batch.write_text(
        '{"prompt": "6*7?", "expect": {"name": "calculator", "arguments": {"expression": "6*7"}}}\n'
        '{"prompt": "time?", "expect": {"name": "current_time", "arguments": {"timezone": "UTC"}}}\n'
        '{"prompt": "hello"}\n'
    )
    script = [
        'calculator\n```python\ntool_call(expression="6*7")\n```', "\n42",
        'current_time\n```python\ntool_call(timezone="Asia/Tokyo")\n```', "\nIt is late.",
        "\nHi!",
    ]
    registry, _ = build_registry()
    agent = Agent(ScriptedBackend(script), "tool", registry)
    out_file, out, err = tmp_path / "results.jsonl", io.StringIO(), io.StringIO()
    assert run_batch(agent, [], SamplingParams(temperature=0), batch, out_file, out, err) == 0
    results = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [(r.get("name_correct"), r.get("arguments_correct")) for r in results] == [(True, True), (True, False), (None, None)]
    summary = json.loads(err.getvalue().split("summary: ")[1])
    assert summary == {"prompts": 3, "scored": 2, "tool_name_accuracy": 1.0, "exact_arguments_accuracy": 0.5}


def test_batch_file_errors_are_clear(tmp_path, tiny_model_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"nope": 1}\n')
    code, _, err = run(["tool", "--batch", str(bad), "--model", str(tiny_model_dir)])
    assert code == 2 and "bad.jsonl:2" in err and "prompt" in err


def test_exec_runs_stdin_in_the_sandbox_and_prints_ordered_json_lines():
    code, out, err = run(["exec", "--timeout", "20"], stdin="import sys\nprint('out')\nprint('err', file=sys.stderr)\n6*7\n")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0, err
    assert [r["kind"] for r in rows[:-1]] == ["stdout", "stderr", "result"]
    assert rows[2]["text"] == "42" and rows[-1]["status"] == "ok" and rows[-1]["isolation"] == "full"


def test_exec_reports_a_timeout_with_its_exit_code():
    code, out, _ = run(["exec", "--timeout", "1"], stdin="while True: pass\n")
    final = json.loads(out.splitlines()[-1])
    assert code == 2 and final["status"] == "timeout" and "timed out" in final["message"]


def test_code_runs_the_loop_with_a_fresh_sandbox(tiny_model_dir):
    code, out, err = run(["code", "what is 2**10?", "--model", str(tiny_model_dir), "--temperature", "0",
                          "--max-new-tokens", "4", "--json"])
    assert code == 0, err
    assert "sandbox: full" in err
    assert [json.loads(line)["role"] for line in out.splitlines()][:2] == ["system", "user"]
