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


# ---------------------------------------------------------------------------------------------------
# the sampling step itself on crafted logits: each parameter has a visible, exact effect


def _pick(logits, params, seen=(), seed=0):
    import torch

    from composite.backends.local import LocalRuntime

    mask = torch.zeros(len(logits), dtype=torch.bool)
    mask[list(seen)] = True
    generator = None if params.greedy else torch.Generator().manual_seed(seed)
    return LocalRuntime._pick(torch.tensor(logits, dtype=torch.float32), mask, params, generator)


def test_greedy_takes_the_largest_logit():
    assert _pick([0.1, 3.0, 2.9, -1.0], SamplingParams(temperature=0)) == 1


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits_of_seen_tokens():
    greedy = SamplingParams(temperature=0, repetition_penalty=2.0)
    assert _pick([3.0, 2.0, 0.0], greedy, seen=[0]) == 1  # 3.0 / 2 = 1.5 < 2.0
    assert _pick([3.0, 2.0, 0.0], greedy, seen=[1]) == 0  # unseen tokens keep their logit
    # a seen negative logit is pushed further down: -0.5 * 2 = -1.0 < -0.9
    assert _pick([-0.5, -0.9, -5.0], greedy, seen=[0]) == 1
    assert _pick([-0.5, -0.9, -5.0], SamplingParams(temperature=0, repetition_penalty=1.0), seen=[0]) == 0
    # a penalty below 1 favours seen tokens
    assert _pick([1.0, 1.5], SamplingParams(temperature=0, repetition_penalty=0.5), seen=[0]) == 0


def test_top_p_keeps_the_smallest_set_that_reaches_it():
    logits = [2.0, 1.0, 0.5, 0.0]  # probabilities about 0.57, 0.21, 0.13, 0.08
    for top_p, allowed in ((0.5, {0}), (0.7, {0, 1}), (0.85, {0, 1, 2}), (1.0, {0, 1, 2, 3})):
        picks = {_pick(logits, SamplingParams(temperature=1.0, top_p=top_p), seed=s) for s in range(200)}
        assert picks == allowed, (top_p, picks)


def test_temperature_scales_the_logits_before_sampling():
    logits = [1.0, 0.0]  # p(0) = 0.73 at temperature 1; 0.99995 at temperature 0.1
    cold = [_pick(logits, SamplingParams(temperature=0.1), seed=s) for s in range(200)]
    warm = [_pick(logits, SamplingParams(temperature=1.0), seed=s) for s in range(200)]
    assert cold.count(1) <= 2 and 20 <= warm.count(1) <= 90


def test_the_seed_decides_the_sample():
    logits = [0.0] * 50
    params = SamplingParams(temperature=1.0)
    assert _pick(logits, params, seed=3) == _pick(logits, params, seed=3)
    assert len({_pick(logits, params, seed=s) for s in range(20)}) > 5
