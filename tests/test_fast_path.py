"""The GPU fast path (static KV cache + compiled decode step): off with a reason on CPU, and its
static-cache loop — run here uncompiled — gives the same tokens as the eager path. No GPU is lent to
this project's test machine; on CUDA the same loop runs through torch.compile."""

from __future__ import annotations

import threading

import pytest

from composite.backends.local import LocalRuntime
from composite.messages import Message, SamplingParams


@pytest.fixture(scope="module")
def pair(tiny_runtime):
    eager = LocalRuntime(tiny_runtime.model, tiny_runtime.dialect, tiny_runtime.info)
    static = LocalRuntime(tiny_runtime.model, tiny_runtime.dialect, tiny_runtime.info)
    static.fast = True  # the fast loop itself, without the CUDA check (uncompiled on CPU)
    return eager, static


def test_fast_is_refused_on_cpu_with_a_reason(tiny_runtime):
    runtime = LocalRuntime(tiny_runtime.model, tiny_runtime.dialect, tiny_runtime.info)
    runtime.set_fast(True)
    assert runtime.fast is False and "CUDA" in runtime.fast_note
    prompt = runtime.dialect.render([Message("user", "hello")])
    params = SamplingParams(temperature=0, max_new_tokens=6)
    assert list(runtime.generate_ids(prompt, params)) == list(tiny_runtime.generate_ids(prompt, params))


def test_load_model_reads_composite_fast(tiny_model_dir, monkeypatch):
    from composite.backends.local import load_model

    monkeypatch.setenv("COMPOSITE_FAST", "1")
    runtime = load_model(tiny_model_dir, device="cpu")
    assert runtime.fast is False and runtime.fast_note  # asked for, explained, eager on CPU


@pytest.mark.parametrize("text", ["hello", "The weather in Oslo is 12 degrees and cloudy. " * 4])
def test_static_cache_loop_matches_the_eager_path_greedy(pair, text):
    eager, static = pair
    prompt = eager.dialect.render([Message("user", text)])
    params = SamplingParams(temperature=0, max_new_tokens=20)
    expected = list(eager.generate_ids(prompt, params))
    assert list(static.generate_ids(prompt, params)) == expected
    assert list(static.generate_ids(prompt, params)) == expected  # the reused buffer was reset
    assert static.last_prefill_tokens == len(prompt)


def test_static_cache_loop_matches_seeded_sampling_stop_ids_and_limits(pair):
    eager, static = pair
    prompt = eager.dialect.render([Message("user", "hi")])
    sampled = SamplingParams(temperature=1.2, top_p=0.9, seed=5, max_new_tokens=15, repetition_penalty=1.3)
    assert list(static.generate_ids(prompt, sampled)) == list(eager.generate_ids(prompt, sampled))
    greedy = SamplingParams(temperature=0, max_new_tokens=15)
    first = list(eager.generate_ids(prompt, greedy))
    stop_at = {first[4]}
    assert list(static.generate_ids(prompt, greedy, stop_ids=stop_at)) == list(
        eager.generate_ids(prompt, greedy, stop_ids=stop_at))
    tight = SamplingParams(temperature=0, max_new_tokens=100, max_length=len(prompt) + 3)
    assert len(list(static.generate_ids(prompt, tight))) == 3


def test_static_cache_loop_honours_the_stop_flag(pair):
    _, static = pair
    stop = threading.Event()
    out = []
    prompt = static.dialect.render([Message("user", "hi")])
    for token in static.generate_ids(prompt, SamplingParams(temperature=0, max_new_tokens=50), stop=stop):
        out.append(token)
        if len(out) == 3:
            stop.set()
    assert len(out) == 3
