"""Prompt dialects: each renders a conversation to token ids and parses generated ids into turns,
parsing the model's tool calls once (`calls.py` holds the safe parser of each call syntax).
"""

from .base import Dialect, stopped_answer
from .calls import call_of_message, chatglm3_call, extract_code_block, json_calls, openai_call, parse_tool_call
from .chat_template import PYTHON_TOOL, ChatTemplateDialect, parse_template_turn, template_messages
from .chatglm3 import ChatGLM3Dialect, parse_chatglm3_turn, tools_text

__all__ = [
    "Dialect",
    "ChatGLM3Dialect",
    "ChatTemplateDialect",
    "PYTHON_TOOL",
    "call_of_message",
    "chatglm3_call",
    "extract_code_block",
    "json_calls",
    "openai_call",
    "parse_chatglm3_turn",
    "parse_template_turn",
    "parse_tool_call",
    "stopped_answer",
    "template_messages",
    "tools_text",
]
