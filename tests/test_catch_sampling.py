"""Sampling honours its parameters: top_p keeps only the nucleus, temperature and seed matter.

The nucleus is computed here from the model's own logits (an independent oracle), then the runtime
samples one token for many seeds: a runtime that ignored top_p would leave the nucleus almost surely.
"""

from __future__ import annotations

import pytest

from composite.messages import Message, SamplingParams

SEEDS = range(60)


def _first_step_probs(runtime, prompt: list[int], temperature: float):
    import torch

    with torch.inference_mode():
        logits = runtime.model(input_ids=torch.tensor([prompt])).logits[0, -1].float()
    return torch.softmax(logits / temperature, dim=-1)


def _nucleus(probs, top_p: float) -> set[int]:
    """Smallest set of most likely tokens whose mass reaches top_p."""
    import torch

    ordered, order = torch.sort(probs, descending=True)
    before = torch.cumsum(ordered, dim=-1) - ordered
    return {int(order[i]) for i in range(len(order)) if float(before[i]) < top_p}


def _samples(runtime, prompt, temperature, top_p) -> list[int]:
    out = []
    for seed in SEEDS:
        params = SamplingParams(max_new_tokens=1, temperature=temperature, top_p=top_p, seed=seed)
        out.extend(runtime.generate_ids(prompt, params))
    return out


@pytest.fixture(scope="module")
def prompt(tiny_runtime) -> list[int]:
    return tiny_runtime.dialect.render([Message("user", "hello")])


def test_top_p_never_samples_outside_the_nucleus(tiny_runtime, prompt):
    probs = _first_step_probs(tiny_runtime, prompt, 1.0)
    nucleus = _nucleus(probs, 0.05)
    assert 2 <= len(nucleus) < probs.numel() // 4  # a real cut: several tokens in, most tokens out
    samples = _samples(tiny_runtime, prompt, 1.0, 0.05)
    assert set(samples) <= nucleus
    assert len(set(samples)) > 1  # still sampling inside the nucleus, not greedy


def test_without_top_p_the_same_seeds_leave_that_nucleus(tiny_runtime, prompt):
    """The control for the test above: the seeds and temperature alone would not stay inside."""
    nucleus = _nucleus(_first_step_probs(tiny_runtime, prompt, 1.0), 0.05)
    assert not set(_samples(tiny_runtime, prompt, 1.0, 1.0)) <= nucleus


def test_a_dominant_token_under_a_small_top_p_is_the_only_choice(tiny_runtime, prompt):
    probs = _first_step_probs(tiny_runtime, prompt, 0.05)  # sharp: the top token holds most of the mass
    top = int(probs.argmax())
    top_p = float(probs[top]) * 0.9
    assert _nucleus(probs, top_p) == {top}
    assert set(_samples(tiny_runtime, prompt, 0.05, top_p)) == {top}


def test_temperature_changes_the_distribution(tiny_runtime, prompt):
    sharp = _samples(tiny_runtime, prompt, 0.05, 1.0)
    flat = _samples(tiny_runtime, prompt, 1.0, 1.0)
    assert len(set(sharp)) < len(set(flat))
