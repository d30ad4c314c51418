"""The `Dialect` protocol: what a model runtime needs from a prompt format (render, stop, decode, parse)."""

from __future__ import annotations

from typing import Any, Protocol

from ..messages import AssistantTurn, Message

__all__ = ["Dialect", "stopped_answer"]


class Dialect(Protocol):
    """Renders a conversation to token ids and parses generated ids into turns whose calls are parsed once."""

    name: str

    def render(self, messages: list[Message], tools: list[dict[str, Any]] | None = None) -> list[int]: ...

    def stop_ids(self) -> set[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def parse(self, ids: list[int]) -> list[AssistantTurn]: ...


def stopped_answer(text: str, dialect_name: str) -> str:
    """What to keep of a turn whose streaming was cut off (the page was stopped mid-generation).

    ChatGLM3 text starts with the metadata line: a plain answer keeps its content; anything else (a call
    cut in the middle, another dialect's raw text) is kept stripped, as text, never run.
    """
    if "chatglm3" in dialect_name:
        from .chatglm3 import parse_chatglm3_turn

        turn = parse_chatglm3_turn(text)
        if turn.kind == "text":
            return turn.content
    return text.strip()
