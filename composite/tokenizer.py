"""ChatGLM3's tokenizer layout: a sentencepiece model followed by nine special tokens.

The special tokens are never produced from text: a user typing `<|user|>` gets the plain-text
pieces for those characters, so typed text cannot forge a role switch (prompt-injection guard).
"""

from __future__ import annotations

from pathlib import Path

from .errors import ModelLoadError

__all__ = ["SPECIAL_TOKENS", "ChatGLMTokenizer"]

# Order matters: ids are sentencepiece vocab size + index, exactly as in ChatGLM3.
SPECIAL_TOKENS = (
    "[MASK]",
    "[gMASK]",
    "[sMASK]",
    "sop",
    "eop",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|observation|>",
)


class ChatGLMTokenizer:
    """Encodes plain text with sentencepiece and exposes the special tokens by name."""

    def __init__(self, model_file: str | Path):
        import sentencepiece as spm

        path = Path(model_file)
        if not path.is_file():
            raise ModelLoadError(f"tokenizer model {path} not found; expected a sentencepiece tokenizer.model file")
        try:
            self.sp = spm.SentencePieceProcessor(model_file=str(path))
        except (OSError, RuntimeError) as exc:
            raise ModelLoadError(f"{path} is not a sentencepiece model: {exc}") from exc
        self.model_file = path
        self.sp_vocab_size = self.sp.vocab_size()
        self.special = {name: self.sp_vocab_size + i for i, name in enumerate(SPECIAL_TOKENS)}
        self.special_names = {i: name for name, i in self.special.items()}
        self.vocab_size = self.sp_vocab_size + len(SPECIAL_TOKENS)
        self.eos_id = self.sp.eos_id() if self.sp.eos_id() >= 0 else 2
        self.pad_id = self.sp.unk_id()

    def __getitem__(self, name: str) -> int:
        """The id of a special token, e.g. tok["<|user|>"]."""
        return self.special[name]

    def encode(self, text: str) -> list[int]:
        """Plain text to ids; special-token text stays plain text."""
        if not text:
            return []
        return list(self.sp.encode(text))

    def decode(self, ids: list[int], keep_special: bool = False) -> str:
        """Ids to text. Special tokens are dropped unless keep_special (then written by name)."""
        out: list[str] = []
        buffer: list[int] = []
        for token in ids:
            if token in self.special_names or token >= self.vocab_size or token < 0:
                if buffer:
                    out.append(self.sp.decode(buffer))
                    buffer = []
                if keep_special and token in self.special_names:
                    out.append(self.special_names[token])
            else:
                buffer.append(int(token))
        if buffer:
            out.append(self.sp.decode(buffer))
        return "".join(out)
