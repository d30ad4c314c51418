"""The embedded model's sentencepiece tokenizer: lossless (identity normalization), byte fallback, split digits.

Frequent words of the fixed texts become whole pieces; everything else splits into single characters,
so a name is the same token sequence wherever it appears (which is what makes copying it learnable).
"""

from __future__ import annotations

import io
import re
from collections import Counter
from pathlib import Path

__all__ = ["pick_symbols", "train_tokenizer"]

# ▁-prefixed pieces only for lowercase words: a capitalized name after a space then keeps the same
# pieces as inside quotes (" Oslo" and "\"Oslo" both contain O, s, l, o).
_WORD = re.compile(r"(?:(?<= )[a-z]{2,})|[A-Za-z_]{3,}|[`{}\[\]\":,()\n*#=.]{2,}")


def pick_symbols(texts: list[str], max_symbols: int, min_count: int) -> list[str]:
    """The most useful whole-word pieces: frequent (so no made-up name qualifies), ranked by characters saved."""
    counts: Counter[str] = Counter()
    for text in texts:
        for match in _WORD.finditer(text):
            piece = match.group(0)
            start = match.start()
            if start > 0 and text[start - 1] == " " and piece[0].islower():
                piece = "\u2581" + piece
            counts[piece] += 1
    scored = [(count * (len(piece) - 1), piece) for piece, count in counts.items() if count >= min_count]
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [piece for _, piece in scored[:max_symbols]]


def train_tokenizer(texts: list[str], out_file: Path, max_symbols: int = 480, min_count: int = 40,
                    extra_chars: str = "") -> int:
    """Train the sentencepiece model on texts; returns its vocabulary size."""
    import sentencepiece as spm

    symbols = pick_symbols(texts, max_symbols, min_count)
    # The python wrapper joins list options with commas, so a piece cannot contain one.
    symbols = [s for s in symbols if "," not in s and len(s) >= 2]
    chars = sorted(set("".join(texts)) | set(extra_chars) | {chr(c) for c in range(32, 127)} | {"\n", "\t"})
    chars = [c for c in chars if c != " "]
    corpus = list(texts) + ["".join(chars)] * 3
    needed = 3 + 256 + len(chars) + len(symbols) + 1
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=model,
        vocab_size=needed,
        model_type="unigram",
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,
        byte_fallback=True,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        split_by_unicode_script=False,
        character_coverage=1.0,
        user_defined_symbols=symbols,
        max_sentence_length=1 << 20,
        input_sentence_size=0,
        num_threads=2,
        minloglevel=2,
    )
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_bytes(model.getvalue())
    proc = spm.SentencePieceProcessor(model_proto=model.getvalue())
    return proc.vocab_size()
