"""Agent loop with a scripted backend: tool rounds, code rounds, approval, manual mode, bounds, stop."""

from __future__ import annotations

import threading
import pytest

from composite.agent import Agent, Decision, pending_call, rounds_used
from composite.errors import ConfigError
from composite.events import (
    ApprovalNeeded,
    Done,
    Notice,
    Observation,
    TextDelta,
    ToolCall,
)
from composite.messages import Message, SamplingParams
from tests.helpers import ScriptedBackend
from tools import ToolRegistry

PARAMS = SamplingParams(temperature=0)


@pytest.fixture
def registry():
    reg = ToolRegistry()

    @reg.register
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    return reg


def _call(name, args):
    return f"{name}\n```python\ntool_call({args})\n```"


def test_tool_round_then_answer(registry):
    backend = ScriptedBackend([_call("add", "a=2, b=3"), "\nThe sum is 5."])
    history = [Message("user", "2+3?")]
    events = list(Agent(backend, "tool", registry).run(history, PARAMS))
    call = next(e for e in events if isinstance(e, ToolCall))
    obs = next(e for e in events if isinstance(e, Observation))
    assert (call.name, call.arguments) == ("add", {"a": 2, "b": 3})
    assert obs.message.content == "5" and obs.ok
    assert [m.role for m in history] == ["user", "assistant", "observation", "assistant"]
    assert history[1].metadata == "add"  # the call keeps its metadata for replay
    assert backend.seen[1][-1].content == "5"  # the model saw the observation
    assert backend.seen_tools[0][0]["name"] == "add"
    assert isinstance(events[-1], Done) and events[-1].reason == "answered"


def test_bad_arguments_become_an_error_observation_and_the_loop_goes_on(registry):
    backend = ScriptedBackend([_call("add", "a=2, b=__import__('os')"), _call("add", "a=2"), "\nSorry."])
    history = [Message("user", "?")]
    events = list(Agent(backend, "tool", registry).run(history, PARAMS))
    errors = [e.message.content for e in events if isinstance(e, Observation)]
    assert errors[0].startswith("Error:") and "literal" in errors[0]
    assert errors[1].startswith("Error:") and "b" in errors[1]
    assert events[-1].reason == "answered"


def test_unknown_tool_names_the_available_ones(registry):
    backend = ScriptedBackend([_call("nope", "x=1"), "\nok"])
    events = list(Agent(backend, "tool", registry).run([Message("user", "?")], PARAMS))
    obs = next(e for e in events if isinstance(e, Observation))
    assert not obs.ok and "add" in obs.message.content


def test_disabled_tool_is_refused(registry):
    backend = ScriptedBackend([_call("add", "a=1, b=1"), "\nok"])
    agent = Agent(backend, "tool", registry, enabled_tools=[])
    events = list(agent.run([Message("user", "?")], PARAMS))
    obs = next(e for e in events if isinstance(e, Observation))
    assert not obs.ok and "not available" in obs.message.content


def test_round_bound_stops_the_loop_and_says_why(registry):
    backend = ScriptedBackend([_call("add", "a=1, b=1")] * 3)
    events = list(Agent(backend, "tool", registry, max_rounds=2).run([Message("user", "loop")], PARAMS))
    assert sum(isinstance(e, Observation) for e in events) == 2
    notice = next(e for e in events if isinstance(e, Notice))
    assert "stopped after 2" in notice.message and events[-1].reason == "round_limit"


def test_ask_policy_pauses_then_resumes_with_approval(registry):
    backend = ScriptedBackend([_call("add", "a=1, b=2"), "\nIt is 3."])
    history = [Message("user", "1+2")]
    agent = Agent(backend, "tool", registry, policy="ask")
    events = list(agent.run(history, PARAMS))
    assert isinstance(events[-2], ApprovalNeeded) and events[-1].reason == "awaiting_approval"
    assert pending_call(history) is not None and not any(isinstance(e, Observation) for e in events)
    resumed = list(agent.run(history, PARAMS, decision=Decision("run")))
    assert next(e for e in resumed if isinstance(e, Observation)).message.content == "3"
    assert history[-1].content == "It is 3."


def test_rejection_sends_a_declined_observation(registry):
    backend = ScriptedBackend([_call("add", "a=1, b=2"), "\nOK, I won't."])
    history = [Message("user", "1+2")]
    agent = Agent(backend, "tool", registry, policy="ask")
    list(agent.run(history, PARAMS))
    list(agent.run(history, PARAMS, decision=Decision("reject")))
    assert history[2].role == "observation" and "declined" in history[2].content


def test_manual_mode_uses_the_typed_observation(registry):
    backend = ScriptedBackend([_call("add", "a=1, b=2"), "\nYou said 42."])
    history = [Message("user", "1+2")]
    agent = Agent(backend, "tool", registry, policy="manual")
    list(agent.run(history, PARAMS))
    list(agent.run(history, PARAMS, decision=Decision("observe", "42")))
    assert history[2].content == "42" and history[2].extra["manual"]


def test_chat_mode_never_runs_tools(registry):
    backend = ScriptedBackend([_call("add", "a=1, b=2")])
    events = list(Agent(backend, "chat").run([Message("user", "hi")], PARAMS))
    assert not any(isinstance(e, (ToolCall, Observation)) for e in events)
    assert backend.seen_tools == [None]


class FakeSandbox:
    isolation = "full"

    def __init__(self):
        self.ran = []

    def execute(self, code, timeout=None, on_output=None):
        from types import SimpleNamespace

        self.ran.append(code)
        return SimpleNamespace(
            status="ok", message="", outputs=[], observation=lambda max_chars=2000: "4"
        )


def test_code_round_runs_in_the_sandbox():
    sandbox = FakeSandbox()
    backend = ScriptedBackend(["interpreter\n```python\nprint(2+2)\n```", "\nThe answer is 4."])
    history = [Message("user", "2+2")]
    events = list(Agent(backend, "code", sandbox=sandbox).run(history, PARAMS))
    assert sandbox.ran == ["print(2+2)"]
    assert next(e for e in events if isinstance(e, Observation)).message.content == "4"
    assert history[-1].content == "The answer is 4."


def test_code_without_a_block_gets_an_explanatory_observation():
    backend = ScriptedBackend(["interpreter\nprint(1)", "\nok"])
    events = list(Agent(backend, "code", sandbox=FakeSandbox()).run([Message("user", "x")], PARAMS))
    obs = next(e for e in events if isinstance(e, Observation))
    assert "no ```python code block" in obs.message.content


def test_reduced_sandbox_is_announced():
    sandbox = FakeSandbox()
    sandbox.isolation, sandbox.isolation_note = "reduced", "sandbox: reduced (no network/filesystem isolation)"
    backend = ScriptedBackend(["\nhi"])
    events = list(Agent(backend, "code", sandbox=sandbox).run([Message("user", "x")], PARAMS))
    assert any(isinstance(e, Notice) and "reduced" in e.message for e in events)


def test_stop_keeps_the_partial_answer(registry):
    stop = threading.Event()
    backend = ScriptedBackend(["\n" + "word " * 50])
    history = [Message("user", "talk")]
    for event in Agent(backend, "chat").run(history, PARAMS, stop):
        if isinstance(event, TextDelta) and len(event.text) and stop.is_set() is False:
            stop.set()
    assert history[-1].role == "assistant" and 0 < len(history[-1].content) < 250


def test_rounds_used_counts_model_turns_with_calls_since_the_last_user_message():
    call = Message("assistant", "x", "add")
    history = [Message("user", "a"), call, Message("observation", "1"), Message("user", "b"),
               call, Message("observation", "2"),  # round 1: one call
               call, call, Message("observation", "3"), Message("observation", "4")]  # round 2: two calls
    assert rounds_used(history) == 2


def test_bad_agent_configuration_is_a_clear_error(registry):
    with pytest.raises(ConfigError, match="unknown mode"):
        Agent(ScriptedBackend([]), "poetry")
    with pytest.raises(ConfigError, match="needs a sandbox"):
        Agent(ScriptedBackend([]), "code")
    with pytest.raises(ConfigError, match="max_rounds"):
        Agent(ScriptedBackend([]), "tool", registry, max_rounds=0)


def test_a_sandbox_that_cannot_start_becomes_an_error_observation():
    from composite.errors import SandboxError

    class BrokenSandbox(FakeSandbox):
        def execute(self, code, timeout=None, on_output=None):
            raise SandboxError("bwrap: setting up uid map: Permission denied")

    backend = ScriptedBackend(["interpreter\n```python\nprint(1)\n```", "\nI could not run it."])
    history = [Message("user", "x")]
    events = list(Agent(backend, "code", sandbox=BrokenSandbox()).run(history, PARAMS))
    obs = next(e for e in events if isinstance(e, Observation))
    assert not obs.ok and "Permission denied" in obs.message.content
    assert history[-1].content == "I could not run it."


def test_a_run_left_mid_code_keeps_what_it_printed_when_the_code_ignores_the_interrupt():
    from composite.events import OutputDelta
    from composite.sandbox.outputs import Output

    release = threading.Event()

    class StubbornSandbox(FakeSandbox):
        interrupts = 0

        def execute(self, code, timeout=None, on_output=None):
            on_output(Output(kind="stdout", text="partial-1\n"))
            release.wait(30)  # ignores the interrupt, like code that catches KeyboardInterrupt
            return super().execute(code, timeout, on_output)

        def interrupt(self):
            self.interrupts += 1

    sandbox = StubbornSandbox()
    backend = ScriptedBackend(["interpreter\n```python\nwhile True: pass\n```"])
    history = [Message("user", "loop")]
    agent = Agent(backend, "code", sandbox=sandbox)
    agent.interrupt_wait = 0.2
    stream = agent.run(history, PARAMS)
    try:
        next(e for e in stream if isinstance(e, OutputDelta))
        stream.close()  # the page's Interrupt / Stop: the consumer stops listening mid-run
    finally:
        release.set()
    assert sandbox.interrupts == 1
    assert [m.role for m in history] == ["user", "assistant", "observation"]
    observation = history[-1]
    assert "partial-1" in observation.content and "interrupted" in observation.content
    assert observation.extra["interrupted"] is True and observation.extra["status"] == "interrupted"


@pytest.mark.parametrize("mode", ["chat", "tool", "code"])
def test_an_empty_answer_is_said_and_adds_nothing_to_the_history(mode):
    history = [Message("user", "hi")]
    agent = Agent(ScriptedBackend([""]), mode, sandbox=FakeSandbox() if mode == "code" else None)
    events = list(agent.run(history, PARAMS))
    notices = [e for e in events if isinstance(e, Notice)]
    assert len(notices) == 1 and notices[0].level == "warning" and "empty" in notices[0].message
    assert [m.role for m in history] == ["user"]  # no empty assistant message is recorded
    assert isinstance(events[-1], Done) and events[-1].reason == "answered"
