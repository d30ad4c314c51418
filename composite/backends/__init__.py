"""Model backends behind one `Backend` protocol: the local transformers runtime and OpenAI-compatible servers.

Imported lazily so `import composite.backends` stays fast (no torch, no openai until used).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["Backend", "ModelInfo", "LocalRuntime", "load_model", "OpenAIBackend"]

_WHERE = {
    "Backend": "composite.backends.base",
    "ModelInfo": "composite.backends.base",
    "LocalRuntime": "composite.backends.local",
    "load_model": "composite.backends.local",
    "OpenAIBackend": "composite.backends.openai",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'composite.backends' has no attribute {name!r}")
    return getattr(import_module(_WHERE[name]), name)
