"""The agent loop: generate → (tool call or code) → observation → generate, as one stream of events.

The history list is the whole state: the loop appends to it as it goes, so a renderer can stop
consuming at any event (a paused approval, a stop button) and resume later from the history alone.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Literal

from .errors import ConfigError, SandboxError
from .events import (
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
from .messages import AssistantTurn, Message, SamplingParams
from .prompts import MODES

if TYPE_CHECKING:
    from .backends.base import Backend

__all__ = ["Agent", "Decision", "pending_call", "rounds_used"]

Policy = Literal["auto", "ask", "manual"]
POLICIES = ("auto", "ask", "manual")


@dataclass
class Decision:
    """The user's answer to an ApprovalNeeded event."""

    action: Literal["run", "reject", "observe"]
    text: str = ""  # the observation typed by the user in manual mode


def _turn_of(message: Message) -> AssistantTurn | None:
    """Re-parse a stored assistant message into a call (tool or code), or None for plain text."""
    from .dialect import extract_code_block

    if message.role != "assistant" or not message.metadata:
        return None
    code = extract_code_block(message.content) or ""
    arguments = message.extra.get("arguments") if message.extra.get("structured") else None
    if message.metadata == "interpreter":
        return AssistantTurn("code", message.content, message.metadata, message.content, code=code)
    return AssistantTurn(
        "tool_call", message.content, message.metadata, message.content, message.metadata, code, arguments
    )


def pending_call(history: list[Message]) -> AssistantTurn | None:
    """The last message's call when it still awaits its observation."""
    if not history:
        return None
    return _turn_of(history[-1])


def rounds_used(history: list[Message]) -> int:
    """Observations since the last user message: tool/code rounds already spent on this user turn."""
    count = 0
    for message in reversed(history):
        if message.role == "user":
            break
        count += message.role == "observation"
    return count


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
        call = pending_call(history) if self.mode != "chat" else None
        while True:
            if call is not None:
                if rounds_used(history) >= self.max_rounds:
                    yield Notice(
                        f"stopped after {self.max_rounds} tool/code round(s) for this question (the loop bound); "
                        "raise the bound or ask again to continue",
                        "warning",
                    )
                    yield Done("round_limit")
                    return
                event = self._call_event(call)
                yield event
                if decision is None and self.policy != "auto" and event.kind == "tool":
                    yield ApprovalNeeded(event)
                    yield Done("awaiting_approval")
                    return
                observation = self._observe(call, event, decision)
                decision = None
                history.append(observation.message)
                yield observation
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
            turns = [t for t in end.turns if t.text or t.content]
            for turn in turns:
                message = turn.to_message()
                if turn.arguments is not None:
                    message.extra.update(structured=True, arguments=turn.arguments)
                history.append(message)
                yield AssistantMessage(message)
            if end.finish_reason == "cancelled":
                yield Done("cancelled")
                return
            last = turns[-1] if turns else None
            call = last if last is not None and last.kind != "text" and self.mode != "chat" else None
            if call is None:
                if end.finish_reason == "length":
                    yield Notice("the answer stopped at the token limit (max_new_tokens / max_length)", "warning")
                yield Done("length" if end.finish_reason == "length" else "answered")
                return
            if end.finish_reason == "length":
                yield Notice("the call was cut off by the token limit; not running it", "warning")
                yield Done("length")
                return

    def _call_event(self, call: AssistantTurn) -> ToolCall:
        if call.kind == "code" or (self.mode == "code" and call.tool_name == "python"):
            code = call.code if call.kind == "code" else str((call.arguments or {}).get("code", ""))
            return ToolCall("code", "interpreter", code)
        arguments = call.arguments
        if arguments is None and call.code:
            from .errors import ToolCallError
            from .toolcall import parse_tool_call

            try:
                arguments = parse_tool_call(call.code)
            except ToolCallError:
                arguments = None  # the observation will carry the parse error
        return ToolCall("tool", call.tool_name, call.code, arguments)

    def _observe(self, call: AssistantTurn, event: ToolCall, decision: Decision | None) -> Observation:
        if decision is not None and decision.action == "reject":
            text = f"The user declined to run {event.name}. Answer without it."
            return Observation(Message("observation", text, extra={"declined": True}), ok=False)
        if decision is not None and decision.action == "observe":
            return Observation(Message("observation", decision.text, extra={"manual": True}), ok=True)
        if event.kind == "code":
            return self._run_code(event.code)
        return self._run_tool(call, event)

    def _run_tool(self, call: AssistantTurn, event: ToolCall) -> Observation:
        from .toolcall import run_tool_call

        enabled = self.enabled_tools
        if self.mode != "tool" or (enabled is not None and event.name not in enabled):
            available = ", ".join(enabled if enabled is not None else self.registry.names()) if self.registry else ""
            text = f"Error: tool {event.name!r} is not available. Available tools: {available or 'none'}."
            return Observation(Message("observation", text), ok=False)
        if call.arguments is not None:
            result = self.registry.call(event.name, call.arguments, timeout=self.tool_timeout)
        else:
            result = run_tool_call(self.registry, event.name, call.code, timeout=self.tool_timeout)
        extra = {"tool": event.name, "arguments": result.arguments, "duration": result.duration}
        if not result.ok:
            extra["error"] = result.error
        return Observation(Message("observation", result.observation(), extra=extra), result.ok, result.duration)

    def _run_code(self, code: str) -> Observation:
        if not code.strip():
            text = "Error: no ```python code block found in your message; write the code inside ```python ... ```."
            return Observation(Message("observation", text), ok=False)
        started = time.perf_counter()
        try:
            result = self.sandbox.execute(code, timeout=self.code_timeout)
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
