"""Model runtime: loading errors, generation (stop tokens, limits, greedy vs seeded sampling), lock and trimming."""

from __future__ import annotations

import json
import threading

import pytest

from composite.errors import ConfigError, ModelLoadError
from composite.events import ContextTrimmed, TextDelta, TurnEnd, Waiting
from composite.messages import Message, SamplingParams
from composite.runtime import fit_history, load_model, resolve_model_path

GREEDY = SamplingParams(max_new_tokens=12, temperature=0)


def _end(events) -> TurnEnd:
    ends = [e for e in events if isinstance(e, TurnEnd)]
    assert len(ends) == 1
    return ends[0]


def test_model_facts(tiny_runtime):
    info = tiny_runtime.info
    assert (info.device, info.dtype, info.dialect, info.context_length) == ("cpu", "float32", "chatglm3", 512)
    assert info.parameters == sum(p.numel() for p in tiny_runtime.model.parameters())


def test_greedy_is_deterministic_and_temperature_zero_never_crashes(tiny_runtime):
    prompt = tiny_runtime.dialect.render([Message("user", "hello")])
    a = list(tiny_runtime.generate_ids(prompt, GREEDY))
    b = list(tiny_runtime.generate_ids(prompt, GREEDY))
    assert a == b and len(a) == 12


def test_seeded_sampling_is_reproducible_and_differs_from_greedy(tiny_runtime):
    prompt = tiny_runtime.dialect.render([Message("user", "hello")])
    params = SamplingParams(max_new_tokens=24, temperature=1.5, top_p=1.0, seed=7)
    a = list(tiny_runtime.generate_ids(prompt, params))
    b = list(tiny_runtime.generate_ids(prompt, params))
    other = list(tiny_runtime.generate_ids(prompt, SamplingParams(max_new_tokens=24, temperature=1.5, top_p=1.0, seed=8)))
    greedy = list(tiny_runtime.generate_ids(prompt, SamplingParams(max_new_tokens=24, temperature=0)))
    assert a == b
    assert a != other and a != greedy  # the seed matters, and sampling is not greedy


def test_generation_ends_at_a_stop_token(tiny_runtime):
    prompt = tiny_runtime.dialect.render([Message("user", "hello")])
    first = list(tiny_runtime.generate_ids(prompt, GREEDY))
    stop_at = first[3]
    out = list(tiny_runtime.generate_ids(prompt, GREEDY, stop_ids={stop_at}))
    assert out == first[: first.index(stop_at) + 1]


def test_max_length_bounds_prompt_plus_output(tiny_runtime):
    prompt = tiny_runtime.dialect.render([Message("user", "hello")])
    params = SamplingParams(max_new_tokens=100, max_length=len(prompt) + 5, temperature=0)
    assert len(list(tiny_runtime.generate_ids(prompt, params))) == 5


def test_stream_turn_streams_text_that_adds_up(tiny_runtime):
    events = list(tiny_runtime.stream_turn([Message("user", "hi")], None, GREEDY))
    end = _end(events)
    streamed = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert end.completion_tokens == 12 and end.finish_reason == "length"
    assert streamed.strip() == end.turns[0].content or streamed == end.turns[0].text


def test_stop_flag_ends_generation_promptly(tiny_runtime):
    stop = threading.Event()
    events = []
    for event in tiny_runtime.stream_turn([Message("user", "hi")], None, SamplingParams(max_new_tokens=400, temperature=0), stop):
        events.append(event)
        if isinstance(event, TextDelta):
            stop.set()
    end = _end(events)
    assert end.finish_reason == "cancelled" and end.completion_tokens < 5


def test_a_second_session_waits_for_the_lock(tiny_runtime):
    first = tiny_runtime.stream_turn([Message("user", "a")], None, GREEDY)
    next(e for e in first if isinstance(e, TextDelta))  # first session now holds the lock
    stop = threading.Event()
    second = tiny_runtime.stream_turn([Message("user", "b")], None, GREEDY, stop)
    assert isinstance(next(second), Waiting)
    stop.set()
    assert _end(list(second)).finish_reason == "cancelled"
    first.close()  # abandoning a stream (Streamlit stop) releases the lock
    assert not tiny_runtime.busy


def test_context_overflow_drops_oldest_turns_and_keeps_system(tiny_runtime):
    history = [Message("system", "be brief")]
    for i in range(40):
        history += [Message("user", f"question {i} " * 10), Message("assistant", f"answer {i} " * 10)]
    history.append(Message("user", "last question"))
    params = SamplingParams(max_new_tokens=8, max_length=200, temperature=0)
    events = list(tiny_runtime.stream_turn(history, None, params))
    trimmed = [e for e in events if isinstance(e, ContextTrimmed)]
    assert trimmed and trimmed[0].dropped_messages > 0 and "dropped" in trimmed[0].message
    assert trimmed[0].prompt_tokens <= trimmed[0].budget
    assert _end(events).completion_tokens == 8  # still answers


def test_fit_history_cuts_a_single_huge_message_instead_of_refusing():
    count = lambda ms: sum(len(m.content) for m in ms)  # one token per character
    messages = [Message("system", "sys"), Message("user", "x" * 100)]
    fitted, dropped, cut = fit_history(messages, count, 53)
    assert fitted[0].content == "sys" and fitted[1].content == "x" * 50 and cut == 50 and dropped == 0


def test_fit_history_drops_whole_turns_oldest_first():
    count = lambda ms: sum(len(m.content) for m in ms)
    messages = [Message("system", "s"), Message("user", "aaaa"), Message("assistant", "bbbb"), Message("user", "cc")]
    fitted, dropped, cut = fit_history(messages, count, 4)
    assert [m.content for m in fitted] == ["s", "cc"] and dropped == 2 and cut == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
    ],
)
def test_invalid_sampling_values_are_clear_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SamplingParams(**kwargs)


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "nope")


def test_folder_without_weights_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "glm"}))
    with pytest.raises(ModelLoadError, match="no weights"):
        load_model(tmp_path)


def test_folder_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(tmp_path)


def test_unknown_architecture_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-arch"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelLoadError, match=str(tmp_path)):
        load_model(tmp_path)


def test_quantize_without_cuda_is_a_clear_error(tiny_model_dir):
    with pytest.raises(ModelLoadError, match="needs a CUDA GPU"):
        load_model(tiny_model_dir, device="cpu", quantize=4)


def test_model_path_comes_from_environment(monkeypatch):
    assert resolve_model_path(None) is None
    monkeypatch.setenv("MODEL_PATH", "/models/chatglm3-6b")
    assert resolve_model_path(None) == "/models/chatglm3-6b"
    assert resolve_model_path("/explicit") == "/explicit"


def test_an_abandoned_stream_leaves_autograd_as_it_was(tiny_runtime):
    """Inference mode must not leak into the consumer's thread between tokens or after a break
    (it once did, and a later training step in the same thread failed: no grad_fn)."""
    import torch

    stream = tiny_runtime.generate_ids([5, 6, 7, 8], SamplingParams(temperature=0, max_new_tokens=5))
    next(stream)
    assert not torch.is_inference_mode_enabled() and torch.is_grad_enabled()
    del stream
    weight = torch.ones(2, requires_grad=True)
    (weight * 2).sum().backward()
    assert weight.grad is not None
