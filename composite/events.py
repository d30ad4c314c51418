"""The one event stream: what generation and the agent loop report, for every renderer (page, CLI, server)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .messages import AssistantTurn, Message

__all__ = [
    "Event",
    "Waiting",
    "ContextTrimmed",
    "TextDelta",
    "TurnEnd",
    "AssistantMessage",
    "ToolCall",
    "OutputDelta",
    "CodeRunning",
    "Observation",
    "ApprovalNeeded",
    "Notice",
    "Failure",
    "Done",
]


@dataclass
class Event:
    """Base of all events."""


@dataclass
class Waiting(Event):
    """Another session is generating on the shared model; this one waits for the lock."""

    message: str = "waiting for another session to finish generating"


@dataclass
class ContextTrimmed(Event):
    """Old turns were dropped (or the last message cut) so the prompt fits the context."""

    dropped_messages: int
    truncated_chars: int
    prompt_tokens: int
    budget: int

    @property
    def message(self) -> str:
        parts = []
        if self.dropped_messages:
            parts.append(f"dropped the {self.dropped_messages} oldest message(s)")
        if self.truncated_chars:
            parts.append(f"cut {self.truncated_chars} characters from the start of the last message")
        return f"context full: {' and '.join(parts)} to fit {self.budget} prompt tokens"


@dataclass
class TextDelta(Event):
    """New text of the assistant turn being generated (raw: metadata line included)."""

    text: str


@dataclass
class TurnEnd(Event):
    """One generation finished: the parsed turns and why it stopped."""

    turns: list[AssistantTurn]
    finish_reason: str  # "stop" | "length" | "cancelled"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0


@dataclass
class AssistantMessage(Event):
    """An assistant message was appended to the history."""

    message: Message


@dataclass
class ToolCall(Event):
    """The model asked to run a tool (kind "tool") or code (kind "code")."""

    kind: str
    name: str
    code: str
    arguments: dict[str, Any] | None = None
    call_id: str = ""  # matches the observation's extra["call_id"] (several calls in one turn)
    error: str = ""  # why the call could not be parsed; it then gets an error observation and never runs


@dataclass
class OutputDelta(Event):
    """Output of running code as it arrives (stdout/stderr text, a result, an image): a live view only;
    the whole ordered, capped result follows as the Observation."""

    output: Any  # composite.sandbox.Output


@dataclass
class CodeRunning(Event):
    """Code is still running and silent (about once a second): renderers show the elapsed time, and a
    page gets the chance to handle its Interrupt button."""

    seconds: float


@dataclass
class Observation(Event):
    """The result of a tool call or code execution, appended to the history."""

    message: Message
    ok: bool = True
    duration: float = 0.0
    outputs: list[Any] = field(default_factory=list)  # sandbox outputs (ordered) for rich rendering


@dataclass
class ApprovalNeeded(Event):
    """The loop paused: the user must approve, reject or answer (manual mode) the pending call(s)."""

    call: ToolCall
    calls: list[ToolCall] = field(default_factory=list)  # every pending call of the turn, in order


@dataclass
class Notice(Event):
    """Something the user should know that is not an error (loop bound reached, sandbox reduced...)."""

    message: str
    level: str = "info"  # "info" | "warning"


@dataclass
class Failure(Event):
    """An error that ended this turn; the app stays usable."""

    message: str


@dataclass
class Done(Event):
    """The agent finished this user turn."""

    reason: str = "answered"  # "answered" | "cancelled" | "round_limit" | "awaiting_approval" | "error" | "length"
