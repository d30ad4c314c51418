"""The chat-template dialect: any Hugging Face model whose tokenizer has a chat template.

Conversations are rendered through `apply_chat_template` (tools in OpenAI's format), tool calls are
parsed from the Hermes format (`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`) or a
bare JSON call, and code mode is a `python` tool with a `code` argument.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .dialect import extract_code_block
from .errors import DialectError, ModelLoadError
from .messages import AssistantTurn, Message

__all__ = ["ChatTemplateDialect", "PYTHON_TOOL", "parse_template_turn"]

PYTHON_TOOL = {
    "name": "python",
    "description": "Run Python code in a sandboxed Jupyter kernel (no network) and return what it printed.",
    "parameters": {
        "type": "object",
        "properties": {"code": {"type": "string", "description": "the Python code to run"}},
        "required": ["code"],
    },
}
_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.DOTALL)
# Common end-of-turn markers of chat templates; those present in a vocabulary become stop tokens.
_END_MARKERS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<|endoftext|>", "<|user|>", "<|observation|>", "</s>")


def _call_from_json(raw: str) -> tuple[str, dict[str, Any]] | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    arguments = data.get("arguments", data.get("parameters", {}))
    if isinstance(arguments, str):  # some models emit the arguments as a JSON string
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    return data["name"], arguments


def _call_turn(text: str, name: str, arguments: dict[str, Any] | None, raw: str) -> AssistantTurn:
    if name == "python" and arguments is not None:
        code = str(arguments.get("code", ""))
        return AssistantTurn("code", text, "interpreter", f"```python\n{code}\n```", code=code, arguments=arguments)
    return AssistantTurn("tool_call", text, name, raw, tool_name=name, code=raw, arguments=arguments)


def parse_template_turn(text: str) -> AssistantTurn:
    """Classify generated text: a Hermes or bare-JSON tool call, else plain text."""
    match = _HERMES.search(text)
    if match:
        raw = match.group(1)
        call = _call_from_json(raw)
        if call is None:
            named = re.search(r'"name"\s*:\s*"([^"]+)"', raw)
            # arguments None: the agent answers with an observation explaining the malformed call
            return _call_turn(text, named.group(1) if named else "unknown", None, raw)
        return _call_turn(text, call[0], call[1], raw)
    stripped = text.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        call = _call_from_json(stripped)
        if call is not None:
            return _call_turn(text, call[0], call[1], stripped)
    return AssistantTurn("text", text, "", stripped)


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

    @staticmethod
    def _call_of(message: Message) -> tuple[str, dict[str, Any]]:
        from .errors import ToolCallError
        from .toolcall import parse_tool_call

        if message.extra.get("structured") and isinstance(message.extra.get("arguments"), dict):
            arguments = message.extra["arguments"]
            return ("python" if message.metadata == "interpreter" else message.metadata), arguments
        code = extract_code_block(message.content) or ""
        if message.metadata == "interpreter":
            return "python", {"code": code}
        try:
            return message.metadata, parse_tool_call(code)
        except ToolCallError:
            return message.metadata, {}  # an invalid past call: replay its name; its observation says why

    def to_template_messages(self, messages: list[Message]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        last_call = ""
        for message in messages:
            if message.role == "assistant" and message.metadata:
                name, arguments = self._call_of(message)
                last_call = name
                out.append(
                    {
                        "role": "assistant",
                        "content": "",
                        "tool_calls": [{"type": "function", "function": {"name": name, "arguments": arguments}}],
                    }
                )
            elif message.role == "observation":
                out.append({"role": "tool", "name": last_call, "content": message.content})
            else:
                out.append({"role": message.role, "content": message.content})
        return out

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
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def parse(self, ids: list[int]) -> list[AssistantTurn]:
        stops = self.stop_ids()
        kept = []
        for token in ids:
            if token in stops:
                break
            kept.append(token)
        return [parse_template_turn(self.decode(kept))]
