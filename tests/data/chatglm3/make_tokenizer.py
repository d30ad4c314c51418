"""Regenerate tokenizer.model: a 151-piece sentencepiece model (151 + 9 special tokens = vocab 160).

Run: python tests/data/chatglm3/make_tokenizer.py  (deterministic; the reference weights are random anyway)
"""

from __future__ import annotations

import io
from pathlib import Path


def main() -> None:
    import sentencepiece as spm

    text = [f"the quick brown fox {i} jumps over the lazy dog; hello world, chat with a local model {i * 7}!" for i in range(300)]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text),
        model_writer=buf,
        vocab_size=151,
        model_type="bpe",
        character_coverage=1.0,
        normalization_rule_name="identity",
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    (Path(__file__).parent / "tokenizer.model").write_bytes(buf.getvalue())


if __name__ == "__main__":
    main()
