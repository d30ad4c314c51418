"""ChatGLM3's four-role prompt format: render a conversation to ids and parse generated ids into turns.

    [gMASK] sop  then per message: <|role|> encode(metadata + "\n") encode(content)  ... <|assistant|>
A system message carrying tools gets the tools' JSON appended after a newline. Generation stops at
eos, <|user|> or <|observation|>. One tool call per turn. Pure functions (no model, no I/O).
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import DialectError
from ..messages import AssistantTurn, Message
from ..tokenizer import ChatGLMTokenizer
from .calls import chatglm3_call, extract_code_block

__all__ = ["ChatGLM3Dialect", "parse_chatglm3_turn", "tools_text"]

_TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


def tools_text(tools: list[dict[str, Any]], indent: int | None = 4) -> str:
    """The tools' JSON as ChatGLM3 appends it to the system prompt (indent 4, non-ASCII kept)."""
    if indent is None:
        return json.dumps(tools, ensure_ascii=False, separators=(",", ":"))
    return json.dumps(tools, ensure_ascii=False, indent=indent)


def parse_chatglm3_turn(text: str) -> AssistantTurn:
    """Split `metadata\\ncontent` and classify it as text, tool call (its Call parsed) or interpreter code."""
    if "\n" in text:
        metadata, content = text.split("\n", 1)
    else:
        metadata, content = "", text
    metadata = metadata.strip()
    if not metadata or not _TOOL_NAME.match(metadata):
        # A first line that cannot be a tool name is prose the model wrote without the empty
        # metadata line: keep all of it as text instead of inventing a call.
        content = (content if not metadata else text).strip()
        return AssistantTurn(kind="text", text=text, metadata="", content=content)
    content = content.strip("\n")
    code = extract_code_block(content)
    if metadata == "interpreter":
        return AssistantTurn(kind="code", text=text, metadata=metadata, content=content, code=code or "")
    call = chatglm3_call(metadata, content)
    return AssistantTurn(
        kind="tool_call", text=text, metadata=metadata, content=content, tool_name=metadata, code=code or "",
        arguments=call.arguments, calls=[call],
    )


class ChatGLM3Dialect:
    """ChatGLM3's prompt format over a ChatGLMTokenizer."""

    name = "chatglm3"

    def __init__(self, tokenizer: ChatGLMTokenizer, tools_indent: int | None = 4):
        self.tokenizer = tokenizer
        self.tools_indent = tools_indent

    def render_message(self, message: Message) -> list[int]:
        tok = self.tokenizer
        return [tok[f"<|{message.role}|>"]] + tok.encode(message.metadata + "\n") + tok.encode(message.content)

    def with_tools(self, messages: list[Message], tools: list[dict[str, Any]] | None) -> list[Message]:
        """Append the tools' JSON to the first system message (adding one if there is none)."""
        if not tools:
            return list(messages)
        suffix = tools_text(tools, self.tools_indent)
        out = list(messages)
        if out and out[0].role == "system":
            first = out[0]
            out[0] = Message("system", f"{first.content}\n{suffix}", first.metadata)
        else:
            out.insert(0, Message("system", suffix))
        return out

    def render(self, messages: list[Message], tools: list[dict[str, Any]] | None = None) -> list[int]:
        if not messages:
            raise DialectError("cannot render an empty conversation; expected at least one message")
        tok = self.tokenizer
        ids = [tok["[gMASK]"], tok["sop"]]
        for message in self.with_tools(messages, tools):
            ids += self.render_message(message)
        ids.append(tok["<|assistant|>"])
        return ids

    def stop_ids(self) -> set[int]:
        tok = self.tokenizer
        return {tok.eos_id, tok["<|user|>"], tok["<|observation|>"]}

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    def parse(self, ids: list[int]) -> list[AssistantTurn]:
        """Generated ids to turns. ChatGLM3 may emit <|assistant|> mid-generation to start a new turn."""
        assistant = self.tokenizer["<|assistant|>"]
        stops = self.stop_ids()
        segments: list[list[int]] = [[]]
        for token in ids:
            if token in stops:
                break
            if token == assistant:
                segments.append([])
            else:
                segments[-1].append(token)
        turns = [parse_chatglm3_turn(self.tokenizer.decode(seg)) for seg in segments if seg]
        return turns or [AssistantTurn(kind="text", text="", content="")]
