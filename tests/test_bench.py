"""The benchmark suite on tiny settings: it runs end to end and its JSON carries every field (no timings asserted)."""

from __future__ import annotations

import io
import json

import pytest

from composite import bench
from composite.cli import main


def test_bench_subcommand_writes_the_table_and_the_json(tiny_model_dir, tmp_path):
    out, err = io.StringIO(), io.StringIO()
    path = tmp_path / "bench.json"
    code = main(["bench", "--quick", "--only", "streaming", "ttft", "sandbox", "--model", str(tiny_model_dir),
                 "--json", str(path)], out, err)
    assert code == 0, err.getvalue()
    data = json.loads(path.read_text())
    machine = data["machine"]
    assert {"cpu", "cores", "torch", "device", "memory_bytes", "python"} <= set(machine)
    assert machine["cores"] >= 1 and machine["device"] in ("cpu", "cuda")
    streaming = data["streaming"]
    assert streaming["tokens"] >= 1 and streaming["app_tokens_per_s"] > 0 and streaming["raw_tokens_per_s"] > 0
    # the tiny GLM runs on the NumPy engine in the app: measured beside torch, TTFT on the app's engine
    assert data["app_engine"] == "numpy" and streaming["app_engine_tokens_per_s"] > 0
    ttft = data["ttft"]
    assert len(ttft["prompt_tokens_by_turn"]) == bench.QUICK.turns
    assert ttft["prompt_tokens_by_turn"][-1] > ttft["prompt_tokens_by_turn"][0]  # the conversation grew
    for variant in ("reuse", "no_reuse"):
        assert ttft[variant]["turn1_ms"] > 0 and ttft[variant]["last_turn_ms"] > 0
    sandbox = data["sandbox"]
    assert set(sandbox["ready_s"]) == {"raw", "full"} and set(sandbox["print1_round_trip_ms"]) == {"raw", "full"}
    table = out.getvalue()
    assert table.startswith("Machine: ") and "app path vs raw `model.generate`" in table
    assert "app path on the numpy engine" in table and "time to first token (numpy engine)" in table
    assert "with prefix reuse" in table and "raw jupyter_client" in table
    assert "[bench] -- ttft" in err.getvalue()  # progress while it runs


def test_import_profile_reads_python_importtime():
    top = bench._import_profile(["-c", "import json"])
    assert any(item["module"] == "json" for item in top)
    assert all(item["seconds"] >= 0 for item in top)


def test_unknown_section_is_a_clear_error():
    from composite.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown bench section"):
        bench.run(bench.QUICK, sections=("warp",))


def test_the_table_shows_every_section_it_is_given():
    result = {
        "machine": {"cpu": "X", "cores": 2, "memory_bytes": 2**30, "load_average": [1.0, 1, 1], "torch": "2",
                    "device": "cpu", "torch_threads": 1, "python": "3.11"},
        "date": "today",
        "app": {"main_py": {"health_s": 1.0, "first_page_s": 4.0, "rss_mib": 400.0},
                "bare_streamlit": {"health_s": 1.0, "first_page_s": 2.0, "rss_mib": 100.0}, "runs": 1,
                "first_page_ratio": 2.0},
        "cli": {"runs": 1, "chat_hi_s": 3.0, "import_torch_s": 1.5, "python_s": 0.1, "chat_over_import_torch": 2.0,
                "slowest_imports": [{"module": "torch", "seconds": 1.4}]},
    }
    table = bench.format_table(result)
    assert "| 4.0 | 2.0 | 2.00 |" in table and "| 400 | 100 | 4.00 |" in table
    assert "| 3.00 | 1.50 | 2.00 | < 2 s |" in table and "torch 1.40" in table
