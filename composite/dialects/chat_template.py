"""The chat-template dialect: any Hugging Face model whose tokenizer has a chat template.

Conversations are rendered through `apply_chat_template` (tools in OpenAI's format); tool calls are
parsed from the Hermes format (`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, several per
turn) or a bare JSON call, and code mode is a `python` tool with a `code` argument.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import DialectError, ModelLoadError
from ..messages import AssistantTurn, Call, Message
from .calls import call_of_message, json_calls

__all__ = ["ChatTemplateDialect", "PYTHON_TOOL", "parse_template_turn", "template_messages"]

PYTHON_TOOL = {
    "name": "python",
    "description": "Run Python code in a sandboxed Jupyter kernel (no network) and return what it printed.",
    "parameters": {
        "type": "object",
        "properties": {"code": {"type": "string", "description": "the Python code to run"}},
        "required": ["code"],
    },
}
# Common end-of-turn markers of chat templates; those present in a vocabulary become stop tokens.
_END_MARKERS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<|endoftext|>", "<|user|>", "<|observation|>", "</s>")


def _call_text(call: Call, raw: str) -> str:
    if call.arguments is None:
        return raw
    return json.dumps({"name": call.name, "arguments": call.arguments}, ensure_ascii=False)


def parse_template_turn(text: str) -> AssistantTurn:
    """Classify generated text: Hermes or bare-JSON tool calls (all of them, in order), else plain text."""
    calls = json_calls(text)
    if not calls:
        return AssistantTurn("text", text, "", text.strip())
    first = calls[0]
    if len(calls) == 1 and first.name == "python" and first.arguments is not None:
        code = str(first.arguments.get("code", ""))
        return AssistantTurn("code", text, "interpreter", f"```python\n{code}\n```", code=code,
                             arguments=first.arguments, calls=calls)
    content = _call_text(first, text.strip())
    return AssistantTurn("tool_call", text, first.name, content, tool_name=first.name, code=content,
                         arguments=first.arguments, calls=calls)


def _is_call(message: Message) -> bool:
    return message.role == "assistant" and bool(message.metadata)


def template_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Our history in the OpenAI message layout chat templates expect.

    Consecutive call messages (one per call) become one assistant message with several `tool_calls`;
    each observation becomes a `tool` message answering its call (by `call_id`, else by position).
    """
    out: list[dict[str, Any]] = []
    pending: list[tuple[str, str]] = []  # (call id, tool name) of the last calls, in order
    answered = 0
    for index, message in enumerate(messages):
        if _is_call(message):
            call = call_of_message(message)
            name = "python" if message.metadata == "interpreter" else message.metadata
            call_id = call.id or f"call_{index}"
            entry = {"id": call_id, "type": "function", "function": {"name": name, "arguments": call.arguments or {}}}
            if out and out[-1].get("tool_calls") and index and _is_call(messages[index - 1]):
                out[-1]["tool_calls"].append(entry)
            else:
                out.append({"role": "assistant", "content": "", "tool_calls": [entry]})
                pending, answered = [], 0
            pending.append((call_id, name))
        elif message.role == "observation":
            wanted = str(message.extra.get("call_id") or "")
            match = next((p for p in pending if wanted and p[0] == wanted), None)
            if match is None:
                match = pending[answered] if answered < len(pending) else (pending[-1] if pending else ("", ""))
            answered += 1
            out.append({"role": "tool", "tool_call_id": match[0], "name": match[1], "content": message.content})
        else:
            out.append({"role": message.role, "content": message.content})
    return out


class ChatTemplateDialect:
    """Renders with the tokenizer's chat template; parses Hermes-style tool calls."""

    name = "chat-template"

    def __init__(self, tokenizer: Any, extra_stop_ids: set[int] | None = None):
        if not getattr(tokenizer, "chat_template", None):
            raise ModelLoadError("the tokenizer has no chat template; expected a chat (instruct) model")
        self.tokenizer = tokenizer
        self._stops = set(extra_stop_ids or ())
        eos = tokenizer.eos_token_id
        if eos is not None:
            self._stops.add(int(eos))
        vocab = tokenizer.get_vocab()
        self._stops.update(vocab[m] for m in _END_MARKERS if m in vocab)
        self._special_ids = set(getattr(tokenizer, "all_special_ids", None) or ()) | self._stops

    @classmethod
    def from_folder(cls, folder: str | Path) -> "ChatTemplateDialect":
        from transformers import AutoTokenizer

        folder = Path(folder)
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"{folder}: cannot load a tokenizer ({exc}); expected tokenizer files") from exc
        if not getattr(tokenizer, "chat_template", None):
            raise ModelLoadError(
                f"{folder}: the tokenizer has no chat template; expected a chat model (or a ChatGLM3 checkpoint)"
            )
        stops: set[int] = set()
        generation = folder / "generation_config.json"
        if generation.is_file():
            try:
                eos = json.loads(generation.read_text(encoding="utf-8")).get("eos_token_id")
            except ValueError:
                eos = None
            stops.update(eos if isinstance(eos, list) else [eos] if isinstance(eos, int) else [])
        return cls(tokenizer, stops)

    # -- rendering -----------------------------------------------------------------------------
    @staticmethod
    def _openai_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if not tools:
            return None
        return [t if t.get("type") == "function" else {"type": "function", "function": t} for t in tools]

    def to_template_messages(self, messages: list[Message]) -> list[dict[str, Any]]:
        return template_messages(messages)

    def render(self, messages: list[Message], tools: list[dict[str, Any]] | None = None) -> list[int]:
        if not messages:
            raise DialectError("cannot render an empty conversation; expected at least one message")
        try:
            text = self.tokenizer.apply_chat_template(
                self.to_template_messages(messages),
                tools=self._openai_tools(tools),
                add_generation_prompt=True,
                tokenize=False,
            )
        except Exception as exc:  # jinja templates raise anything (TemplateError, TypeError...): report it
            raise DialectError(f"the model's chat template failed to render the conversation: {exc}") from exc
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def code_tools(self) -> list[dict[str, Any]]:
        return [PYTHON_TOOL]

    def stop_ids(self) -> set[int]:
        return set(self._stops)

    def decode(self, ids: list[int]) -> str:
        # Drop the tokenizer's special tokens (bos, eos, pad, role markers) but keep added tokens such as
        # <tool_call>, which some tokenizers mark special too: skip_special_tokens would erase the calls.
        special = self._special_ids
        return self.tokenizer.decode([t for t in ids if t not in special], skip_special_tokens=False)

    def parse(self, ids: list[int]) -> list[AssistantTurn]:
        stops = self.stop_ids()
        kept = []
        for token in ids:
            if token in stops:
                break
            kept.append(token)
        return [parse_template_turn(self.decode(kept))]
