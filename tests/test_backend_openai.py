"""The app's OpenAI-compatible backend: history and call translation, each mode end to end against
`composite serve`, and each server failure against small real HTTP servers on 127.0.0.1.
"""


import asyncio
import json

import pytest

from composite.agent import Agent
from composite.backends.openai import OpenAIBackend, to_openai_messages, turns_from_text, turns_from_tool_calls
from composite.errors import BackendError, ConfigError
from composite.events import Done, Failure, Notice, Observation, TextDelta, ToolCall, TurnEnd
from composite.messages import Message, SamplingParams
from composite.prompts import system_prompt
from tests.http_servers import API_KEY, ThreadServer, free_port

pytest.importorskip("openai")
GREEDY = SamplingParams(temperature=0, max_new_tokens=200)
TOOLS = {"calculator", "get_weather"}


# -- translation (no server) -------------------------------------------------------------------------
def test_consecutive_calls_become_one_assistant_message_and_observations_answer_them_in_order():
    history = [
        Message("user", "weather in Oslo and Rome?"),
        Message("assistant", '```python\ntool_call(city_name="Oslo")\n```', "get_weather",
                {"call_id": "a1", "arguments": {"city_name": "Oslo"}}),
        Message("assistant", '```python\ntool_call(city_name="Rome")\n```', "get_weather"),  # no id: ChatGLM3
        Message("observation", "sunny", extra={"call_id": "a1"}),
        Message("observation", "rainy"),
        Message("assistant", "Oslo is sunny, Rome rainy."),
    ]
    out = to_openai_messages(history)
    assert [m["role"] for m in out] == ["user", "assistant", "tool", "tool", "assistant"]
    calls = out[1]["tool_calls"]
    assert [c["id"] for c in calls][0] == "a1" and calls[1]["id"] and calls[1]["id"] != "a1"
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"city_name": "Oslo"}, {"city_name": "Rome"}]
    assert [m["tool_call_id"] for m in out[2:4]] == [c["id"] for c in calls]
    assert to_openai_messages(history) == out  # synthesized ids are stable


def test_interpreter_history_is_a_python_tool_call():
    history = [Message("user", "2+2?"), Message("assistant", "```python\nprint(2+2)\n```", "interpreter"),
               Message("observation", "4")]
    out = to_openai_messages(history)
    call = out[1]["tool_calls"][0]["function"]
    assert call["name"] == "python" and json.loads(call["arguments"]) == {"code": "print(2+2)"}


@pytest.mark.parametrize("text,name,arguments", [
    ('get_weather\n```python\ntool_call(city_name="Oslo")\n```', "get_weather", {"city_name": "Oslo"}),
    ('<tool_call>{"name": "calculator", "arguments": {"expression": "1+1"}}</tool_call>', "calculator",
     {"expression": "1+1"}),
    ('{"name": "calculator", "arguments": {"expression": "2*3"}}', "calculator", {"expression": "2*3"}),
])
def test_calls_in_text_are_parsed_when_the_server_did_not(text, name, arguments):
    (turn,) = turns_from_text(text, TOOLS, code_mode=False)
    assert turn.kind == "tool_call" and [(c.name, c.arguments) for c in turn.calls] == [(name, arguments)]


def test_an_unsafe_chatglm3_call_is_an_error_not_code():
    (turn,) = turns_from_text("calculator\n```python\ntool_call(expression=__import__('os').getcwd())\n```",
                              TOOLS, code_mode=False)
    (call,) = turn.calls
    assert call.arguments is None and "function call" in call.error


def test_plain_text_is_not_a_call_and_loses_chatglm3s_empty_metadata_line():
    (turn,) = turns_from_text("\nThe weather is fine.", TOOLS, code_mode=False)
    assert turn.kind == "text" and turn.content == "The weather is fine." and not turn.calls
    (turn,) = turns_from_text("calculator\nis a word I like", set(), code_mode=False)
    assert turn.kind == "text"  # no tools offered: a name-like first line is prose


def test_tool_calls_with_bad_json_arguments_carry_the_error():
    turns = turns_from_tool_calls("", [{"id": "x", "name": "calculator", "arguments": '{"expression": '},
                                       {"id": "y", "name": "get_weather", "arguments": '{"city_name": "Oslo"}'}])
    (turn,) = turns
    bad, good = turn.calls
    assert bad.arguments is None and "not valid JSON" in bad.error and bad.id == "x"
    assert good.arguments == {"city_name": "Oslo"} and good.id == "y"


@pytest.mark.parametrize("url,model", [("127.0.0.1:8000", "m"), ("http://127.0.0.1:8000/v1", " ")])
def test_bad_settings_are_refused_with_a_reason(url, model):
    with pytest.raises(ConfigError):
        OpenAIBackend(url, model)


# -- against composite serve -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(embedded_server):
    return embedded_server  # one `composite serve` (API key API_KEY) shared with test_server.py


@pytest.fixture(scope="module")
def backend(served):
    return OpenAIBackend(served.base_url, "composite-embedded", API_KEY)


def _run(agent, mode, question):
    history = [Message("system", system_prompt(mode)), Message("user", question)]
    return history, list(agent.run(history, GREEDY))


def test_test_connection_lists_the_servers_models(backend):
    assert backend.list_models() == ["composite-embedded"]


def test_chat_mode_streams_an_answer(backend):
    history, events = _run(Agent(backend, "chat"), "chat", "Hello!")
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 3 and events[-1] == Done("answered")
    assert history[-1].role == "assistant" and history[-1].content == "".join(deltas).strip()


def test_tool_mode_runs_the_real_tool_through_tool_calls(backend):
    from tools.builtin import calculator

    history, events = _run(Agent(backend, "tool"), "tool", "What is 317*24?")
    call = next(e for e in events if isinstance(e, ToolCall))
    observation = next(e for e in events if isinstance(e, Observation))
    assert call.name == "calculator" and call.arguments == {"expression": "317*24"}
    assert observation.ok and observation.message.content == str(calculator(**call.arguments))
    assert [m.role for m in history[1:]] == ["user", "assistant", "observation", "assistant"]
    assert history[2].extra["call_id"].startswith("call_")  # the server's id, kept for the round trip
    assert "7608" in history[-1].content and events[-1] == Done("answered")


def test_code_mode_runs_the_python_tool_in_the_sandbox(backend):
    from composite.sandbox import Sandbox

    with Sandbox() as sandbox:
        history, events = _run(Agent(backend, "code", sandbox=sandbox), "code", "Compute 1234+4321 with Python.")
    call = next(e for e in events if isinstance(e, ToolCall))
    observation = next(e for e in events if isinstance(e, Observation))
    assert call.kind == "code" and "1234" in call.code
    assert observation.ok and observation.message.content.strip() == "5555"
    assert "5555" in history[-1].content and events[-1] == Done("answered")


def test_the_cli_runs_tool_mode_through_the_openai_backend(served):
    import subprocess
    import sys

    from tests.http_servers import server_env

    result = subprocess.run(
        [sys.executable, "-m", "composite", "tool", "What is 317*24?", "--backend", "openai", "--base-url",
         served.base_url, "--model", "composite-embedded", "--api-key", API_KEY, "--temperature", "0", "--json"],
        capture_output=True, text=True, env=server_env(), timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [m["role"] for m in lines] == ["system", "user", "assistant", "observation", "assistant"]
    assert lines[2]["metadata"] == "calculator" and "7608" in lines[-1]["content"]


def test_the_cli_says_what_is_missing_for_the_openai_backend():
    import io

    from composite.cli import main

    err = io.StringIO()
    assert main(["chat", "hi", "--backend", "openai"], out=io.StringIO(), err=err) == 2
    assert "--base-url" in err.getvalue()


def test_the_chat_page_runs_on_the_server_chosen_in_the_sidebar(served, monkeypatch):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("COMPOSITE_BACKEND", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", served.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    page = Path(__file__).resolve().parent.parent / "pages" / "chat.py"
    at = AppTest.from_file(str(page), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    at.button(key="openai_test").click().run()
    assert any("composite-embedded" in s.value for s in at.success)  # test connection lists the models
    at.text_input(key="openai_model").set_value("composite-embedded")
    at.slider(key="chat_temperature").set_value(0.0)
    at.run()
    at.chat_input[0].set_value("Hello!").run()
    assert not at.exception, at.exception
    history = at.session_state["chat_history"]
    assert history[-1].role == "assistant" and history[-1].content.strip()


# -- server failures ---------------------------------------------------------------------------------
def _chunk(content: str | None = None, finish: str | None = None) -> str:
    delta = {"content": content} if content is not None else {}
    body = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(body)}\n\n"


def _failing_app():
    """A fake engine whose route names its failure: /401/v1, /429/v1, /500/v1, /flaky/v1 (one 503, then an
    answer), /cut/v1 (a stream cut mid-answer), /unfinished/v1 (ends without finish_reason), /slow/v1."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI()
    app.state.hits = {}
    app.state.bodies = []

    def err(status: int, message: str, headers: dict | None = None):
        return JSONResponse({"error": {"message": message, "type": "x", "param": None, "code": None}}, status,
                            headers=headers)

    async def answer(text: str):
        for word in text.split(" "):
            yield _chunk(word + " ")
        yield _chunk(None, "stop")
        yield "data: [DONE]\n\n"

    async def two_calls():
        # two calls in one answer, their arguments split across chunks as engines stream them
        for index, (call_id, expression) in enumerate([("c-1", "1+1"), ("c-2", "2*3")]):
            head = {"index": index, "id": call_id, "type": "function",
                    "function": {"name": "calculator", "arguments": '{"expression": '}}
            tail = {"index": index, "function": {"arguments": json.dumps(expression) + "}"}}
            for piece in (head, tail):
                body = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                        "choices": [{"index": 0, "delta": {"tool_calls": [piece]}, "finish_reason": None}]}
                yield f"data: {json.dumps(body)}\n\n"
        yield _chunk(None, "tool_calls")
        yield "data: [DONE]\n\n"

    @app.post("/{kind}/v1/chat/completions")
    async def chat(kind: str, request: Request):
        hits = app.state.hits[kind] = app.state.hits.get(kind, 0) + 1
        if kind == "401":
            return err(401, "Incorrect API key provided")
        if kind == "404":
            return err(404, "The model `m` does not exist")
        if kind == "429":
            return err(429, "Rate limit reached", {"retry-after": "0"})
        if kind == "500":
            return err(500, "engine crashed")
        if kind == "flaky" and hits == 1:
            return err(503, "warming up")
        if kind == "slow":
            await asyncio.sleep(5)
        if kind == "cut":
            async def cut():
                yield _chunk("Hello ")
                yield _chunk("wor")
                raise RuntimeError("engine died")  # uvicorn drops the connection mid-body
            return StreamingResponse(cut(), media_type="text/event-stream")
        if kind == "two":
            body = await request.json()
            app.state.bodies.append(body)
            if body["messages"][-1]["role"] == "tool":
                return StreamingResponse(answer("2 and 6."), media_type="text/event-stream")
            return StreamingResponse(two_calls(), media_type="text/event-stream")
        if kind == "badcall":  # an engine without a tool parser: the call is in the text, and unsafe
            body = await request.json()
            app.state.bodies.append(body)
            if body["messages"][-1]["role"] == "tool":
                return StreamingResponse(answer("Sorry, I could not compute it."), media_type="text/event-stream")
            unsafe = 'calculator\n```python\ntool_call(expression=__import__("os").getcwd())\n```'
            return StreamingResponse(answer(unsafe), media_type="text/event-stream")
        if kind == "unfinished":
            async def unfinished():
                yield _chunk("Half an")
            return StreamingResponse(unfinished(), media_type="text/event-stream")
        return StreamingResponse(answer("All good now."), media_type="text/event-stream")

    return app


@pytest.fixture(scope="module")
def failing():
    with ThreadServer(_failing_app()) as server:
        yield server


def _remote(failing, kind: str, **kwargs) -> OpenAIBackend:
    return OpenAIBackend(f"http://127.0.0.1:{failing.port}/{kind}/v1", "m", backoff=0, **kwargs)


def _chat_events(backend):
    history = [Message("user", "hi")]
    return history, list(Agent(backend, "chat").run(history, GREEDY))


@pytest.mark.parametrize("kind,words", [
    ("401", ["refused the API key", "401", "Incorrect API key"]),
    ("404", ["no model 'm'", "test connection"]),
    ("500", ["HTTP 500", "engine crashed", "gave up after 2 retries"]),
])
def test_a_server_error_is_one_clear_failure_and_the_app_goes_on(failing, kind, words):
    history, events = _chat_events(_remote(failing, kind, max_retries=2))
    failures = [e for e in events if isinstance(e, Failure)]
    assert len(failures) == 1 and all(w in failures[0].message for w in words)
    assert events[-1] == Done("error") and history == [Message("user", "hi")]


def test_several_tool_calls_in_one_answer_each_get_their_tool_message(failing):
    from tools import build_registry

    registry, _ = build_registry()
    backend = OpenAIBackend(f"http://127.0.0.1:{failing.port}/two/v1", "m")
    history = [Message("system", system_prompt("tool")), Message("user", "1+1 and 2*3?")]
    events = list(Agent(backend, "tool", registry).run(history, GREEDY))
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert [(c.name, c.arguments, c.call_id) for c in calls] == [
        ("calculator", {"expression": "1+1"}, "c-1"), ("calculator", {"expression": "2*3"}, "c-2")]
    assert [e.message.content for e in events if isinstance(e, Observation)] == ["2", "6"]
    assert history[-1].content == "2 and 6." and events[-1] == Done("answered")
    sent = failing.server.config.app.state.bodies[-1]["messages"]  # what the engine got back
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "tool"]
    assert [c["id"] for c in sent[2]["tool_calls"]] == ["c-1", "c-2"]
    assert [(m["tool_call_id"], m["content"]) for m in sent[3:]] == [("c-1", "2"), ("c-2", "6")]
    assert sent[0]["content"] == system_prompt("tool") and {t["function"]["name"] for t in
                                                            failing.server.config.app.state.bodies[0]["tools"]} \
        == set(registry.names())


def test_a_call_in_the_text_that_fails_to_parse_goes_back_as_an_error_observation(failing):
    from tools import build_registry

    registry, _ = build_registry()
    backend = OpenAIBackend(f"http://127.0.0.1:{failing.port}/badcall/v1", "m")
    history = [Message("system", system_prompt("tool")), Message("user", "cwd?")]
    events = list(Agent(backend, "tool", registry).run(history, GREEDY))
    (call,) = [e for e in events if isinstance(e, ToolCall)]
    (observation,) = [e for e in events if isinstance(e, Observation)]
    assert call.name == "calculator" and call.error and "function call" in call.error
    assert not observation.ok and observation.message.content.startswith("Error:")  # nothing ran
    sent = failing.server.config.app.state.bodies[-1]["messages"]
    assert sent[-1]["role"] == "tool" and sent[-1]["content"] == observation.message.content
    assert history[-1].content == "Sorry, I could not compute it." and events[-1] == Done("answered")


def test_429_is_retried_a_bounded_number_of_times(failing):
    before = failing.server.config.app.state.hits.get("429", 0)
    _, events = _chat_events(_remote(failing, "429", max_retries=3))
    assert failing.server.config.app.state.hits["429"] - before == 4  # the first try and three retries
    assert len([e for e in events if isinstance(e, Notice) and "retrying" in e.message]) == 3
    assert "429" in next(e for e in events if isinstance(e, Failure)).message


def test_a_5xx_then_success_is_retried_into_an_answer(failing):
    history, events = _chat_events(_remote(failing, "flaky", max_retries=2))
    assert any(isinstance(e, Notice) and "503" in e.message for e in events)
    assert history[-1].content == "All good now." and events[-1] == Done("answered")


@pytest.mark.parametrize("kind,words", [("cut", ["broke mid-answer"]), ("unfinished", ["ended the stream"])])
def test_a_stream_cut_mid_answer_keeps_the_partial_answer(failing, kind, words):
    history, events = _chat_events(_remote(failing, kind))
    failure = next(e for e in events if isinstance(e, Failure))
    assert all(w in failure.message for w in words)
    end = next(e for e in events if isinstance(e, TurnEnd))
    assert end.finish_reason == "error"
    partial = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert partial and history[-1].role == "assistant" and history[-1].content == partial.strip()
    assert events[-1] == Done("error")


def test_a_timeout_is_reported_as_one(failing):
    _, events = _chat_events(_remote(failing, "slow", timeout=1.0))
    assert "did not answer within 1 s" in next(e for e in events if isinstance(e, Failure)).message


def test_an_unreachable_server_is_reported_with_its_url():
    url = f"http://127.0.0.1:{free_port()}/v1"
    _, events = _chat_events(OpenAIBackend(url, "m"))
    message = next(e for e in events if isinstance(e, Failure)).message
    assert "cannot reach" in message and url in message
    with pytest.raises(BackendError, match="cannot reach"):
        OpenAIBackend(url, "m").list_models()
