"""composite: chat with a local LLM in Chat, Tool and Code Interpreter modes (ChatGLM3 style).

The public API is imported lazily so `import composite` stays fast (no torch until a model loads).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = [
    "load_model",
    "Agent",
    "Decision",
    "Message",
    "SamplingParams",
    "register_tool",
    "ToolRegistry",
    "Sandbox",
    "SandboxConfig",
    "CompositeError",
]

_WHERE = {
    "load_model": "composite.backends.local",
    "Agent": "composite.agent",
    "Decision": "composite.agent",
    "Message": "composite.messages",
    "SamplingParams": "composite.messages",
    "register_tool": "tools",
    "ToolRegistry": "tools",
    "Sandbox": "composite.sandbox",
    "SandboxConfig": "composite.sandbox",
    "CompositeError": "composite.errors",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'composite' has no attribute {name!r}")
    return getattr(import_module(_WHERE[name]), name)
