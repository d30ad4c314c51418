"""Batch runs recorded in the history store, and `python -m composite runs` / `runs compare A B`."""

from __future__ import annotations

import hashlib
import io
import json

from composite.cli import main
from composite.store import open_store


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, out, err, io.StringIO(""))
    return code, out.getvalue(), err.getvalue()


def _batch_file(tmp_path):
    batch = tmp_path / "prompts.jsonl"
    batch.write_text(
        '{"prompt": "6*7?", "expect": {"name": "calculator", "arguments": {"expression": "6*7"}}}\n'
        '{"prompt": "time?", "expect": {"name": "current_time", "arguments": {"timezone": "UTC"}}}\n'
        '{"prompt": "hello"}\n'
    )
    return batch


def _scripted_run(tmp_path, script, seed):
    from composite.agent import Agent
    from composite.batch import run_batch
    from composite.messages import SamplingParams
    from tests.helpers import ScriptedBackend
    from tools import build_registry

    registry, _ = build_registry()
    agent = Agent(ScriptedBackend(list(script)), "tool", registry)
    err = io.StringIO()
    assert run_batch(agent, [], SamplingParams(temperature=0, seed=seed), _batch_file(tmp_path), tmp_path / "o.jsonl",
                     io.StringIO(), err, settings={"max_rounds": 5}) == 0
    line = next(l for l in err.getvalue().splitlines() if l.startswith("recorded run "))
    return line.split()[2]


GOOD = ['calculator\n```python\ntool_call(expression="6*7")\n```', "\n42",
        'current_time\n```python\ntool_call(timezone="UTC")\n```', "\nNoon.", "\nHi!"]
WORSE = ['calculator\n```python\ntool_call(expression="6*7")\n```', "\n42",
         'current_time\n```python\ntool_call(timezone="Asia/Tokyo")\n```', "\nLate.", "\nHi!"]


def test_a_batch_run_is_recorded_with_hash_params_cases_and_summary(tmp_path):
    run_id = _scripted_run(tmp_path, GOOD, seed=1)
    store = open_store()
    info, cases = store.get_run(run_id)
    store.close()
    assert info.prompts_sha256 == hashlib.sha256(_batch_file(tmp_path).read_bytes()).hexdigest()
    assert info.params["seed"] == 1 and info.params["temperature"] == 0 and info.params["max_rounds"] == 5
    assert info.summary == {"prompts": 3, "scored": 2, "tool_name_accuracy": 1.0, "exact_arguments_accuracy": 1.0}
    assert [c["prompt"] for c in cases] == ["6*7?", "time?", "hello"]
    assert cases[1]["call"] == {"name": "current_time", "arguments": {"timezone": "UTC"}}
    assert info.model == "ScriptedBackend"


def test_runs_lists_newest_first_and_compare_shows_the_differing_cases(tmp_path):
    first = _scripted_run(tmp_path, GOOD, seed=1)
    second = _scripted_run(tmp_path, WORSE, seed=2)
    code, out, _ = run(["runs"])
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith(second) and lines[1].startswith(first)
    assert "exact arguments 50.0 %" in lines[0] and "exact arguments 100.0 %" in lines[1]
    code, out, _ = run(["runs", "compare", first[:6], second])
    assert code == 0
    assert "- time?" in out and "current_time(timezone='UTC')  [exact]" in out
    assert "current_time(timezone='Asia/Tokyo')  [name only]" in out
    assert "6*7?" not in out.split("B  ")[-1].split("\n", 1)[1]  # identical cases are not listed
    assert "parameter seed: A 1  B 2" in out and "1 of 3 cases differ" in out
    code, out, _ = run(["runs", "compare", first, second, "--json"])
    data = json.loads(out)
    assert [d["prompt"] for d in data["differences"]] == ["time?"]
    code, out, _ = run(["runs", "compare", first, first])
    assert "no differences in 3 cases" in out


def test_runs_show_and_unknown_ids_are_clear(tmp_path):
    run_id = _scripted_run(tmp_path, GOOD, seed=None)
    code, out, _ = run(["runs", "show", run_id])
    assert code == 0 and "calculator(expression='6*7')  exact" in out
    code, _, err = run(["runs", "compare", run_id, "abcdef"])
    assert code == 2 and "run 'abcdef' not found" in err
    code, _, err = run(["runs", "compare", run_id])
    assert code == 2 and "takes 2 run id(s)" in err
    code, out, _ = run(["runs"])
    assert code == 0 and out.startswith(run_id)


def test_empty_history_says_how_to_record_a_run():
    code, out, _ = run(["runs"])
    assert code == 0 and "no recorded runs" in out and "--batch" in out


def test_an_unusable_store_costs_the_record_not_the_batch(tmp_path, monkeypatch):
    data = tmp_path / "broken"
    data.mkdir()
    (data / "composite.db").write_bytes(b"garbage, not SQLite" * 100)
    monkeypatch.setenv("COMPOSITE_DATA_DIR", str(data))
    from composite.agent import Agent
    from composite.batch import run_batch
    from composite.messages import SamplingParams
    from tests.helpers import ScriptedBackend
    from tools import build_registry

    registry, _ = build_registry()
    err = io.StringIO()
    code = run_batch(Agent(ScriptedBackend(list(GOOD)), "tool", registry), [], SamplingParams(), _batch_file(tmp_path),
                     tmp_path / "o.jsonl", io.StringIO(), err)
    assert code == 0 and len((tmp_path / "o.jsonl").read_text().splitlines()) == 3
    assert "the run was not recorded" in err.getvalue() and "corrupt" in err.getvalue()


def test_the_cli_batch_with_a_real_model_records_the_run(tmp_path, tiny_model_dir):
    batch = tmp_path / "b.jsonl"
    batch.write_text('{"prompt": "weather in Oslo?", "expect": {"name": "get_weather"}}\n')
    code, _, err = run(["tool", "--batch", str(batch), "--out", str(tmp_path / "r.jsonl"), "--model",
                        str(tiny_model_dir), "--max-new-tokens", "4", "--temperature", "0", "--max-rounds", "1"])
    assert code == 0, err
    code, out, _ = run(["runs", "--json"])
    (recorded,) = [json.loads(line) for line in out.splitlines()]
    assert recorded["model"] == "tiny-random" and recorded["backend"] == "local"
    assert recorded["params"]["max_new_tokens"] == 4 and recorded["params"]["max_rounds"] == 1
    assert recorded["summary"]["prompts"] == 1
    code, _, err = run(["tool", "--batch", str(batch), "--out", str(tmp_path / "r.jsonl"), "--model",
                        str(tiny_model_dir), "--max-new-tokens", "4", "--no-record"])
    assert code == 0 and "recorded run" not in err
    assert len(run(["runs", "--json"])[1].splitlines()) == 1


def test_the_runs_page_charts_accuracy_and_compares_two_runs(tmp_path):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    first = _scripted_run(tmp_path, GOOD, seed=1)
    second = _scripted_run(tmp_path, WORSE, seed=2)
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "pages" / "runs.py"), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    charts = at.get("vega_lite_chart")
    assert len(charts) == 1 and '"bar"' in charts[0].proto.spec
    raw = charts[0].proto.SerializeToString()  # the chart's data (Arrow) holds a bar per run and measure
    assert first.encode() in raw and second.encode() in raw and b"exact arguments %" in raw
    table = at.dataframe[0].value
    assert list(table["run"]) == [second, first] and list(table["exact arguments %"]) == [50.0, 100.0]
    assert at.selectbox(key="runs_a").value == first and at.selectbox(key="runs_b").value == second
    differences = at.dataframe[1].value
    assert list(differences["prompt"]) == ["time?"]
    assert list(differences["A"]) == ["exact"] and list(differences["B"]) == ["name only"]
    assert any("seed" in c.value for c in at.caption)
    at.selectbox(key="runs_a").set_value(second).run()
    assert any("No differences in 3 cases" in s.value for s in at.success)


def test_the_runs_page_without_runs_says_how_to_record_one():
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "pages" / "runs.py"), default_timeout=60)
    at.run()
    assert not at.exception and "--batch" in at.info[0].value
