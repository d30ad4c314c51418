"""Deprecated import path (kept for one release): the chat-template dialect is `composite.dialects.chat_template`."""

from .dialects.chat_template import PYTHON_TOOL, ChatTemplateDialect, parse_template_turn

__all__ = ["ChatTemplateDialect", "PYTHON_TOOL", "parse_template_turn"]
