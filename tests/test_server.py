"""`python -m composite serve` over real HTTP on 127.0.0.1, driven by the official `openai` client.

One server process (the embedded model, an API key) serves the whole module. Answers are checked
against the same model run in this process, so the server must add nothing and lose nothing.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from composite.messages import Message, SamplingParams
from composite.prompts import system_prompt
from tests.http_servers import API_KEY, composite_serve, free_port

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

KEY = API_KEY
MODEL = "composite-embedded"


def _registry_tools() -> list[dict]:
    """The built-in tools in OpenAI's format, as the app sends them (the model knows these)."""
    from tools import build_registry

    registry, _ = build_registry()
    return [{"type": "function", "function": tool} for tool in registry.chatglm3_tools()]


TOOLS = _registry_tools()


@pytest.fixture(scope="module")
def server(embedded_server):
    return embedded_server  # one `composite serve` (API key KEY) shared with test_backend_openai.py


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def local():
    from composite.backends.local import load_model

    return load_model(None, device="cpu")


def _local_answer(runtime, messages: list[Message], tools=None, max_new_tokens: int = 120) -> str:
    from composite.events import TurnEnd

    params = SamplingParams(temperature=0, max_new_tokens=max_new_tokens, max_length=runtime.info.context_length)
    end = [e for e in runtime.stream_turn(messages, tools, params) if isinstance(e, TurnEnd)][0]
    return "\n".join(t.content for t in end.turns)


def _chat(question: str, mode: str = "chat") -> list[dict]:
    return [{"role": "system", "content": system_prompt(mode)}, {"role": "user", "content": question}]


def _post(server, body, key: str | None = KEY, raw: bytes | None = None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    content = raw if raw is not None else json.dumps(body).encode()
    return httpx.post(f"{server.base_url}/chat/completions", content=content, headers=headers, timeout=120)


def test_models_lists_the_served_model(client):
    assert [m.id for m in client.models.list()] == [MODEL]


def test_non_streaming_answer_is_the_models_own_with_usage(client, local):
    reply = client.chat.completions.create(model=MODEL, messages=_chat("Hello!"), temperature=0, max_tokens=120)
    expected = _local_answer(local, [Message("system", system_prompt("chat")), Message("user", "Hello!")])
    choice = reply.choices[0]
    assert choice.message.content.strip() == expected
    assert choice.finish_reason == "stop" and not choice.message.tool_calls
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_streaming_gives_the_same_answer_in_pieces_then_usage(client):
    messages = _chat("Hello!")
    whole = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=120)
    chunks = list(client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=120,
                                                 stream=True, stream_options={"include_usage": True}))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 3  # streamed token by token, not in one piece
    assert "".join(pieces) == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_tool_call_round_trip(client):
    messages = _chat("What is 317*24?", "tool")
    first = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS, temperature=0,
                                           max_tokens=120)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "calculator" and json.loads(call.function.arguments) == {"expression": "317*24"}
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "7608"},
    ]
    final = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS, temperature=0,
                                           max_tokens=120)
    assert final.choices[0].finish_reason == "stop" and "7608" in final.choices[0].message.content


def test_streamed_tool_call_arrives_as_tool_calls_not_text(client):
    chunks = list(client.chat.completions.create(model=MODEL, messages=_chat("What is 317*24?", "tool"),
                                                 tools=TOOLS, temperature=0, max_tokens=120, stream=True))
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(calls) == 1 and calls[0].function.name == "calculator" and calls[0].id
    assert json.loads(calls[0].function.arguments) == {"expression": "317*24"}
    assert "tool_call(" not in text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_interpreter_turn_becomes_a_python_tool_call(client):
    python_tool = {"type": "function", "function": {"name": "python", "description": "run code", "parameters": {
        "type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}}}
    reply = client.chat.completions.create(model=MODEL, messages=_chat("Compute 1234+4321 with Python.", "code"),
                                           tools=[python_tool], temperature=0, max_tokens=120)
    (call,) = reply.choices[0].message.tool_calls
    assert call.function.name == "python" and "1234" in json.loads(call.function.arguments)["code"]


def test_seed_makes_sampling_repeatable_and_stop_cuts_the_answer(client):
    kwargs = dict(model=MODEL, messages=_chat("Hello!"), temperature=1.0, top_p=1.0, max_tokens=40)
    a = client.chat.completions.create(seed=7, **kwargs).choices[0].message.content
    b = client.chat.completions.create(seed=7, **kwargs).choices[0].message.content
    assert a == b and len(a) > 12
    stop = a[6:10]
    cut = client.chat.completions.create(seed=7, stop=[stop], **kwargs).choices[0]
    assert cut.message.content == a[: a.find(stop)] and cut.finish_reason == "stop"


def test_a_request_without_the_key_gets_401(server):
    bad = openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    response = _post(server, {"model": MODEL, "messages": _chat("hi")}, key=None)
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


LONG = "word " * 3000
BAD_INPUTS = [
    ("malformed json", None, b'{"model": "composite-embedded", "messages": [', 400, None),
    ("temperature", {"temperature": 7}, None, 400, "temperature"),
    ("max_tokens", {"max_tokens": 0}, None, 400, "max_tokens"),
    ("top_p", {"top_p": "high"}, None, 400, "top_p"),
    ("empty messages", {"messages": []}, None, 400, "messages"),
    ("unknown role", {"messages": [{"role": "wizard", "content": "hi"}]}, None, 400, "messages"),
    ("unknown model", {"model": "gpt-9"}, None, 404, "model"),
    ("context too long", {"messages": [{"role": "user", "content": LONG}]}, None, 400, "messages"),
    ("tool schema", {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 12}}}]},
     None, 422, "tools"),
    ("tool name", {"tools": [{"type": "function", "function": {"name": "no spaces!", "parameters": {}}}]},
     None, 422, "tools"),
]


@pytest.mark.parametrize("name,change,raw,status,param", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_gets_openai_style_error_json_and_the_server_stays_up(server, client, name, change, raw, status,
                                                                        param):
    body = {"model": MODEL, "messages": _chat("hi"), "max_tokens": 8}
    body.update(change or {})
    response = _post(server, body, raw=raw)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["message"] and error["type"] and error["param"] == param
    assert [m.id for m in client.models.list()] == [MODEL]  # still serving


def test_context_too_long_says_so(server):
    response = _post(server, {"model": MODEL, "messages": [{"role": "user", "content": LONG}]})
    assert response.json()["error"]["code"] == "context_length_exceeded"
    assert "2048" in response.json()["error"]["message"]


def test_eight_concurrent_streams_all_complete_correctly(client):
    questions = ["Hello!", "What is 317*24?"] * 4
    expected = {}
    for q in set(questions):
        expected[q] = client.chat.completions.create(model=MODEL, messages=_chat(q), temperature=0,
                                                     max_tokens=80).choices[0].message.content
    results: dict[int, tuple[str, str]] = {}

    def stream(i: int, question: str) -> None:
        chunks = client.chat.completions.create(model=MODEL, messages=_chat(question), temperature=0, max_tokens=80,
                                                stream=True)
        text, finish = "", ""
        for chunk in chunks:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
        results[i] = (text, finish)

    threads = [threading.Thread(target=stream, args=(i, q)) for i, q in enumerate(questions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert sorted(results) == list(range(8))
    for i, question in enumerate(questions):
        assert results[i][0] == expected[question] and results[i][1] in ("stop", "length")


def _health(server) -> dict:
    response = httpx.get(f"http://127.0.0.1:{server.port}/health", headers={"authorization": f"Bearer {KEY}"})
    return response.json()["generations"]


@pytest.fixture(scope="module")
def random_server(tmp_path_factory):
    """A tiny random GLM: greedy decoding never reaches a stop token, so only a stop ends it early."""
    from tests.conftest import build_tiny_model

    folder = build_tiny_model(tmp_path_factory.mktemp("random-model"), max_length=4096)
    with composite_serve(free_port(), "--model", str(folder), "--api-key", KEY) as srv:
        yield srv


def test_a_client_that_disconnects_mid_stream_stops_its_generation(random_server):
    body = {"model": "tiny-random", "messages": [{"role": "user", "content": "Tell me a long story."}],
            "temperature": 0, "max_tokens": 4000, "stream": True}
    before = _health(random_server)
    with httpx.stream("POST", f"{random_server.base_url}/chat/completions", json=body,
                      headers={"authorization": f"Bearer {KEY}"}, timeout=60) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if '"content": "' in line and '"content": ""' not in line:
                break  # the first token arrived: hang up
    deadline = time.monotonic() + 120
    while _health(random_server)["running"] and time.monotonic() < deadline:
        time.sleep(0.2)
    after = _health(random_server)
    # the generation ended because its stop flag was set, not by reaching max_tokens
    assert after["running"] == 0
    assert after["stopped"] == before["stopped"] + 1 and after["finished"] == before["finished"]
    # and the model is free again: the next request is served
    quick = dict(body, stream=False, max_tokens=5)
    response = httpx.post(f"{random_server.base_url}/chat/completions", json=quick,
                          headers={"authorization": f"Bearer {KEY}"}, timeout=60)
    assert response.json()["usage"]["completion_tokens"] == 5
