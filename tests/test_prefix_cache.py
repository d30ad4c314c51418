"""Prefix KV-cache reuse: same greedy answers with and without it, less prefill with it, safe fallbacks.

The conversations run through the agent loop the app uses, on the embedded model, in all three
modes (code mode in the real sandbox); the cache's bounds and keys are checked on real caches.
"""

from __future__ import annotations

import threading

import pytest

from composite.agent import Agent
from composite.backends.prefix_cache import PrefixCache, conversation
from composite.errors import ConfigError
from composite.messages import Message, SamplingParams
from composite.prompts import system_prompt

GREEDY = SamplingParams(temperature=0, max_new_tokens=120)
QUESTIONS = {
    "chat": ["Hello!", "What can you do?", "Thanks, bye!"],
    "tool": ["What is 317*24?", "And what is 12*12?"],
    "code": ["Compute 1234+4321 with Python.", "Compute 7*8 with Python."],
}


@pytest.fixture(scope="module")
def embedded():
    from composite.runtime import load_model

    return load_model(None, device="cpu")


def _converse(runtime, mode, reuse: bool, sandbox=None):
    """Run the mode's questions as one growing conversation: the history, and for every generation
    (several per question in tool and code mode) the tokens it prefilled and its prompt's length."""
    from composite.events import TurnEnd

    runtime.prefix_cache = PrefixCache(8 if reuse else 0)
    history = [Message("system", system_prompt(mode))]
    prefills = []
    agent = Agent(runtime, mode, sandbox=sandbox) if mode == "code" else Agent(runtime, mode)
    for question in QUESTIONS[mode]:
        history.append(Message("user", question))
        for event in agent.run(history, GREEDY):
            if isinstance(event, TurnEnd):
                prefills.append((runtime.last_prefill_tokens, event.prompt_tokens))
    return history, prefills


@pytest.mark.parametrize("mode", ["chat", "tool", "code"])
def test_greedy_answers_are_identical_with_and_without_reuse(embedded, mode):
    if mode == "code":
        from composite.sandbox import Sandbox

        with Sandbox() as sandbox:
            plain, full = _converse(embedded, mode, False, sandbox)
        with Sandbox() as sandbox:
            reused, partial = _converse(embedded, mode, True, sandbox)
    else:
        plain, full = _converse(embedded, mode, False)
        reused, partial = _converse(embedded, mode, True)
    assert [(m.role, m.metadata, m.content) for m in reused] == [(m.role, m.metadata, m.content) for m in plain]
    assert len(partial) >= len(QUESTIONS[mode]) >= 2  # several generations: later prompts extend earlier ones
    assert all(prefill == prompt for prefill, prompt in full)  # without reuse every prompt is prefilled whole
    # with it the first generation has nothing to reuse, and every later one prefilled less than its prompt
    assert partial[0][0] == partial[0][1]
    assert all(prefill < prompt for prefill, prompt in partial[1:]), partial
    embedded.prefix_cache = PrefixCache()


def test_reuse_prefills_only_the_new_tokens(tiny_runtime):
    tiny_runtime.prefix_cache = PrefixCache()
    params = SamplingParams(temperature=0, max_new_tokens=6)
    first = tiny_runtime.dialect.render([Message("user", "hello")])
    answer = list(tiny_runtime.generate_ids(first, params))
    assert tiny_runtime.last_prefill_tokens == len(first)
    extended = first + answer[:-1] + tiny_runtime.dialect.render([Message("user", "and more")])[2:]
    again = list(tiny_runtime.generate_ids(extended, params))
    held = len(first) + len(answer) - 1  # the last sampled token was never fed to the model
    assert tiny_runtime.last_prefill_tokens == len(extended) - held
    tiny_runtime.prefix_cache = PrefixCache(0)
    assert list(tiny_runtime.generate_ids(extended, params)) == again  # same tokens as a full prefill
    assert tiny_runtime.last_prefill_tokens == len(extended)
    tiny_runtime.prefix_cache = PrefixCache()


def test_a_differing_prefix_falls_back_to_the_shared_part_or_a_full_prefill(tiny_runtime):
    tiny_runtime.prefix_cache = PrefixCache()
    params = SamplingParams(temperature=0, max_new_tokens=4)
    render = tiny_runtime.dialect.render
    before = render([Message("system", "s"), Message("user", "hello there"), Message("assistant", "hi")])
    list(tiny_runtime.generate_ids(before, params))
    edited = render([Message("system", "s"), Message("user", "goodbye"), Message("assistant", "hi")])
    shared = next(i for i, (a, b) in enumerate(zip(before, edited)) if a != b)
    expected = list(PrefixFree(tiny_runtime).generate(edited, params))
    assert list(tiny_runtime.generate_ids(edited, params)) == expected
    assert tiny_runtime.last_prefill_tokens == len(edited) - shared  # only the shared head was reused
    other = render([Message("user", "something else entirely")])
    assert other[:2] == edited[:2]  # only the special prefix tokens are shared
    list(tiny_runtime.generate_ids(other, params))
    assert tiny_runtime.last_prefill_tokens == len(other) - 2
    tiny_runtime.prefix_cache = PrefixCache(min_reuse=3)  # a prefix that short is not worth reusing
    list(tiny_runtime.generate_ids(edited, params))
    list(tiny_runtime.generate_ids(other, params))
    assert tiny_runtime.last_prefill_tokens == len(other)
    tiny_runtime.prefix_cache = PrefixCache()


class PrefixFree:
    """The same runtime with reuse switched off, for an expected output."""

    def __init__(self, runtime):
        self.runtime = runtime

    def generate(self, ids, params):
        saved, self.runtime.prefix_cache = self.runtime.prefix_cache, PrefixCache(0)
        try:
            return list(self.runtime.generate_ids(ids, params))
        finally:
            self.runtime.prefix_cache = saved


def test_conversations_keep_their_own_cache_and_another_turn_in_between_does_not_break_it(tiny_runtime):
    tiny_runtime.prefix_cache = PrefixCache()
    params = SamplingParams(temperature=0, max_new_tokens=4)
    render = tiny_runtime.dialect.render
    a1 = render([Message("user", "first conversation")])
    b1 = render([Message("user", "a second, different one")])
    with conversation("a"):
        out_a = list(tiny_runtime.generate_ids(a1, params))
    with conversation("b"):
        list(tiny_runtime.generate_ids(b1, params))
    a2 = a1 + out_a[:-1] + render([Message("user", "go on")])[2:]
    with conversation("a"):
        got = list(tiny_runtime.generate_ids(a2, params))
    assert tiny_runtime.last_prefill_tokens == len(a2) - (len(a1) + len(out_a) - 1)
    assert got == PrefixFree(tiny_runtime).generate(a2, params)
    tiny_runtime.prefix_cache.drop("a")  # the session ended
    with conversation("a"):
        list(tiny_runtime.generate_ids(a2, params))
    assert tiny_runtime.last_prefill_tokens == len(a2)
    tiny_runtime.prefix_cache = PrefixCache()


def test_a_stopped_generation_leaves_a_cache_that_still_gives_the_same_answers(tiny_runtime):
    tiny_runtime.prefix_cache = PrefixCache()
    render = tiny_runtime.dialect.render
    prompt = render([Message("user", "hello")])
    stop = threading.Event()
    produced = []
    for token in tiny_runtime.generate_ids(prompt, SamplingParams(temperature=0, max_new_tokens=50), stop=stop):
        produced.append(token)
        if len(produced) == 5:
            stop.set()
    assert len(produced) == 5
    follow = prompt + produced[:-1] + render([Message("user", "again")])[2:]
    params = SamplingParams(temperature=0, max_new_tokens=8)
    assert list(tiny_runtime.generate_ids(follow, params)) == PrefixFree(tiny_runtime).generate(follow, params)


def test_bounds_evict_the_least_recently_used(tiny_runtime):
    params = SamplingParams(temperature=0, max_new_tokens=3)
    render = tiny_runtime.dialect.render
    cache = tiny_runtime.prefix_cache = PrefixCache(max_entries=2)
    for key in ("a", "b", "c"):
        with conversation(key):
            list(tiny_runtime.generate_ids(render([Message("user", f"conversation {key}")]), params))
    assert len(cache) == 2
    with conversation("a"):  # evicted: a full prefill
        prompt = render([Message("user", "conversation a")])
        list(tiny_runtime.generate_ids(prompt, params))
    assert tiny_runtime.last_prefill_tokens == len(prompt)
    one = cache.bytes // len(cache)
    tiny_runtime.prefix_cache = PrefixCache(max_entries=8, max_bytes=one * 3 // 2)  # room for one cache
    for key in ("a", "b"):
        with conversation(key):
            list(tiny_runtime.generate_ids(render([Message("user", f"conversation {key}")]), params))
    assert len(tiny_runtime.prefix_cache) == 1 and tiny_runtime.prefix_cache.bytes <= one * 3 // 2
    tiny_runtime.prefix_cache = PrefixCache()


def test_environment_settings_are_checked(monkeypatch):
    from composite.backends.local import _prefix_cache_from_env

    monkeypatch.setenv("COMPOSITE_PREFIX_CACHE", "0")
    monkeypatch.setenv("COMPOSITE_PREFIX_CACHE_MB", "16")
    cache = _prefix_cache_from_env()
    assert (cache.max_entries, cache.max_bytes) == (0, 16 * 2**20)
    monkeypatch.setenv("COMPOSITE_PREFIX_CACHE", "many")
    with pytest.raises(ConfigError, match="COMPOSITE_PREFIX_CACHE must be a whole number"):
        _prefix_cache_from_env()
