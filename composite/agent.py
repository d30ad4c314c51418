"""The agent loop: generate → (tool call or code) → observation → generate, as one stream of events.

The history list is the whole state: the loop appends to it as it goes, so a renderer can stop
consuming at any event (a paused approval, a stop button) and resume later from the history alone.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Iterator, Literal

from .errors import ConfigError, SandboxError
from .events import (
    CodeRunning,
    OutputDelta,
    ApprovalNeeded,
    AssistantMessage,
    Done,
    Event,
    Failure,
    Notice,
    Observation,
    ToolCall,
    TurnEnd,
)
from .messages import AssistantTurn, Call, Message, SamplingParams
from .prompts import MODES

if TYPE_CHECKING:
    from .backends.base import Backend

__all__ = ["Agent", "Decision", "pending_call", "pending_calls", "rounds_used"]

Policy = Literal["auto", "ask", "manual"]
POLICIES = ("auto", "ask", "manual")


@dataclass
class Decision:
    """The user's answer to an ApprovalNeeded event (it applies to every pending call of the turn)."""

    action: Literal["run", "reject", "observe", "edit"]
    text: str = ""  # the observation typed by the user in manual mode
    texts: list[str] | None = None  # manual mode, several pending calls: one observation per call, in order
    code: str = ""  # "edit": the code the user wrote in place of the model's; it is what runs


def _is_call(message: Message) -> bool:
    return message.role == "assistant" and bool(message.metadata)


def pending_calls(history: list[Message]) -> list[Message]:
    """The call messages at the end of the history that still await their observation, in order.

    A turn's calls are consecutive assistant messages followed by one observation per call in the same
    order (matched by `extra["call_id"]`, else by position), so a paused or resumed turn finds them all.
    """
    end = len(history)
    while end and history[end - 1].role == "observation":
        end -= 1
    start = end
    while start and _is_call(history[start - 1]):
        start -= 1
    calls, observations = history[start:end], history[end:]
    if not calls:
        return []
    ids = [str(m.extra.get("call_id") or "") for m in calls]
    answered = {str(o.extra.get("call_id") or "") for o in observations} - {""}
    if all(ids) and answered:
        return [m for m, call_id in zip(calls, ids) if call_id not in answered]
    return calls[len(observations):]


def _turn_of(message: Message) -> AssistantTurn:
    """A stored call message as a turn (its Call as generated, kept in extra; parsed only for imports)."""
    from .dialects.calls import call_of_message

    call = call_of_message(message)
    if message.metadata == "interpreter":
        code = str((call.arguments or {}).get("code", ""))
        return AssistantTurn("code", message.content, message.metadata, message.content, code=code, calls=[call])
    return AssistantTurn("tool_call", message.content, message.metadata, message.content, message.metadata,
                         arguments=call.arguments, calls=[call])


def pending_call(history: list[Message]) -> AssistantTurn | None:
    """The first call that still awaits its observation (see `pending_calls` for all of them)."""
    pending = pending_calls(history)
    return _turn_of(pending[0]) if pending else None


def rounds_used(history: list[Message]) -> int:
    """Tool/code rounds already spent on this user turn: runs of observations since the last user message
    (one round per model turn, however many calls it made)."""
    count = 0
    previous_was_observation = False
    for message in reversed(history):
        if message.role == "user":
            break
        is_observation = message.role == "observation"
        count += is_observation and not previous_was_observation
        previous_was_observation = is_observation
    return count


def _new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:12]}"


class Agent:
    """Runs one user turn in a mode: chat (no tools), tool (registry tools) or code (sandbox)."""

    def __init__(
        self,
        backend: Backend,
        mode: str = "chat",
        registry: Any = None,
        enabled_tools: list[str] | None = None,
        sandbox: Any = None,
        max_rounds: int = 5,
        tool_timeout: float = 30.0,
        code_timeout: float = 60.0,
        policy: Policy = "auto",
        observation_chars: int = 2000,
    ):
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        if policy not in POLICIES:
            raise ConfigError(f"unknown approval policy {policy!r}; expected one of {', '.join(POLICIES)}")
        if max_rounds < 1:
            raise ConfigError(f"max_rounds must be at least 1, got {max_rounds}")
        if mode == "tool" and registry is None:
            from tools import default_registry

            registry = default_registry
        if mode == "code" and sandbox is None:
            raise ConfigError("code mode needs a sandbox (composite.sandbox.Sandbox)")
        self.backend = backend
        self.mode = mode
        self.registry = registry
        self.enabled_tools = enabled_tools
        self.sandbox = sandbox
        self.max_rounds = max_rounds
        self.tool_timeout = tool_timeout
        self.code_timeout = code_timeout
        self.policy = policy
        self.observation_chars = observation_chars
        # seconds an interrupted run gets to return its partial output when the consumer stops listening
        self.interrupt_wait = float(getattr(getattr(sandbox, "config", None), "interrupt_grace", 5.0)) + 2.0

    # -- what the model sees -------------------------------------------------------------------
    def tools(self) -> list[dict[str, Any]] | None:
        if self.mode == "tool":
            return self.registry.chatglm3_tools(self.enabled_tools) or None
        if self.mode == "code":
            code_tools = getattr(self.backend, "code_tools", None)  # None: the dialect has an interpreter role
            return code_tools() if code_tools else None
        return None

    # -- the loop ------------------------------------------------------------------------------
    def run(
        self,
        history: list[Message],
        params: SamplingParams,
        stop: threading.Event | None = None,
        decision: Decision | None = None,
    ) -> Iterator[Event]:
        """Continue the conversation until a plain answer, a pause, the round bound or a stop."""
        if self.mode == "code" and getattr(self.sandbox, "isolation", "full") != "full":
            yield Notice(getattr(self.sandbox, "isolation_note", "sandbox: reduced"), "warning")
        pending = pending_calls(history) if self.mode != "chat" else []
        while True:
            if pending:
                if rounds_used(history) >= self.max_rounds:
                    yield Notice(
                        f"stopped after {self.max_rounds} tool/code round(s) for this question (the loop bound); "
                        "raise the bound or ask again to continue",
                        "warning",
                    )
                    yield Done("round_limit")
                    return
                if decision is not None and decision.action == "edit":
                    self._apply_edit(pending, decision.code)
                    decision = Decision("run")
                calls = [self._call_event(message) for message in pending]
                yield from calls
                needs = [c for c in calls if not c.error and (c.kind == "tool" or self.mode == "code")]
                if decision is None and self.policy != "auto" and needs:
                    yield ApprovalNeeded(needs[0], calls)
                    yield Done("awaiting_approval")
                    return
                try:
                    observations = yield from self._live(lambda: self._observe_all(calls, decision))
                except GeneratorExit:
                    # the consumer left mid-run (an Interrupt or Stop button): the interrupted run's output
                    # still becomes its observation, so every call keeps its answer and the history goes on
                    history.extend(observation.message for observation in self._abandoned_observations(calls))
                    raise
                for observation in observations:
                    history.append(observation.message)
                    yield observation
                decision = None
                pending = []
            if stop is not None and stop.is_set():
                yield Done("cancelled")
                return
            end: TurnEnd | None = None
            for event in self.backend.stream_turn(history, self.tools(), params, stop):
                if isinstance(event, TurnEnd):
                    end = event
                yield event
            if end is None:
                yield Failure("the model backend ended without a result")
                yield Done("error")
                return
            turns = [t for t in end.turns if t.text or t.content or t.calls]
            if not turns and end.finish_reason not in ("cancelled", "error"):
                # nothing to add to the history, but never a silent nothing: say so, and how to go on
                yield Notice("the model's answer was empty (it ended at once); press Retry, or change the "
                             "sampling (temperature, seed)", "warning")
            for index, turn in enumerate(turns):
                acting = index == len(turns) - 1 and turn.kind != "text" and self.mode != "chat"
                for message in self._turn_messages(turn, acting):
                    history.append(message)
                    yield AssistantMessage(message)
                    if acting:
                        pending.append(message)
            if end.finish_reason == "cancelled":
                yield Done("cancelled")
                return
            if end.finish_reason == "error":  # the backend yielded a Failure; the partial answer is kept
                yield Done("error")
                return
            if not pending:
                if end.finish_reason == "length":
                    yield Notice("the answer stopped at the token limit (max_new_tokens / max_length)", "warning")
                yield Done("length" if end.finish_reason == "length" else "answered")
                return
            if end.finish_reason == "length":
                yield Notice("the call was cut off by the token limit; not running it", "warning")
                yield Done("length")
                return

    # -- calls ---------------------------------------------------------------------------------
    def _turn_messages(self, turn: AssistantTurn, acting: bool) -> list[Message]:
        """The history messages of one generated turn: one assistant message per call, each carrying its
        call id and parsed arguments (or parse error) in `extra`, so nothing is parsed again later."""
        if not acting:
            if turn.kind != "text" and self.mode != "chat":
                # ChatGLM3 keeps one call per turn: a call-shaped turn before the last one is kept as text
                return [Message("assistant", turn.text.strip())]
            return [turn.to_message()]
        calls = list(turn.calls)
        if turn.kind == "code" and not calls:  # ChatGLM3's interpreter turn: the code is the call
            calls = [Call("interpreter", {"code": turn.code})]
        if not calls:  # a backend that classified the turn without parsing it: parse the stored form once
            from .dialects.calls import call_of_message

            calls = [call_of_message(turn.to_message())]
        messages = []
        for index, call in enumerate(calls):
            if len(calls) == 1:
                message = turn.to_message()
            elif self.mode == "code" and call.name == "python" and call.arguments is not None:
                message = Message("assistant", f"```python\n{call.arguments.get('code', '')}\n```", "interpreter")
            else:
                body = {"name": call.name, "arguments": call.arguments} if call.arguments is not None else {"name": call.name}
                message = Message("assistant", json.dumps(body, ensure_ascii=False), call.name or "unknown")
            message.extra["call_id"] = call.id or _new_call_id()
            if call.arguments is not None:
                message.extra["arguments"] = call.arguments
            if call.error:
                message.extra["call_error"] = call.error
            messages.append(message)
        return messages

    def _call_event(self, message: Message) -> ToolCall:
        from .dialects.calls import call_of_message

        call = call_of_message(message)
        call_id = str(message.extra.get("call_id") or "")
        if message.metadata == "interpreter" or (self.mode == "code" and call.name == "python"):
            return ToolCall("code", "interpreter", str((call.arguments or {}).get("code", "")), call_id=call_id)
        return ToolCall("tool", call.name, message.content, call.arguments, call_id=call_id, error=call.error)

    def _observe_all(self, calls: list[ToolCall], decision: Decision | None) -> list[Observation]:
        """One observation per call, in call order; tool calls run in parallel, code runs in order."""
        results: list[Observation | None] = [None] * len(calls)
        tool_jobs: list[int] = []
        for index, call in enumerate(calls):
            if call.error:  # the call could not be parsed: its error is the observation, nothing runs
                results[index] = self._error_observation(call, f"Error: {call.error}")
            elif decision is not None and decision.action == "reject":
                text = f"The user declined to run {call.name}. Answer without it."
                results[index] = Observation(Message("observation", text, extra={"declined": True}), ok=False)
            elif decision is not None and decision.action == "observe":
                texts = decision.texts or []
                text = texts[index] if index < len(texts) else decision.text
                results[index] = Observation(Message("observation", text, extra={"manual": True}), ok=True)
            elif call.kind == "code":
                if self.mode != "code":
                    text = "Error: code execution is not available in this mode; call one of the listed tools."
                    results[index] = self._error_observation(call, text)
                elif (getattr(self, "_abandoned", None) or {}).get("left", threading.Event()).is_set():
                    results[index] = self._not_run(call)
                else:
                    results[index] = self._run_code(call.code)
            else:
                tool_jobs.append(index)
        if len(tool_jobs) == 1:
            results[tool_jobs[0]] = self._run_tool(calls[tool_jobs[0]])
        elif tool_jobs:
            from concurrent.futures import ThreadPoolExecutor

            # each call has its own timeout inside registry.call, so the pool never waits longer than the slowest
            with ThreadPoolExecutor(max_workers=len(tool_jobs), thread_name_prefix="tool-call") as pool:
                futures = {index: pool.submit(self._run_tool, calls[index]) for index in tool_jobs}
                for index, future in futures.items():
                    results[index] = future.result()
        observations = [result for result in results if result is not None]
        for call, observation in zip(calls, observations):
            if call.call_id:
                observation.message.extra["call_id"] = call.call_id
        return observations

    @staticmethod
    def _error_observation(call: ToolCall, text: str) -> Observation:
        return Observation(Message("observation", text, extra={"tool": call.name, "error": text}), ok=False)

    def _run_tool(self, event: ToolCall) -> Observation:
        enabled = self.enabled_tools
        if self.mode != "tool" or (enabled is not None and event.name not in enabled):
            available = ", ".join(enabled if enabled is not None else self.registry.names()) if self.registry else ""
            text = f"Error: tool {event.name!r} is not available. Available tools: {available or 'none'}."
            return Observation(Message("observation", text, extra={"tool": event.name, "error": text}), ok=False)
        result = self.registry.call(event.name, event.arguments or {}, timeout=self.tool_timeout)
        extra: dict[str, Any] = {"tool": event.name, "arguments": result.arguments, "duration": result.duration}
        if not result.ok:
            extra["error"] = result.error
        images = result.images
        if images:
            extra["image_data"] = [image.to_extra() for image in images]
        return Observation(Message("observation", result.observation(), extra=extra), result.ok, result.duration)

    def _apply_edit(self, pending: list[Message], code: str) -> None:
        """The user edited the model's code before running it: the history keeps the code that runs (so the
        model sees it) with `extra["edited"]` and the model's original in `extra["original_code"]`."""
        for message in pending:
            call = self._call_event(message)
            if call.kind == "code" and not call.error:
                message.extra.update(edited=True, original_code=call.code, arguments={"code": code})
                message.content = f"```python\n{code.rstrip()}\n```"
                return
        raise ConfigError("there is no pending code to replace with the edited code")

    def _live(self, work: Callable[[], Any]) -> Generator[Event, None, Any]:
        """Run work() (the calls of one turn) in a thread and yield the OutputDelta events of its code as
        they arrive; returns what work() returned. If the consumer stops listening (a stop button, a closed
        stream) the running code is interrupted."""
        if self.mode != "code":
            return work()
        events: queue.Queue = queue.Queue()
        done = object()
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = work()
            except BaseException as exc:  # handed to the consumer's thread and raised there
                box["error"] = exc
            finally:
                events.put(done)

        seen: list[Any] = []  # the outputs so far, for an observation if the consumer leaves mid-run

        def sink(event: OutputDelta) -> None:
            seen.append(event.output)
            events.put(event)

        self._sink = sink
        self._abandoned = {"box": box, "outputs": seen, "left": threading.Event()}
        worker = threading.Thread(target=target, name="agent-code", daemon=True)
        started = time.monotonic()
        worker.start()
        finished = False
        try:
            while True:
                try:
                    item = events.get(timeout=1.0)
                except queue.Empty:
                    yield CodeRunning(time.monotonic() - started)
                    continue
                if item is done:
                    break
                yield item
            finished = True
        finally:
            self._sink = None
            if not finished:
                self._abandoned["left"].set()  # later code calls of this turn are not started
                with contextlib.suppress(SandboxError):
                    self.sandbox.interrupt()
                # a moment for the interrupted code to answer, so its partial output can be recorded
                worker.join(self.interrupt_wait)
        if "error" in box:
            raise box["error"]
        return box["value"]

    _INTERRUPTED_NOTE = "Interrupted by the user: the output up to the interrupt is kept for the model."

    def _abandoned_observations(self, calls: list[ToolCall]) -> list[Observation]:
        """The observations of a run the consumer left: what the interrupted code returned (or, if it has not
        answered the interrupt yet, what it had printed so far), each marked as interrupted by the user."""
        state = getattr(self, "_abandoned", None) or {}
        observations = (state.get("box") or {}).get("value")
        if not isinstance(observations, list):  # still running: build the observations from its outputs so far
            from .sandbox.outputs import ExecutionResult

            partial = ExecutionResult(list(state.get("outputs") or []), "interrupted", "interrupted by the user", 0.0)
            observations = [self._not_run(call) for call in calls]
            first_code = next((i for i, c in enumerate(calls) if c.kind == "code" and not c.error), None)
            if first_code is not None and self.mode == "code":
                images = [o.filename for o in partial.outputs if getattr(o, "filename", "")]
                extra = {"status": "interrupted", "images": images, "interrupted": True, "note": self._INTERRUPTED_NOTE}
                observations[first_code] = Observation(
                    Message("observation", partial.observation(self.observation_chars), extra=extra), ok=False)
            for call, observation in zip(calls, observations):
                if call.call_id:
                    observation.message.extra["call_id"] = call.call_id
        for observation in observations:
            extra = observation.message.extra
            if extra.get("status") not in (None, "ok") and not extra.get("interrupted"):
                extra.update(interrupted=True, note=self._INTERRUPTED_NOTE)
                observation.message.content += "\n[the user interrupted this run; the output above is all it produced]"
        return observations

    @staticmethod
    def _not_run(call: ToolCall) -> Observation:
        text = f"[not run: the user interrupted the run before {call.name} was reached]"
        return Observation(Message("observation", text, extra={"status": "interrupted", "interrupted": True}), ok=False)

    def _run_code(self, code: str) -> Observation:
        if not code.strip():
            text = "Error: no ```python code block found in your message; write the code inside ```python ... ```."
            return Observation(Message("observation", text), ok=False)
        started = time.perf_counter()
        sink = getattr(self, "_sink", None)
        on_output = (lambda output: sink(OutputDelta(output))) if sink is not None else None
        try:
            result = self.sandbox.execute(code, timeout=self.code_timeout, on_output=on_output)
        except SandboxError as exc:  # the kernel could not start: the model and the user both see why
            text = f"Error: the sandbox could not run the code: {exc}"
            return Observation(Message("observation", text, extra={"status": "error"}), ok=False)
        duration = time.perf_counter() - started
        text = result.observation(self.observation_chars)
        images = [o.filename for o in result.outputs if getattr(o, "filename", "")]
        extra = {"status": result.status, "duration": duration, "images": images}
        if result.message:
            extra["note"] = result.message
        return Observation(
            Message("observation", text, extra=extra), result.status == "ok", duration, list(result.outputs)
        )
