"""`python -m composite serve`: the loaded runtime as an OpenAI-compatible API (FastAPI + uvicorn).

`GET /v1/models`, `POST /v1/chat/completions` (server-sent events or one JSON answer), OpenAI
`tools` in and `tool_calls` out translated from and to ChatGLM3 calls and observations. Requests
queue on the model's lock; a client that disconnects stops its generation.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations at runtime.
import asyncio
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator

from .errors import CompositeError, ConfigError
from .messages import Message, SamplingParams

if TYPE_CHECKING:
    from .backends.local import LocalRuntime

__all__ = ["create_app", "serve", "RequestError", "parse_request", "to_chatglm3_messages"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_STOP = 4
KEEPALIVE_SECONDS = 0.5
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "observation"}


class RequestError(CompositeError):
    """A request the server refuses, with its HTTP status and OpenAI error fields."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.param, self.code, self.kind = status, param, code, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": str(self), "type": self.kind, "param": self.param, "code": self.code}}


@dataclass
class ChatRequest:
    """A validated chat completion request in the runtime's terms."""

    messages: list[Message]
    tools: list[dict[str, Any]] | None  # ChatGLM3 tool descriptions for the system prompt
    python_tool: bool  # the client offers `python`: the model's interpreter turns become python calls
    params: SamplingParams
    stream: bool
    include_usage: bool
    stop: list[str] = field(default_factory=list)
    max_tokens_given: bool = False


# -- request validation and translation ------------------------------------------------------------
def _text_of(content: Any, where: str) -> str:
    """Message content: a string, null, or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise RequestError(400, f"{where}: only text content parts are supported "
                                        '({"type": "text", "text": "..."})', "messages")
            parts.append(part["text"])
        return "".join(parts)
    raise RequestError(400, f"{where}: content must be a string or a list of text parts", "messages")


def _python_call(name: str, arguments: dict[str, Any], python_tool: bool) -> bool:
    return python_tool and name == "python" and set(arguments) == {"code"}


def to_chatglm3_messages(raw: Any, python_tool: bool = False) -> list[Message]:
    """OpenAI messages as our four-role history: each tool call becomes one assistant call message
    (metadata = tool name, ChatGLM3 `tool_call(...)` content), each `tool` message an observation."""
    from .backends.openai import call_content

    if not isinstance(raw, list) or not raw:
        raise RequestError(400, "messages must be a non-empty list of {role, content} objects", "messages")
    out: list[Message] = []
    for i, item in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(item, dict):
            raise RequestError(400, f"{where} must be an object with role and content", "messages")
        role = item.get("role")
        if role not in _ROLES:
            raise RequestError(400, f"{where}: unknown role {role!r}; expected one of {', '.join(_ROLES)}", "messages")
        content = _text_of(item.get("content"), where)
        if role == "assistant" and item.get("tool_calls"):
            calls = item["tool_calls"]
            if not isinstance(calls, list):
                raise RequestError(400, f"{where}: tool_calls must be a list", "messages")
            if content.strip():
                out.append(Message("assistant", content))
            for j, call in enumerate(calls):
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                    raise RequestError(400, f"{where}.tool_calls[{j}] needs function.name and function.arguments",
                                       "messages")
                arguments = function.get("arguments") or "{}"
                try:
                    parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
                except ValueError as exc:
                    raise RequestError(400, f"{where}.tool_calls[{j}].function.arguments is not valid JSON: {exc}",
                                       "messages") from exc
                if not isinstance(parsed, dict):
                    raise RequestError(400, f"{where}.tool_calls[{j}].function.arguments must be a JSON object",
                                       "messages")
                name = function["name"]
                extra = {"call_id": str(call.get("id") or ""), "arguments": parsed}
                if _python_call(name, parsed, python_tool):
                    out.append(Message("assistant", call_content("python", parsed), "interpreter", extra))
                else:
                    out.append(Message("assistant", call_content(name, parsed), name, extra))
        elif role == "tool":
            out.append(Message("observation", content, extra={"call_id": str(item.get("tool_call_id") or "")}))
        else:
            out.append(Message(_ROLES[role], content))
    return out


def _check_tools(raw: Any) -> tuple[list[dict[str, Any]] | None, bool]:
    """OpenAI `tools` as ChatGLM3 descriptions (422 for an invalid schema); the `python` tool is the
    model's own interpreter and is not listed."""
    if raw is None:
        return None, False
    if not isinstance(raw, list):
        raise RequestError(422, "tools must be a list of {type: function, function: {...}}", "tools",
                           "invalid_tool_schema")
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    described: list[dict[str, Any]] = []
    python_tool = False
    for i, tool in enumerate(raw):
        where = f"tools[{i}]"
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
            raise RequestError(422, f"{where} must be {{type: \"function\", function: {{name, parameters}}}}",
                               "tools", "invalid_tool_schema")
        name = function.get("name")
        if not isinstance(name, str) or not name or len(name) > 64 or not all(c.isalnum() or c in "_-" for c in name):
            raise RequestError(422, f"{where}.function.name {name!r} must be 1-64 letters, digits, _ or -",
                               "tools", "invalid_tool_schema")
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, dict):
            raise RequestError(422, f"{where}.function.parameters must be a JSON Schema object", "tools",
                               "invalid_tool_schema")
        try:
            Draft202012Validator.check_schema(parameters)
        except SchemaError as exc:
            raise RequestError(422, f"{where}.function.parameters is not a valid JSON Schema: {exc.message}",
                               "tools", "invalid_tool_schema") from exc
        if parameters.get("type", "object") != "object":
            raise RequestError(422, f"{where}.function.parameters must describe an object (type: object)",
                               "tools", "invalid_tool_schema")
        if name == "python":
            python_tool = True
            continue
        described.append({"name": name, "description": str(function.get("description") or ""),
                          "parameters": parameters})
    return described or None, python_tool


def _number(body: dict[str, Any], key: str, low: float, high: float, default: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise RequestError(400, f"{key} must be a number between {low:g} and {high:g}, got {value!r}", key)
    return float(value)


def _integer(body: dict[str, Any], key: str, low: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise RequestError(400, f"{key} must be an integer of at least {low}, got {value!r}", key)
    return value


def parse_request(body: Any, model_names: set[str], context_length: int) -> ChatRequest:
    """Validate a chat completion body; RequestError says what was wrong and what was expected."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError(400, "model is required (GET /v1/models lists it)", "model")
    if model not in model_names:
        raise RequestError(404, f"the model {model!r} does not exist; this server serves "
                                f"{', '.join(sorted(model_names))}", "model", "model_not_found")
    n = _integer(body, "n", 1)
    if n not in (None, 1):
        raise RequestError(400, f"n must be 1 (one answer per request), got {n}", "n")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError(400, f"stream must be true or false, got {stream!r}", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise RequestError(400, "stream_options must be an object", "stream_options")
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if stop is not None else []
    if not isinstance(stops, list) or len(stops) > MAX_STOP or not all(isinstance(s, str) and s for s in stops):
        raise RequestError(400, f"stop must be a string or a list of at most {MAX_STOP} non-empty strings", "stop")
    max_tokens = _integer(body, "max_completion_tokens", 1) or _integer(body, "max_tokens", 1)
    seed = _integer(body, "seed", 0)
    tools, python_tool = _check_tools(body.get("tools"))
    if body.get("tool_choice") not in (None, "auto", "none"):
        raise RequestError(400, "tool_choice must be \"auto\" or \"none\" (the model decides)", "tool_choice")
    if body.get("tool_choice") == "none":
        tools, python_tool = None, False
    params = SamplingParams(
        max_new_tokens=max_tokens or context_length,
        max_length=context_length,
        temperature=_number(body, "temperature", 0.0, 2.0, 0.8),
        top_p=_number(body, "top_p", 1e-9, 1.0, 0.8),
        seed=seed,
    )
    messages = to_chatglm3_messages(body.get("messages"), python_tool)
    return ChatRequest(messages, tools, python_tool, params, stream, bool(options.get("include_usage")), stops,
                       max_tokens is not None)


# -- generation ------------------------------------------------------------------------------------
@dataclass
class Counters:
    """What /health reports: generations running, finished and stopped early (client gone or stop string)."""

    running: int = 0
    finished: int = 0
    stopped: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def report(self) -> dict[str, int]:
        with self.lock:
            return {"running": self.running, "finished": self.finished, "stopped": self.stopped}


class _Generation:
    """One request's generation on a worker thread; events reach the event loop through a queue."""

    def __init__(self, runtime: "LocalRuntime", request: ChatRequest, loop: asyncio.AbstractEventLoop,
                 counters: Counters):
        self.runtime, self.request, self.loop, self.counters = runtime, request, loop, counters
        self.stop = threading.Event()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _put(self, item: Any) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    def _run(self) -> None:
        with self.counters.lock:
            self.counters.running += 1
        stream = self.runtime.stream_turn(self.request.messages, self.request.tools, self.request.params, self.stop)
        try:
            for event in stream:
                self._put(event)
        except Exception as exc:  # noqa: BLE001 - reported to the client as a 500, the server stays up
            self._put(exc)
        finally:
            stream.close()  # releases the model lock even when stopped early
            with self.counters.lock:
                self.counters.running -= 1
                if self.stop.is_set():
                    self.counters.stopped += 1
                else:
                    self.counters.finished += 1
            self._put(None)

    async def events(self) -> AsyncIterator[Any]:
        self.thread.start()
        try:
            while True:
                item = await self.queue.get()
                if item is None:
                    return
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.stop.set()  # a disconnected client (cancelled task) stops its generation


class _Answer:
    """Turns the runtime's raw ChatGLM3 text into OpenAI content and tool calls, honouring `stop`."""

    def __init__(self, request: ChatRequest):
        self.request = request
        self.raw = ""
        self.sent = 0  # characters of content already streamed
        self.mode = ""  # "" until the metadata line is known, then "text" or "call"
        self.stopped = False

    def _content(self) -> str:
        if self.mode != "text":
            return ""
        text = self.raw[1:] if self.raw.startswith("\n") else self.raw
        return text

    def feed(self, delta: str) -> str:
        """New content to stream for this delta (held back while it may be a call or a stop string)."""
        self.raw += delta
        if not self.mode:
            if self.raw.startswith("\n"):
                self.mode = "text"
            elif "\n" in self.raw:
                head = self.raw.split("\n", 1)[0].strip()
                self.mode = "call" if self._is_call_name(head) else "text"
            elif not self._may_be_call_name(self.raw.strip()):
                self.mode = "text"  # prose without ChatGLM3's metadata line: stream it now
            else:
                return ""
        content = self._content()
        for stop in self.request.stop:
            at = content.find(stop)
            if at >= 0:
                content = content[:at]
                self.stopped = True
        hold = 0 if self.stopped else max((len(s) - 1 for s in self.request.stop), default=0)
        ready = content[: max(self.sent, len(content) - hold)]
        new = ready[self.sent:]
        self.sent = len(ready)
        return new

    def _may_be_call_name(self, start: str) -> bool:
        names = {t["name"] for t in self.request.tools or ()}
        if self.request.python_tool:
            names.add("interpreter")
        return any(name.startswith(start) for name in names)

    def _is_call_name(self, head: str) -> bool:
        names = {t["name"] for t in self.request.tools or ()}
        return head in names or (head == "interpreter" and self.request.python_tool)

    def final(self, turns: list[Any]) -> tuple[str, list[dict[str, Any]]]:
        """(the whole content, tool calls) once generation ended."""
        calls: list[dict[str, Any]] = []
        texts: list[str] = []
        for turn in turns:
            name = ""
            arguments: dict[str, Any] | None = None
            if turn.kind == "code" and self.request.python_tool:
                name, arguments = "python", {"code": turn.code}
            elif turn.kind == "tool_call" and turn.tool_name in {t["name"] for t in self.request.tools or ()}:
                # the dialect parsed the call; one that failed to parse goes back as text, where the
                # client's parser finds the same error
                name, arguments = turn.tool_name, turn.calls[0].arguments if turn.calls else None
            if arguments is not None:
                calls.append({"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                              "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}})
            elif turn.kind == "text":
                texts.append(turn.content)
            else:
                texts.append(turn.text)
        content = "\n".join(t for t in texts if t) if calls or self.mode != "text" else self._content()
        for stop in self.request.stop:
            at = content.find(stop)
            if at >= 0:
                content = content[:at]
        return content, calls


# -- the app ---------------------------------------------------------------------------------------
def create_app(runtime: "LocalRuntime", api_key: str | None = None, model_name: str | None = None):
    """The FastAPI app serving `runtime` under the model id `model_name` (default: the model's name)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    name = model_name or runtime.info.name
    names = {name, runtime.info.path}
    created = int(time.time())
    counters = Counters()
    app = FastAPI(title="composite", docs_url=None, redoc_url=None, openapi_url=None)

    def error(exc: RequestError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    def unauthorized(request: Request) -> JSONResponse | None:
        """401 unless the request carries the key. Checked in each handler: an HTTP middleware would wrap
        the streaming response and hide a client's disconnect from it."""
        if not api_key:
            return None
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else ""
        if hmac.compare_digest(given.encode(), api_key.encode()):
            return None
        return error(RequestError(401, "missing or wrong API key; send Authorization: Bearer KEY",
                                  code="invalid_api_key", kind="authentication_error"))

    @app.exception_handler(404)
    async def not_found(request: Request, exc: Exception):
        if (refused := unauthorized(request)) is not None:
            return refused
        return error(RequestError(404, f"no route {request.method} {request.url.path}; this server has "
                                       "GET /v1/models and POST /v1/chat/completions", code="not_found"))

    @app.get("/v1/models")
    async def models(request: Request):
        if (refused := unauthorized(request)) is not None:
            return refused
        model = {"id": name, "object": "model", "created": created, "owned_by": "composite"}
        return {"object": "list", "data": [model]}

    @app.get("/health")
    async def health(request: Request):
        if (refused := unauthorized(request)) is not None:
            return refused
        return {"status": "ok", "model": name, "generations": counters.report()}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        if (refused := unauthorized(request)) is not None:
            return refused
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError as exc:
            return error(RequestError(400, f"the request body is not valid JSON: {exc}", code="invalid_json"))
        try:
            parsed = parse_request(body, names, runtime.info.context_length)
            prompt = len(runtime.dialect.render(parsed.messages, parsed.tools))
        except RequestError as exc:
            return error(exc)
        except ConfigError as exc:  # SamplingParams or Message refused a value
            return error(RequestError(400, str(exc)))
        except CompositeError as exc:  # the dialect could not render the conversation
            return error(RequestError(400, str(exc)))
        context = runtime.info.context_length
        if prompt >= context or (parsed.max_tokens_given and prompt + parsed.params.max_new_tokens > context):
            asked = parsed.params.max_new_tokens if parsed.max_tokens_given else 1
            return error(RequestError(400, f"this model's context is {context} tokens; the messages take {prompt} "
                                           f"and {asked} more were asked for; shorten the messages or max_tokens",
                                      "messages", "context_length_exceeded"))
        if not parsed.max_tokens_given:  # the rest of the context, so the runtime never trims the messages
            parsed.params.max_new_tokens = context - prompt
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        generation = _Generation(runtime, parsed, asyncio.get_running_loop(), counters)
        if parsed.stream:
            return StreamingResponse(_sse(generation, parsed, completion_id, name),
                                     media_type="text/event-stream")
        return await _complete(generation, parsed, completion_id, name)

    return app


def _finish(end: Any, answer: _Answer, calls: list[Any]) -> str:
    if calls:
        return "tool_calls"
    if answer.stopped:
        return "stop"
    return "length" if end is not None and end.finish_reason == "length" else "stop"


def _usage(end: Any) -> dict[str, int]:
    prompt = end.prompt_tokens if end is not None else 0
    completion = end.completion_tokens if end is not None else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _complete(generation: _Generation, request: ChatRequest, completion_id: str, name: str):
    from fastapi.responses import JSONResponse

    from .events import TextDelta, TurnEnd

    answer, end = _Answer(request), None
    try:
        async for event in generation.events():
            if isinstance(event, TextDelta):
                answer.feed(event.text)
                if answer.stopped:
                    generation.stop.set()
            elif isinstance(event, TurnEnd):
                end = event
    except Exception as exc:  # noqa: BLE001 - a generation failure is this request's 500, not the server's end
        return JSONResponse(RequestError(500, f"generation failed: {exc}", kind="server_error").body(), 500)
    content, calls = answer.final(end.turns if end is not None else [])
    message: dict[str, Any] = {"role": "assistant", "content": content or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": name,
        "choices": [{"index": 0, "message": message, "finish_reason": _finish(end, answer, calls)}],
        "usage": _usage(end),
    }


async def _sse(generation: _Generation, request: ChatRequest, completion_id: str, name: str):
    from .events import TextDelta, TurnEnd

    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> str:
        data: dict[str, Any] = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                                "model": name, "choices": [] if usage else
                                [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if usage:
            data["usage"] = usage
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    answer, end = _Answer(request), None
    yield chunk({"role": "assistant", "content": ""})
    last_write = time.monotonic()
    try:
        async for event in generation.events():
            if isinstance(event, TextDelta):
                new = answer.feed(event.text)
                if new:
                    yield chunk({"content": new})
                    last_write = time.monotonic()
                elif time.monotonic() - last_write > KEEPALIVE_SECONDS:
                    # an SSE comment while a call is held back: a write is how a disconnect is noticed
                    yield ": keep-alive\n\n"
                    last_write = time.monotonic()
                if answer.stopped:
                    generation.stop.set()
            elif isinstance(event, TurnEnd):
                end = event
    except Exception as exc:  # noqa: BLE001 - headers are sent: report in-band as OpenAI servers do
        body = RequestError(500, f"generation failed: {exc}", kind="server_error").body()
        yield f"data: {json.dumps(body)}\n\n"
        return
    content, calls = answer.final(end.turns if end is not None else [])
    if calls:
        if content and answer.mode != "text":
            yield chunk({"content": content})
        for index, call in enumerate(calls):
            yield chunk({"tool_calls": [dict(call, index=index)]})
    elif len(content) > answer.sent:
        yield chunk({"content": content[answer.sent:]})
    yield chunk({}, _finish(end, answer, calls))
    if request.include_usage:
        yield chunk({}, usage=_usage(end))
    yield "data: [DONE]\n\n"


def serve(runtime: "LocalRuntime", host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          model_name: str | None = None, log_level: str = "warning") -> None:
    """Run the server until interrupted (blocking)."""
    import uvicorn

    uvicorn.run(create_app(runtime, api_key, model_name), host=host, port=port, log_level=log_level)
