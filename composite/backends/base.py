"""The backend seam: the `Backend` protocol (stream one assistant turn for a conversation) and `ModelInfo`.

Two implementations: `local.LocalRuntime` (transformers in this process) and `openai.OpenAIBackend`
(any OpenAI-compatible server). The agent, the pages, the CLI and the server only know this protocol.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..events import Event
    from ..messages import Message, SamplingParams

__all__ = ["Backend", "ModelInfo"]


@dataclass
class ModelInfo:
    """Facts about the model behind a backend, shown in the sidebar and `--json` output."""

    name: str
    path: str
    device: str
    dtype: str
    parameters: int
    context_length: int
    dialect: str
    quantize: int | None = None
    load_seconds: float = 0.0
    backend: str = "local"
    engine: str = "torch"  # local backends: "torch" or "numpy" (numpy_glm.py)

    def summary(self) -> str:
        if self.backend != "local":
            return f"{self.name} · {self.backend} server {self.path} · dialect {self.dialect}"
        quant = f", {self.quantize}-bit" if self.quantize else ""
        engine = " (NumPy engine)" if self.engine == "numpy" else ""
        return (
            f"{self.name} · {self.parameters / 1e6:,.1f} M parameters · {self.device} {self.dtype}{quant}{engine} · "
            f"context {self.context_length} · dialect {self.dialect}"
        )


@runtime_checkable
class Backend(Protocol):
    """Anything that turns a conversation into one streamed assistant turn."""

    info: ModelInfo

    def stream_turn(
        self,
        messages: list[Message],
        tools: list[dict[str, Any]] | None,
        params: SamplingParams,
        stop: threading.Event | None = None,
    ) -> Iterator[Event]:
        """Yield Waiting / ContextTrimmed / Notice / TextDelta events, then exactly one TurnEnd. A backend that
        fails mid-way (a server error) yields a Failure, then a TurnEnd with finish_reason "error" that keeps
        the partial answer; a bad setting raises a CompositeError."""
        ...

    def code_tools(self) -> list[dict[str, Any]] | None:
        """The tools that stand for the code interpreter in code mode (None: the dialect has its own role)."""
        ...
