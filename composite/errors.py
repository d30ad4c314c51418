"""The one exception hierarchy of composite: every error a user or a model can cause is a CompositeError."""

from __future__ import annotations

__all__ = [
    "CompositeError",
    "ConfigError",
    "ModelLoadError",
    "DialectError",
    "ToolError",
    "ToolRegistrationError",
    "ToolCallError",
    "ToolTimeoutError",
    "SandboxError",
]


class CompositeError(Exception):
    """Base class: the message says what was wrong and what was expected."""


class ConfigError(CompositeError):
    """A setting (environment variable, CLI flag, sidebar value) is invalid."""


class ModelLoadError(CompositeError):
    """A model path, checkpoint, architecture, device or memory budget does not work."""


class DialectError(CompositeError):
    """A conversation cannot be rendered to, or parsed from, a prompt format."""


class ToolError(CompositeError):
    """Base for tool registry and tool call problems."""


class ToolRegistrationError(ToolError):
    """A function cannot be registered as a tool (missing docstring, untyped parameter, duplicate...)."""


class ToolCallError(ToolError):
    """A model's tool call is malformed, names an unknown tool or has invalid arguments."""


class ToolTimeoutError(ToolError):
    """A tool ran longer than its time limit."""


class SandboxError(CompositeError):
    """The code sandbox could not start or run code."""
