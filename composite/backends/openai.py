"""The OpenAI-compatible backend: any server speaking `/v1/chat/completions` (vLLM, SGLang,
`transformers serve`, `composite serve`) drives the agent, streaming, through the official client.

Tool calls come from `tool_calls`, or, when an engine does not parse them, from the text with the
same safe parsers as the local runtime (ChatGLM3 `tool_call(...)`, Hermes, bare JSON). Server
failures become a `Failure` event plus the partial answer; 429 and 5xx are retried with backoff.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import TYPE_CHECKING, Any, Iterator

from ..errors import BackendError, ConfigError
from ..events import Event, Failure, Notice, TextDelta, TurnEnd
from ..messages import AssistantTurn, Call, Message, SamplingParams
from ..dialects import PYTHON_TOOL
from .base import ModelInfo

if TYPE_CHECKING:
    import openai

__all__ = [
    "OpenAIBackend",
    "PYTHON_TOOL",
    "to_openai_messages",
    "to_openai_tools",
    "turns_from_text",
    "turns_from_tool_calls",
    "call_content",
]

DEFAULT_TIMEOUT = 120.0  # seconds without a byte from the server before the answer is given up
DEFAULT_RETRIES = 3
MAX_BACKOFF = 8.0
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


# -- history → OpenAI messages ---------------------------------------------------------------------
def call_content(name: str, arguments: dict[str, Any]) -> str:
    """A call as ChatGLM3 writes it in the history: a python block with `tool_call(k=v, ...)`."""
    if name in ("python", "interpreter") and set(arguments) == {"code"}:
        return f"```python\n{arguments['code']}\n```"
    rendered = ", ".join(f"{key}={_literal(value)}" for key, value in arguments.items())
    return f"```python\ntool_call({rendered})\n```"


def _literal(value: Any) -> str:
    """A JSON value as a Python literal the way the models write it: strings double-quoted (JSON escapes,
    non-ASCII kept), sequences as tuples, containers element by element; the export's chat template
    renders the same."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):  # ChatGLM3 writes a sequence as a tuple: range=(1, 6)
        return "(" + ", ".join(_literal(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


def _arguments_of(message: Message) -> dict[str, Any]:
    """The structured arguments of a stored call message (parsed again from its text when needed)."""
    from ..dialects import call_of_message

    call = call_of_message(message)
    return call.arguments if call.arguments is not None else {}  # a bad past call: its observation said why


def to_openai_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Our four-role history as OpenAI chat messages.

    Consecutive assistant call messages become ONE assistant message with `tool_calls`; each
    observation becomes a `tool` message answering the calls in order. Calls stored without an id
    (ChatGLM3 history) get a stable one from their position, so the same history always renders
    the same ids."""
    out: list[dict[str, Any]] = []
    pending: list[str] = []  # ids of calls still waiting for their observation, in order
    call_count = 0
    for message in messages:
        if message.role == "assistant" and message.metadata:
            name = "python" if message.metadata == "interpreter" else message.metadata
            call_id = str(message.extra.get("call_id") or f"call_{call_count}")
            call_count += 1
            entry = {
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(_arguments_of(message), ensure_ascii=False)},
            }
            previous = out[-1] if out else None
            if previous is not None and previous["role"] == "assistant" and previous.get("tool_calls"):
                previous["tool_calls"].append(entry)  # consecutive calls of one answer
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [entry]})
            pending.append(call_id)
        elif message.role == "observation":
            explicit = message.extra.get("call_id")
            if explicit and explicit in pending:
                pending.remove(explicit)
                call_id = explicit
            elif pending:
                call_id = pending.pop(0)
            else:
                call_id = str(explicit or f"call_{call_count}")  # an observation without a call (manual)
            out.append({"role": "tool", "tool_call_id": call_id, "content": message.content})
        else:
            out.append({"role": message.role, "content": message.content})
    return out


def to_openai_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """ChatGLM3 tool descriptions ({name, description, parameters}) as OpenAI `tools`."""
    if not tools:
        return None
    out = []
    for tool in tools:
        if tool.get("type") == "function":
            out.append(tool)
            continue
        function = {"name": tool["name"], "description": tool.get("description", "")}
        function["parameters"] = tool.get("parameters") or {"type": "object", "properties": {}}
        out.append({"type": "function", "function": function})
    return out


# -- OpenAI answers → turns ------------------------------------------------------------------------
def _call_turn(text: str, calls: list[Call]) -> AssistantTurn:
    """One turn carrying every call of an answer, in order; its own fields describe the first call."""
    first = calls[0]
    if first.name in ("python", "interpreter") and first.arguments is not None and "code" in first.arguments:
        code = str(first.arguments["code"])
        return AssistantTurn("code", text, "interpreter", f"```python\n{code}\n```", code=code,
                             arguments=first.arguments, calls=calls)
    if first.arguments is not None:
        content = call_content(first.name, first.arguments)
    else:  # the stored form re-parses to the same error
        content = json.dumps({"name": first.name, "arguments": first.error}, ensure_ascii=False)
    return AssistantTurn("tool_call", text, first.name, content, tool_name=first.name, arguments=first.arguments,
                         calls=calls)


def turns_from_tool_calls(text: str, raw_calls: list[dict[str, Any]]) -> list[AssistantTurn]:
    """Turns from an answer's text and its `tool_calls` ([{id, name, arguments (JSON text)}])."""
    from ..dialects import openai_call

    turns: list[AssistantTurn] = []
    if text.strip():
        turns.append(AssistantTurn("text", text, "", text.strip()))
    calls = [openai_call(raw.get("name") or "", raw.get("arguments") or "", raw.get("id") or "") for raw in raw_calls]
    if calls:
        turns.append(_call_turn(text, calls))
    return turns


def turns_from_text(text: str, tool_names: set[str], code_mode: bool) -> list[AssistantTurn]:
    """Turns from text that may hold a call the server did not parse: ChatGLM3's `NAME` line plus a
    python block, Hermes `<tool_call>{...}</tool_call>` or a bare JSON call. Else plain text."""
    from ..dialects import json_calls, parse_chatglm3_turn

    head, newline, _rest = text.lstrip(" ").partition("\n")
    head = head.strip()
    if newline and _NAME.match(head or "-") and (head in tool_names or (code_mode and head == "interpreter")):
        turn = parse_chatglm3_turn(text.lstrip(" "))
        if turn.kind == "code":
            turn.calls = [Call("python", {"code": turn.code})]
            return [turn]
        if turn.kind == "tool_call":
            return [turn]  # its Call (arguments or parse error) is parsed by the ChatGLM3 dialect
    if tool_names or code_mode:
        calls = json_calls(text)
        if calls:
            return [_call_turn(text, calls)]
    # ChatGLM3 servers start a plain answer with an empty metadata line
    content = text[1:] if text.startswith("\n") else text
    return [AssistantTurn("text", text, "", content.strip())]


# -- the backend -----------------------------------------------------------------------------------
class OpenAIBackend:
    """Streams turns from an OpenAI-compatible server; the agent does not know it is remote."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_RETRIES,
        backoff: float = 0.5,
    ):
        base_url = (base_url or "").strip()
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"the server URL {base_url!r} must start with http:// or https://, e.g. "
                              "http://127.0.0.1:8000/v1")
        if not (model or "").strip():
            raise ConfigError("the OpenAI backend needs a model name (--model NAME or $COMPOSITE_MODEL); "
                              "'test connection' lists the server's models")
        if timeout <= 0 or max_retries < 0 or backoff < 0:
            raise ConfigError("timeout must be positive, max_retries and backoff zero or more")
        self.base_url = base_url.rstrip("/")
        self.model = model.strip()
        self.api_key = api_key or ""
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self._client: openai.OpenAI | None = None
        self.info = ModelInfo(
            # the server knows its window; this only bounds the sidebar's max_length (not sent to the server)
            name=self.model, path=self.base_url, device="server", dtype="", parameters=0, context_length=32768,
            dialect="openai", backend="openai",
        )

    @property
    def client(self) -> openai.OpenAI:
        if self._client is None:
            import openai

            self._client = openai.OpenAI(
                base_url=self.base_url,
                # servers without auth ignore the key; the client refuses an empty one
                api_key=self.api_key or "no-key",
                timeout=openai.Timeout(self.timeout, connect=min(10.0, self.timeout)),
                max_retries=0,  # retries are ours: bounded, announced, and never after a partial answer
            )
        return self._client

    def code_tools(self) -> list[dict[str, Any]]:
        """Code mode offers the interpreter as a `python` tool with a `code` argument."""
        return [PYTHON_TOOL]

    def list_models(self) -> list[str]:
        """The server's model ids ("test connection"); raises BackendError with the reason."""
        try:
            return sorted(model.id for model in self.client.models.list())
        except Exception as exc:  # noqa: BLE001 - every client failure is translated by _explain
            raise self._explain(exc) from exc

    # -- errors --------------------------------------------------------------------------------
    def _explain(self, exc: BaseException, mid_stream: bool = False) -> BackendError:
        """One clear message for a client exception (what failed, what to check)."""
        import openai

        where = f"the model server at {self.base_url}"
        # the client's transport (httpx or httpx2) raises its own errors while a stream is read
        transport = type(exc).__module__.split(".")[0].startswith(("httpx", "httpcore"))
        if isinstance(exc, BackendError):
            return exc
        if isinstance(exc, openai.APITimeoutError) or (transport and "Timeout" in type(exc).__name__):
            return BackendError(f"{where} did not answer within {self.timeout:g} s (timeout); "
                                "check that it is up, or raise the timeout", retryable=False)
        if mid_stream and (transport or isinstance(exc, openai.APIConnectionError)):
            return BackendError(f"the connection to {where} broke mid-answer ({exc.__cause__ or exc}); "
                                "the partial answer is kept")
        if isinstance(exc, openai.APIConnectionError):
            return BackendError(f"cannot reach {where} ({exc.__cause__ or exc}); check the URL and that the "
                                "server is running")
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            detail = _server_message(exc)
            if status == 401 or status == 403:
                text = f"{where} refused the API key (HTTP {status}: {detail}); set the right key " \
                       "(--api-key or $OPENAI_API_KEY)"
            elif status == 404:
                text = f"{where} has no model {self.model!r} or no chat endpoint (HTTP 404: {detail}); " \
                       "'test connection' lists its models"
            elif status == 429:
                text = f"{where} is rate limiting or overloaded (HTTP 429: {detail})"
            elif status >= 500:
                text = f"{where} failed with HTTP {status}: {detail}"
            else:
                text = f"{where} rejected the request (HTTP {status}: {detail})"
            return BackendError(text, status=status, retryable=status == 429 or status >= 500)
        if transport or isinstance(exc, openai.APIError):
            return BackendError(f"the connection to {where} broke mid-answer ({exc}); the partial answer is kept")
        return BackendError(f"{where}: unexpected {type(exc).__name__}: {exc}")

    def _wait(self, exc: BaseException, attempt: int) -> float:
        """Seconds before retry `attempt` (1-based): the server's Retry-After when sane, else doubling."""
        delay = self.backoff * (2 ** (attempt - 1))
        response = getattr(exc, "response", None)
        header = response.headers.get("retry-after") if response is not None else None
        if header:
            try:
                delay = max(0.0, float(header))
            except ValueError:
                pass
        return min(delay, MAX_BACKOFF)

    # -- streaming -----------------------------------------------------------------------------
    def _request(self, messages: list[Message], tools: list[dict[str, Any]] | None,
                 params: SamplingParams) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self.model,
            "messages": to_openai_messages(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.seed is not None:
            request["seed"] = params.seed
        if params.repetition_penalty != 1.0:
            request["extra_body"] = {"repetition_penalty": params.repetition_penalty}  # vLLM / SGLang extension
        openai_tools = to_openai_tools(tools)
        if openai_tools:
            request["tools"] = openai_tools
        return request

    def _open(self, request: dict[str, Any], stop: threading.Event | None) -> Iterator[Event | Any]:
        """Open the stream, retrying 429/5xx before any token; yields Notices, then the stream object."""
        attempt = 0
        while True:
            try:
                yield self.client.chat.completions.create(**request)
                return
            except Exception as exc:  # noqa: BLE001 - translated to one BackendError below
                error = self._explain(exc)
                if not error.retryable or attempt >= self.max_retries:
                    if error.retryable and attempt:
                        error = BackendError(f"{error} (gave up after {attempt} retries)", error.status)
                    raise error from exc
                attempt += 1
                delay = self._wait(exc, attempt)
                yield Notice(f"{error}; retrying in {delay:.1f} s ({attempt}/{self.max_retries})", "warning")
                if stop is not None and stop.wait(delay):
                    return  # stopped while waiting to retry: the turn ends cancelled
                if stop is None:
                    time.sleep(delay)

    def stream_turn(
        self,
        messages: list[Message],
        tools: list[dict[str, Any]] | None,
        params: SamplingParams,
        stop: threading.Event | None = None,
    ) -> Iterator[Event]:
        """Yield TextDelta events then one TurnEnd. A server failure yields a Failure and a TurnEnd
        with finish_reason "error" that keeps the partial answer."""
        started = time.perf_counter()
        tool_names = {t.get("name") or t.get("function", {}).get("name", "") for t in tools or ()}
        code_mode = "python" in tool_names and tools is not None and len(tools) == 1
        text = ""
        calls: dict[int, dict[str, str]] = {}
        finish = ""
        usage = None
        stream = None
        try:
            for item in self._open(self._request(messages, tools, params), stop):
                if isinstance(item, Event):
                    yield item
                else:
                    stream = item
            if stream is None:
                yield TurnEnd([], "cancelled", 0, 0, time.perf_counter() - started)
                return
            for chunk in stream:
                if stop is not None and stop.is_set():
                    finish = "cancelled"
                    break
                if getattr(chunk, "usage", None) is not None:
                    usage = chunk.usage
                for choice in chunk.choices or ():
                    delta = choice.delta
                    if delta is not None and delta.content:
                        text += delta.content
                        yield TextDelta(delta.content)
                    for tc in (delta.tool_calls or ()) if delta is not None else ():
                        slot = calls.setdefault(tc.index if tc.index is not None else len(calls),
                                                {"id": "", "name": "", "arguments": ""})
                        if tc.id:
                            slot["id"] = tc.id
                        if tc.function is not None:
                            slot["name"] += tc.function.name or ""
                            slot["arguments"] += tc.function.arguments or ""
                    if choice.finish_reason:
                        finish = choice.finish_reason
            if not finish:
                raise BackendError(
                    f"the model server at {self.base_url} ended the stream before the answer finished "
                    "(no finish_reason); the partial answer is kept"
                )
        except Exception as exc:  # noqa: BLE001 - any failure: say why once, keep the partial answer
            error = self._explain(exc, mid_stream=stream is not None)
            yield Failure(str(error))
            partial = [AssistantTurn("text", text, "", text.strip())] if text.strip() else []
            for turn in partial:
                turn.content = turn.content.lstrip("\n")
            yield TurnEnd(partial, "error", 0, 0, time.perf_counter() - started)
            return
        finally:
            if stream is not None:
                stream.close()
        prompt_tokens = getattr(usage, "prompt_tokens", 0) or 0
        completion_tokens = getattr(usage, "completion_tokens", 0) or 0
        if finish == "cancelled":
            turns = [AssistantTurn("text", text, "", text.strip())]
        elif calls:
            turns = turns_from_tool_calls(text, [calls[i] for i in sorted(calls)])
        else:
            turns = turns_from_text(text, tool_names - {""}, code_mode)
        reason = {"tool_calls": "stop", "function_call": "stop", "stop": "stop", "length": "length"}.get(
            finish, "cancelled" if finish == "cancelled" else "stop"
        )
        yield TurnEnd(turns, reason, prompt_tokens, completion_tokens, time.perf_counter() - started)


def _server_message(exc: Any) -> str:
    """The server's error text from an OpenAI-style body ({"error": {"message": ...}}), else the status line."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
        if isinstance(inner, str):
            return inner[:300]
        if body.get("detail"):
            return str(body["detail"])[:300]
    return str(getattr(exc, "message", "") or exc)[:300]
