"""The `Dialect` protocol: what a model runtime needs from a prompt format (render, stop, decode, parse)."""

from __future__ import annotations

from typing import Any, Protocol

from ..messages import AssistantTurn, Message

__all__ = ["Dialect"]


class Dialect(Protocol):
    """Renders a conversation to token ids and parses generated ids into turns whose calls are parsed once."""

    name: str

    def render(self, messages: list[Message], tools: list[dict[str, Any]] | None = None) -> list[int]: ...

    def stop_ids(self) -> set[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def parse(self, ids: list[int]) -> list[AssistantTurn]: ...
