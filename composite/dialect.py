"""Deprecated import path (kept for one release): the dialects live in `composite.dialects`."""

from .dialects.base import Dialect
from .dialects.calls import extract_code_block
from .dialects.chatglm3 import ChatGLM3Dialect, parse_chatglm3_turn, tools_text

__all__ = ["Dialect", "ChatGLM3Dialect", "parse_chatglm3_turn", "extract_code_block", "tools_text"]
