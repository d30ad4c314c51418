"""The NumPy engine (composite/backends/numpy_glm.py): the same logits and greedy answers as transformers,
its own cache and sampling, a clear refusal for models it cannot run, and no torch import on its path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from composite.backends.local import EMBEDDED_MODEL_DIR, load_model
from composite.backends.numpy_glm import NumpyGlm, NumpyRuntime
from composite.backends.prefix_cache import conversation
from composite.errors import ConfigError
from composite.messages import Message, SamplingParams
from composite.prompts import system_prompt

ROOT = Path(__file__).resolve().parents[1]
GREEDY = SamplingParams(temperature=0, max_new_tokens=48)


def _torch_logits(folder: Path, ids: list[int]) -> np.ndarray:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, local_files_only=True).eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


@pytest.mark.parametrize("which,block", [("tiny", 128), ("embedded", 128), ("embedded", 16)])
def test_logits_match_transformers_in_prefill_decode_and_after_a_crop(which, block, tiny_model_dir):
    folder = tiny_model_dir if which == "tiny" else EMBEDDED_MODEL_DIR
    model = NumpyGlm(folder)
    model.QUERY_BLOCK = block  # 16: a prefill of 90 tokens runs as 6 causal blocks
    ids = np.random.default_rng(3).integers(0, model.vocab_size - 16, 120).tolist()
    want = _torch_logits(folder, ids)
    scale = float(np.abs(want).max())
    cache = model.new_cache()
    got = model.forward(ids[:90], cache)  # prefill
    assert np.abs(got - want[89]).max() <= 1e-4 * max(1.0, scale)
    for i in range(90, 110):  # one token at a time against the cache
        got = model.forward([ids[i]], cache)
        assert np.abs(got - want[i]).max() <= 1e-4 * max(1.0, scale), i
    assert cache.get_seq_length() == 110
    cache.crop(-15)  # back to 95 tokens, then a different continuation of the same prefix
    assert cache.get_seq_length() == 95
    got = model.forward(ids[95:100], cache)
    assert np.abs(got - want[99]).max() <= 1e-4 * max(1.0, scale)
    with pytest.raises(ValueError):
        cache.crop(-1000)


def _conversations() -> list[tuple[str, list[Message]]]:
    return [
        ("chat", [Message("system", system_prompt("chat")), Message("user", "hi, who are you?")]),
        ("tool", [Message("system", system_prompt("tool")), Message("user", "What is the weather in Oslo?")]),
        ("tool", [Message("system", system_prompt("tool")), Message("user", "what's 12 times 34?")]),
        ("code", [Message("system", system_prompt("code")), Message("user", "Plot y = x squared")]),
        ("code", [Message("system", system_prompt("code")), Message("user", "Reverse the string 'composite'")]),
    ]


@pytest.fixture(scope="module")
def engines():
    return load_model(None, device="cpu", engine="torch"), load_model(None, engine="numpy")


def test_greedy_answers_of_the_embedded_model_are_identical_to_the_torch_engine(engines):
    from composite.embedded.data import tool_schemas

    torch_rt, numpy_rt = engines
    assert isinstance(numpy_rt, NumpyRuntime) and numpy_rt.info.engine == "numpy"
    assert numpy_rt.info.parameters == torch_rt.info.parameters
    schemas = tool_schemas()
    for mode, messages in _conversations():
        tools = schemas if mode == "tool" else None
        ids, _ = torch_rt.prompt_ids(messages, tools, GREEDY)
        stop = torch_rt.dialect.stop_ids()
        want = list(torch_rt.generate_ids(ids, GREEDY, stop))
        got = list(numpy_rt.generate_ids(ids, GREEDY, stop))
        assert got == want, (mode, messages[-1].content)
        assert len(got) > 3


def test_a_second_turn_reuses_the_cache_and_answers_as_a_full_prefill_does(engines):
    _, rt = engines
    messages = [Message("system", system_prompt("chat")), Message("user", "hello")]
    with conversation("numpy-reuse"):
        first = [e for e in rt.stream_turn(messages, None, GREEDY)][-1].turns[-1].content
        messages += [Message("assistant", first), Message("user", "and what can you do?")]
        reused = [e for e in rt.stream_turn(messages, None, GREEDY)][-1]
        prefilled_with_reuse = rt.last_prefill_tokens
    rt.prefix_cache.drop("numpy-reuse")
    full = [e for e in rt.stream_turn(messages, None, GREEDY)][-1]
    assert 0 < prefilled_with_reuse < rt.last_prefill_tokens  # the shared prefix was not recomputed
    assert [t.text for t in reused.turns] == [t.text for t in full.turns]
    assert reused.completion_tokens == full.completion_tokens > 0


def test_sampling_honours_seed_top_p_and_the_repetition_penalty(engines):
    _, rt = engines
    logits = np.array([3.0, 2.9, 0.0, -1.0], dtype=np.float32)
    seen = np.array([True, False, False, False])
    draws = lambda params, seed: [rt._pick_np(np, logits, np.zeros(4, bool), params, np.random.default_rng(seed + i))
                                  for i in range(200)]
    wide = draws(SamplingParams(temperature=1.0, top_p=1.0), 0)
    assert {0, 1, 2} <= set(wide)  # without a nucleus, unlikely tokens still appear
    # probabilities 0.506, 0.457, 0.025, 0.009: a nucleus of 0.9 is the top two, one of 0.5 the top one
    assert set(draws(SamplingParams(temperature=1.0, top_p=0.9), 0)) == {0, 1}
    assert set(draws(SamplingParams(temperature=1.0, top_p=0.5), 0)) == {0}
    assert draws(SamplingParams(temperature=1.0, top_p=0.9), 5) == draws(SamplingParams(temperature=1.0, top_p=0.9), 5)
    greedy = SamplingParams(temperature=0, repetition_penalty=1.2)
    assert rt._pick_np(np, logits, seen, greedy, None) == 1  # 3.0 / 1.2 < 2.9: the seen token loses
    assert rt._pick_np(np, logits, np.zeros(4, bool), greedy, None) == 0


def test_engine_numpy_refuses_what_it_cannot_run_with_the_reason(tmp_path, tiny_model_dir):
    with pytest.raises(ConfigError, match="float32"):
        load_model(tiny_model_dir, dtype="float16", engine="numpy")
    with pytest.raises(ConfigError, match="on the CPU"):
        load_model(tiny_model_dir, device="cuda", engine="numpy")
    other = tmp_path / "no-marker"
    other.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.model"):
        (other / name).write_bytes((tiny_model_dir / name).read_bytes())
    with pytest.raises(ConfigError, match="dialect chatglm3"):
        load_model(other, engine="numpy")
    with pytest.raises(ConfigError, match="unknown engine 'jax'"):
        load_model(tiny_model_dir, engine="jax")
    # auto falls back to torch where NumPy cannot run, and picks NumPy where it can
    assert load_model(tiny_model_dir, dtype="float16", device="cpu", engine="auto").info.engine == "torch"
    assert load_model(tiny_model_dir, engine="auto").info.engine == "numpy"


def test_the_cli_answers_without_importing_torch_and_leaves_the_blas_setting_to_children(tmp_path):
    script = (
        "import io, os, sys\n"
        "from composite.cli import main\n"
        "out, err = io.StringIO(), io.StringIO()\n"
        "rc = main(['chat', 'hi', '--temperature', '0', '--max-new-tokens', '16'], out=out, err=err)\n"
        "print(json.dumps({'rc': rc, 'out': out.getvalue(), 'err': err.getvalue(),\n"
        "                  'torch': 'torch' in sys.modules, 'transformers': 'transformers' in sys.modules,\n"
        "                  'blas_env': os.environ.get('OPENBLAS_NUM_THREADS')}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "COMPOSITE_ENGINE")}
    done = subprocess.run([sys.executable, "-c", "import json\n" + script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["rc"] == 0 and report["out"].strip()
    assert "NumPy engine" in report["err"]
    assert report["torch"] is False and report["transformers"] is False
    assert report["blas_env"] is None  # set only around NumPy's first import, never left for child processes
