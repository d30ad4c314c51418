"""The default system prompt of each mode. The embedded model is trained on exactly these texts."""

from __future__ import annotations

__all__ = ["MODES", "SYSTEM_PROMPTS", "system_prompt", "with_uploads"]

MODES = ("chat", "tool", "code")

SYSTEM_PROMPTS = {
    "chat": "You are a helpful assistant. Answer the user's questions.",
    "tool": "Answer the questions as well as you can. You can call these tools:",
    "code": (
        "You are a helpful assistant connected to a Python computer without network access. "
        "Run code to solve tasks. Uploaded files are in the current directory."
    ),
}


def system_prompt(mode: str) -> str:
    """The default system prompt of a mode (chat, tool or code)."""
    from .errors import ConfigError

    if mode not in SYSTEM_PROMPTS:
        raise ConfigError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    return SYSTEM_PROMPTS[mode]


def with_uploads(prompt: str, names: list[str]) -> str:
    """The user's question as the Code page sends it after files were uploaded: their names appended, so
    the model knows what is in its working directory (the embedded model is trained on this form too)."""
    if not names:
        return prompt
    return f"{prompt}\n\n(Uploaded files in the working directory: {', '.join(names)})"
