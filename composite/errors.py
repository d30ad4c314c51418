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
    "McpError",
    "SandboxError",
    "BackendError",
    "GatewayError",
    "StoreError",
    "NotFoundError",
    "ConflictError",
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


class McpError(ToolError):
    """An MCP server failed to start, crashed, did not answer in time, or answered a call with an error."""


class SandboxError(CompositeError):
    """The code sandbox could not start or run code."""


class GatewayError(SandboxError):
    """A kernel gateway is unreachable, refused the token or a kernel start, or dropped the kernel's websocket."""


class StoreError(CompositeError):
    """The history database cannot be opened, read or written (locked, read-only, full, corrupt, down)."""


class NotFoundError(StoreError):
    """No stored conversation or run with that id (for this user)."""


class ConflictError(StoreError):
    """A stored conversation was changed by another session since this one last wrote it."""


class BackendError(CompositeError):
    """A model server failed: unreachable, refused the key, lacks the model, overloaded, or cut the answer."""

    def __init__(self, message: str, status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.status = status
        self.retryable = retryable
