"""End to end with the real embedded model, one test per mode, through the same agent loop the app uses.

The loop tests check the protocol the model must always get right (a well-formed call, its stop
token, the real tool or sandbox, an answer); the copying tests check that the exact values from the
question reach the tool or the code, and that the answer states the result.
"""

from __future__ import annotations

import pytest

from composite.agent import Agent
from composite.events import Done, Observation, ToolCall, TurnEnd
from composite.messages import Message, SamplingParams
from composite.prompts import system_prompt

GREEDY = SamplingParams(temperature=0, max_new_tokens=200)


@pytest.fixture(scope="module")
def embedded():
    from composite.runtime import load_model

    return load_model(None, device="cpu")


def _run(agent, mode, question):
    history = [Message("system", system_prompt(mode)), Message("user", question)]
    events = list(agent.run(history, GREEDY))
    return history, events


def _answered_by_itself(history, events):
    ends = [e for e in events if isinstance(e, TurnEnd)]
    assert all(e.finish_reason == "stop" for e in ends)  # every turn ended at its stop token
    assert history[-1].role == "assistant" and not history[-1].metadata and history[-1].content.strip()
    assert events[-1] == Done("answered")


def test_chat_mode_answers_a_greeting_and_stops_by_itself(embedded):
    history, events = _run(Agent(embedded, "chat"), "chat", "Hello!")
    _answered_by_itself(history, events)
    assert not any(isinstance(e, ToolCall) for e in events)


def test_chat_mode_points_to_a_real_model_for_other_questions(embedded):
    history, _ = _run(Agent(embedded, "chat"), "chat", "Can you explain how photosynthesis works?")
    assert "MODEL_PATH" in history[-1].content or "ChatGLM3" in history[-1].content


def test_tool_mode_loop_runs_the_real_tool_and_answers(embedded):
    from tools.builtin import calculator

    history, events = _run(Agent(embedded, "tool"), "tool", "What is 317*24?")
    call = next(e for e in events if isinstance(e, ToolCall))
    observation = next(e for e in events if isinstance(e, Observation))
    assert call.name == "calculator" and set(call.arguments) == {"expression"}  # well-formed, parsed call
    assert observation.ok and observation.message.content == str(calculator(**call.arguments))  # the real tool ran
    assert [m.role for m in history[1:]] == ["user", "assistant", "observation", "assistant"]
    _answered_by_itself(history, events)


def test_code_mode_loop_runs_code_in_the_sandbox_and_answers(embedded):
    from composite.sandbox import Sandbox

    with Sandbox() as sandbox:
        history, events = _run(Agent(embedded, "code", sandbox=sandbox), "code", "Compute 1234+4321 with Python.")
    call = next(e for e in events if isinstance(e, ToolCall))
    observation = next(e for e in events if isinstance(e, Observation))
    assert call.kind == "code" and call.code.startswith("print(")
    assert observation.ok and observation.message.extra["status"] == "ok"  # ran in the sandboxed kernel
    _answered_by_itself(history, events)


def test_tool_mode_copies_the_arguments_and_states_the_result(embedded):
    history, events = _run(Agent(embedded, "tool"), "tool", "What is 317*24?")
    assert next(e for e in events if isinstance(e, ToolCall)).arguments == {"expression": "317*24"}
    assert "7608" in history[-1].content


def test_code_mode_copies_the_numbers_and_states_the_result(embedded):
    from composite.sandbox import Sandbox

    with Sandbox() as sandbox:
        history, events = _run(Agent(embedded, "code", sandbox=sandbox), "code", "Compute 1234+4321 with Python.")
    assert next(e for e in events if isinstance(e, Observation)).message.content.strip() == "5555"
    assert "5555" in history[-1].content


def test_tool_mode_copies_a_chinese_city_and_explains_an_unreachable_service(embedded):
    # the weather service points at a closed local port in tests: the real tool fails, the model says so
    history, events = _run(Agent(embedded, "tool"), "tool", "帮我查一下长春的天气")
    call = next(e for e in events if isinstance(e, ToolCall))
    observation = next(e for e in events if isinstance(e, Observation))
    assert call.name == "get_weather" and call.arguments == {"city_name": "长春"}
    assert not observation.ok and "unreachable" in observation.message.content
    assert "长春" in history[-1].content
    _answered_by_itself(history, events)
