"""Conversation data shared by every layer: messages, parsed assistant turns and sampling parameters."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .errors import ConfigError

__all__ = ["Message", "Call", "AssistantTurn", "SamplingParams", "ROLES"]

ROLES = ("system", "user", "assistant", "observation")


@dataclass
class Message:
    """One message in the ChatGLM3 four-role format.

    `metadata` is the text after the role token on the same line (a tool name, `interpreter`, or
    empty). `extra` holds UI-only data (images, durations, parsed arguments) that is never sent
    to the model.
    """

    role: str
    content: str
    metadata: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ConfigError(f"unknown message role {self.role!r}; expected one of {', '.join(ROLES)}")
        if not isinstance(self.content, str):
            raise ConfigError(f"message content must be text, got {type(self.content).__name__}")

    def to_dict(self, with_extra: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not with_extra:
            data.pop("extra")
        return data

    @classmethod
    def from_dict(cls, data: Any) -> "Message":
        if not isinstance(data, dict):
            raise ConfigError(f"a message must be a JSON object with role and content, got {type(data).__name__}")
        missing = [key for key in ("role", "content") if key not in data]
        if missing:
            raise ConfigError(f"message {data!r:.80} lacks {', '.join(missing)}")
        metadata = data.get("metadata") or ""
        extra = data.get("extra") or {}
        if not isinstance(metadata, str) or not isinstance(extra, dict):
            raise ConfigError("message metadata must be a string and extra an object")
        return cls(role=data["role"], content=data["content"], metadata=metadata, extra=dict(extra))


@dataclass
class Call:
    """One tool call, parsed once where the call syntax is known (the dialect or the backend).

    Either `arguments` holds the parsed arguments, or `error` says why the call text could not be
    parsed (the agent returns that error to the model as the call's observation). `id` is the
    engine's call id (OpenAI `tool_call_id`), empty for ChatGLM3, which has one call per turn.
    """

    name: str
    arguments: dict[str, Any] | None = None
    error: str = ""
    id: str = ""


@dataclass
class AssistantTurn:
    """A parsed assistant turn: plain text, a tool call, or interpreter code."""

    kind: Literal["text", "tool_call", "code"]
    text: str  # the raw turn text as generated: metadata + "\n" + content
    metadata: str = ""
    content: str = ""
    tool_name: str = ""
    code: str = ""  # the python block (tool_call(...) for tool calls, program for code)
    arguments: dict[str, Any] | None = None  # filled when the dialect gives structured arguments
    calls: list[Call] = field(default_factory=list)  # the parsed tool calls of this turn, in order

    def to_message(self) -> Message:
        return Message("assistant", self.content, self.metadata)


@dataclass
class SamplingParams:
    """Generation settings. temperature 0 means greedy decoding."""

    max_new_tokens: int = 512
    max_length: int = 8192  # prompt + output tokens, ChatGLM3's parameter
    temperature: float = 0.8
    top_p: float = 0.8
    repetition_penalty: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.max_new_tokens >= 1, "max_new_tokens must be at least 1"),
            (self.max_length >= 2, "max_length must be at least 2"),
            (self.temperature >= 0, "temperature must be 0 (greedy) or positive"),
            (0 < self.top_p <= 1, "top_p must be in (0, 1]"),
            (self.repetition_penalty > 0, "repetition_penalty must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"{message}; got {asdict(self)}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0
