"""Copy-faithful decoding: a quotation in a tool call or in code stays true to the words it quotes.

A small model (the embedded one above all) knows *what* to quote — the city, the word to reverse, the
CSV file's name — but may slip while copying it: "Reykjavik平", "stresser" for "stressed", "son.csv"
for "sales.csv". While the model writes a one-line string literal inside a ```python block (a
`tool_call(...)` argument or a literal in code), and what it has written of that literal so far
contains a letter and is a piece of the conversation's user or observation messages, the guard
looks at the next token:

- when the model's favourite breaks the quotation and a token that continues it is at least `ratio`
  times as likely (`ratio` squared once the literal agrees on three bytes or more: the longer the
  agreement, the surer it is a quotation), only the continuing tokens stay allowed;
- the literal may close only where the quoted words may end: not inside a character, a Latin word
  ("Montr|éal") or a name joined by . _ - ("sales|.csv");
- words the user put in quotes ('hello there', “…”, 「…」) that the literal has begun are copied to
  their end, whatever the model prefers: the user marked exactly what is quoted;
- a literal's first token begins words the user put in quotes when one of their opening tokens is at
  least `ratio` squared times as likely as the model's favourite ("ge" → "python" for "'python' 全部变成大写字母");
- a list of numbers in code that so far copies a run of the numbers in a user's message goes on with
  their next number ("[23, 25, 31, 31" → "[23, 25, 31, 35"), by the same ratio (squared from the second
  number copied on); it may close after any of them, never run past their last;
- a list of strings that copies a user's labelled words in order ("apples 3, pears 5, plums 2") does not
  close while the same kind of gap leads to another word there (ratio squared).

A literal the model is not copying (a title it makes up, an expression such as "3.5 * 2.4", which has
no letter) is left alone, and so is any confident choice outside quoted words. It works on bytes (the
tokenizer's byte-fallback pieces are partial characters) and costs well under 0.1 ms per token inside
a code block (about 0.02 ms measured), nothing outside one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..errors import ConfigError

__all__ = ["CopyGuard", "PieceTable", "token_pieces"]

_QUOTES = (b'"', b"'")
_FENCE = b"```"
# words the user put in quotes. Straight quotes count when the opening one follows a start, space or
# opening bracket and the closing one comes before an end, space or punctuation ("what's" and "it's"
# are not quotes); curly and CJK quotes (“…” ‘…’ 「…」 『…』) always count.
_QUOTED = re.compile(
    rb"""(?:(?:^|(?<=[\s(\[{:,=\x00]))(['"])([^\n\x00'"]+?)['"](?=$|[\s.,;:!?)\]}\x00]|[\x80-\xff])"""
    rb"""|(\xe2\x80\x9c|\xe2\x80\x98|\xe3\x80\x8c|\xe3\x80\x8e)([^\n\x00]+?)"""
    rb"""(?:\xe2\x80\x9d|\xe2\x80\x99|\xe3\x80\x8d|\xe3\x80\x8f))""")
_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?")
# a line that ends inside a list of plain numbers: "data = [23, 25, 3" -> ("23, 25, ", "3")
_NUMBER_LIST = re.compile(rb"\[((?:\s*-?\d+(?:\.\d+)?\s*,)+\s*)(-?\d*(?:\.\d*)?)$")
# a line that ends just after a list's second or later string: 'labels = ["apples", "pears"'
_WORD_LIST = re.compile(rb"""\[((?:\s*(?:"[^"\n]*"|'[^'\n]*')\s*,)+\s*(?:"[^"\n]*"|'[^'\n]*'))$""")
_LIST_ITEM = re.compile(rb""""([^"\n]*)"|'([^'\n]*)'""")
_DIGITS = re.compile(rb"\d+")
_MAX_NUMBERS = 1024  # a message's first numbers that a list may copy (bounded work per token)
_LIST_EVIDENCE = 8  # how many of a list's last numbers must match a run of the user's
_SURE_BYTES = 3  # from its third byte on, a literal that agrees with the user's words is surely a quotation
_MAX_OCCURRENCES = 64  # a quotation found more often than this in the sources gets no more continuations


def token_pieces(tokenizer: Any, vocab_size: int) -> list[bytes | None]:
    """The bytes each token id writes (None for control and special tokens and padding ids), from a
    sentencepiece-based tokenizer such as ChatGLMTokenizer."""
    sp = tokenizer.sp
    pieces: list[bytes | None] = [None] * vocab_size
    for i in range(min(vocab_size, sp.vocab_size())):
        if sp.is_control(i) or sp.is_unknown(i):
            continue
        piece = sp.id_to_piece(i)
        if sp.is_byte(i):
            pieces[i] = bytes([int(piece[3:5], 16)])
        else:
            pieces[i] = piece.replace("\u2581", " ").encode("utf-8")
    return pieces


def _open_literal(code: bytes) -> tuple[bytes, bytes] | None:
    """(quote, what is written of it) when `code` ends inside a one-line string literal; None otherwise
    (outside literals, in a comment, or in a triple-quoted string, which is prose, not a quotation)."""
    i, n = 0, len(code)
    while i < n:
        c = code[i:i + 1]
        if c == b"#":
            end = code.find(b"\n", i)
            if end < 0:
                return None
            i = end + 1
        elif c in _QUOTES:
            if code[i:i + 3] == c * 3:
                end = code.find(c * 3, i + 3)
                if end < 0:
                    return None
                i = end + 3
                continue
            j = i + 1
            while j < n:
                d = code[j:j + 1]
                if d == b"\\":
                    j += 2
                elif d == c or d == b"\n":
                    break
                else:
                    j += 1
            if j >= n:
                return c, code[i + 1:]
            i = j + 1
        else:
            i += 1
    return None


def _has_letter(text: bytes) -> bool:
    return any(c >= 0x80 or chr(c).isalpha() for c in text)


def _alphabetic(ch: str) -> bool:
    """A letter or digit of a script that writes words with spaces (Latin, Greek, Cyrillic, ...), not CJK."""
    return ch.isalnum() and ord(ch) < 0x2E80


def _char_at(hay: bytes, i: int) -> str:
    return hay[i:i + 4].decode("utf-8", "ignore")[:1]


def _char_before(hay: bytes, end: int) -> str:
    i = end - 1
    while i > 0 and 0x80 <= hay[i] < 0xC0:
        i -= 1
    return hay[max(i, 0):end].decode("utf-8", "ignore")[-1:]


def _word_ends(hay: bytes, start: int, end: int) -> bool:
    """Whether a quotation of hay[start:end] may close there: not inside a character, an alphabetic word
    ("Montr|éal", "Reykja|vik") or a name joined by . _ - ("sales|.csv"). Between a Latin and a CJK
    character it may ("Zoj|的天气"), and between two CJK characters too (Chinese writes no spaces:
    the model decides)."""
    if end >= len(hay) or hay[end] == 0:
        return True
    if 0x80 <= hay[end] < 0xC0:
        return False  # the middle of a UTF-8 character
    last = _char_before(hay, end) if end > start else ""
    nxt = _char_at(hay, end)
    if _alphabetic(last) and _alphabetic(nxt):
        return False
    if nxt in "._-" and _alphabetic(last) and _alphabetic(_char_at(hay, end + 1)):
        return False
    return True


class PieceTable:
    """A vocabulary's pieces (token_pieces) indexed for the guard; built once per model, shared by its guards."""

    def __init__(self, pieces: Sequence[bytes | None]):
        self.pieces = pieces
        self.by_piece: dict[bytes, list[int]] = {}  # piece -> the ids that write it
        self.with_quote: dict[bytes, list[tuple[int, bytes]]] = {q: [] for q in _QUOTES}  # (id, piece before q)
        self.with_bracket: list[tuple[int, bytes]] = []  # (id, piece) for the pieces that write "]"
        for i, piece in enumerate(pieces):
            if not piece:
                continue
            self.by_piece.setdefault(piece, []).append(i)
            if b"]" in piece:
                self.with_bracket.append((i, piece))
            for q in _QUOTES:
                at = piece.find(q)
                if at >= 0:
                    self.with_quote[q].append((i, piece[:at]))
        self.longest = max((len(p) for p in pieces if p), default=1)

    def starting(self, tails: Iterable[bytes]) -> set[int]:
        """The ids of the pieces that write the start of one of `tails` (a whole tail or a prefix of it)."""
        return {i for tail in tails for k in range(1, min(len(tail), self.longest) + 1)
                for i in self.by_piece.get(tail[:k], ())}


class CopyGuard:
    """One generation's guard: feed() each generated token, apply() to each next-token logits vector."""

    def __init__(self, table: PieceTable, sources: Iterable[str], ratio: float, openers: Iterable[str] | None = None):
        if not 0.0 < ratio <= 1.0:
            raise ConfigError(f"copy guard ratio {ratio!r} is out of range; expected 0 < ratio <= 1")
        self.table = table
        self.log_ratio = math.log(ratio)
        # \x00 never occurs in text, so no quotation runs from one message into the next
        self.hay = b"\x00".join(s.encode("utf-8") for s in sources if s)
        # where the user quoted something ('hello world', “…”, 「…」): start of the words -> their end
        self.quoted = {m.start(g): m.end(g) for m in _QUOTED.finditer(self.hay) for g in (2, 4) if m.group(g)}
        # the words a literal's first token may be steered to begin: those quoted in `openers` (the user's
        # messages; by default all sources)
        self.said = [s.encode("utf-8") for s in (sources if openers is None else openers) if s]
        self.openings = {said[m.start(g):m.end(g)] for said in self.said
                         for m in _QUOTED.finditer(said) for g in (2, 4) if m.group(g)}
        # the numbers in each of the user's messages, in order: a list in code that copies them goes on copying
        self.numbers = [nums for said in self.said for nums in [_NUMBER.findall(said)[:_MAX_NUMBERS]] if len(nums) >= 2]
        self.text = bytearray()
        self.steered = 0  # tokens where the guard changed the model's choice set

    def feed(self, token: int) -> None:
        pieces = self.table.pieces
        piece = pieces[token] if 0 <= token < len(pieces) else None
        self.text += piece if piece is not None else b"\x00"  # a special token ends whatever was open

    def allowed(self) -> tuple[list[int], bool, bool] | None:
        """(token ids that continue the open quotation or close it now, strict, sure), or those that go on
        with a copied list of the user's numbers or labelled words; None when there is nothing to copy.
        Strict: the literal so far is the start of words the user put in quotes, so the model is quoting
        them and must finish the quotation. Sure: it agrees with the sources on _SURE_BYTES or more."""
        text = bytes(self.text[self.text.rfind(b"\x00") + 1:])
        if text.count(_FENCE) % 2 == 0:
            return None  # not inside a code block
        start = text.rfind(_FENCE)
        line_end = text.find(b"\n", start)
        if line_end < 0:
            return None
        code = text[line_end + 1:]
        literal = _open_literal(code)
        if literal is None:
            line = code[code.rfind(b"\n") + 1:]
            return self._number_list(line) or self._word_list(line)
        quote, written = literal
        if not written:
            return self._opening(quote)
        if b"\\" in written or not self.hay or not _has_letter(written):
            return None  # only quotations of words: an expression such as "3.5 * 2.4" is the model's own
        tails: set[bytes] = set()  # what may follow `written`, as a piece of a source
        ends: set[bytes] = set()  # continuations after which the quoted word may end (the literal close)
        strict = False
        at, found = self.hay.find(written), 0
        while at >= 0 and found < _MAX_OCCURRENCES:
            end = at + len(written)
            closes = self.quoted.get(at)  # a quotation of quoted words ends where they end
            if closes is not None and end > closes:
                closes = None
            strict = strict or closes is not None
            tail = self.hay[end:end + self.table.longest].split(b"\x00", 1)[0]
            for k in range(len(tail) + 1):
                if k:
                    tails.add(tail[:k])
                if (end + k == closes) if closes is not None else _word_ends(self.hay, at, end + k):
                    ends.add(tail[:k])
            at, found = self.hay.find(written, at + 1), found + 1
        if not found:
            return None
        ids = {i for tail in tails for i in self.table.by_piece.get(tail, ())
               if quote not in tail}  # a continuation that reaches a quote is judged below
        ids.update(i for i, before in self.table.with_quote[quote] if before in ends)
        return (sorted(ids), strict, len(written) >= _SURE_BYTES) if ids else None

    def _number_list(self, line: bytes) -> tuple[list[int], bool, bool] | None:
        """Inside a list of numbers ("data = [23, 25, 31, 3") whose numbers so far are a run of the numbers
        the user wrote, in order: the tokens that write the user's next number, then close the list or go
        on (never past the user's last number). Not strict; sure from the second number copied on. A list
        that already left the user's numbers ("x = [0, 1, 2") is the model's own."""
        m = _NUMBER_LIST.search(line)
        if m is None or not self.numbers:
            return None
        done = _NUMBER.findall(m.group(1))[-_LIST_EVIDENCE:]  # the last few copied numbers place the list
        partial = m.group(2)
        tails: set[bytes] = set()
        for nums in self.numbers:
            for i in range(len(nums) - len(done) + 1):
                if nums[i:i + len(done)] != done:
                    continue
                at = i + len(done)
                if at < len(nums) and nums[at].startswith(partial):
                    rest = nums[at][len(partial):]
                    tails.add(rest + b"]")  # the list may end with any of the user's numbers
                    if at + 1 < len(nums):
                        tails.add(rest + b", ")
        ids = self.table.starting(tails)
        # the closing bracket may come with what follows it ("]\n", "])")
        ids.update(i for i, piece in self.table.with_bracket for tail in tails
                   if tail.endswith(b"]") and piece.startswith(tail))
        return (sorted(ids), False, len(done) >= 2) if ids else None

    def _word_list(self, line: bytes) -> tuple[list[int], bool, bool] | None:
        """Just after the closing quote of a list's second or later string ('labels = ["apples", "pears"'),
        when its strings are a user's words in order with the same kind of gap between each ("apples 3,
        pears 5, plums 2": " 3, " and " 5, " alike but for the digits) and that gap follows the last one
        there too ("pears| 5, plums"): the tokens that go on to the next word (', "plums'). Not strict,
        sure: closing the list early gives way when going on is within ratio squared."""
        m = _WORD_LIST.search(line)
        if m is None:
            return None
        items = [a or b for a, b in _LIST_ITEM.findall(m.group(1))]
        if not all(_has_letter(item) for item in items):
            return None
        quote = line[-1:]
        tails: set[bytes] = set()
        for said in self.said:
            spans, pos = [], 0
            for item in items:
                at = said.find(item, pos)
                if at < 0:
                    break
                spans.append((at, at + len(item)))
                pos = at + len(item)
            if len(spans) < len(items):
                continue
            gaps = {_DIGITS.sub(b"9", said[end:start]) for (_, end), (start, _) in zip(spans, spans[1:])}
            gap = gaps.pop()
            if gaps or not gap.strip(b" "):
                continue  # gaps unlike each other, or bare spaces: not a labelled list
            shape = re.escape(gap).replace(b"9", rb"\d+")  # every digit run in the gap became one "9"
            nxt = re.match(shape + rb"((?:[A-Za-z]|[\x80-\xff])+)", said[spans[-1][1]:])
            if nxt:
                tails.add(b", " + quote + nxt.group(1))
        ids = self.table.starting(tails)
        return (sorted(ids), False, True) if ids else None

    def _opening(self, quote: bytes) -> tuple[list[int], bool, bool] | None:
        """At a literal's first token: the tokens that begin words the user quoted. Not strict, but sure (the
        user marked those words as a quotation, evidence as strong as a three-byte agreement): the model may
        still open a literal for other words ("%1.1f%%", a title) unless one of those is within ratio squared."""
        ids = self.table.starting(words for words in self.openings if quote not in words)
        return (sorted(ids), False, True) if ids else None

    def apply(self, logits: Any, full_like: Callable[[Any, float], Any]) -> Any:
        """`logits` (a NumPy array or torch tensor over the vocabulary), limited to the continuing tokens
        when the model's favourite breaks the quotation and either the quotation is strict or a
        continuing token is close enough."""
        found = self.allowed()
        if found is None:
            return logits
        allowed, strict, sure = found
        top = int(logits.argmax())
        if top in allowed:
            return logits
        best = max(float(logits[i]) for i in allowed)
        # one or two bytes ("a") may begin a quotation ("ages") or not ("auto"): the ratio; from the third
        # byte on the agreement is stronger evidence: the ratio squared
        if not strict and best - float(logits[top]) < self.log_ratio * (2 if sure else 1):
            return logits
        self.steered += 1
        out = full_like(logits, -math.inf)
        out[allowed] = logits[allowed]
        return out
