"""Prefix KV-cache reuse: keep each conversation's last KV cache and start the next turn from it.

A conversation's next prompt is usually its last prompt + answer + a new message, so the keys and
values already computed for that prefix are reused and only the new tokens are prefilled. Entries
are bounded (count and bytes, least recently used dropped first) and belong to a conversation key
(`conversation(key)`; None for callers that do not name one); `drop(key)` forgets one.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterator

__all__ = ["PrefixCache", "Reuse", "conversation", "current_conversation"]

_conversation: contextvars.ContextVar[str | None] = contextvars.ContextVar("composite_conversation", default=None)


@contextlib.contextmanager
def conversation(key: str | None) -> Iterator[None]:
    """Generation inside this block reads and stores the KV cache of conversation `key` only."""
    token = _conversation.set(key)
    try:
        yield
    finally:
        _conversation.reset(token)


def current_conversation() -> str | None:
    return _conversation.get()


@dataclass
class Reuse:
    """What a lookup gave: the cache to continue (or None) and how many prompt tokens it already holds."""

    cache: Any
    tokens: int


def _cache_bytes(cache: Any) -> int:
    if isinstance(getattr(cache, "nbytes", None), int):  # the NumPy engine's cache counts its own buffers
        return cache.nbytes
    total = 0
    for layer in getattr(cache, "layers", []):
        for tensor in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if tensor is not None and hasattr(tensor, "numel"):
                total += tensor.numel() * tensor.element_size()
    return total


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PrefixCache:
    """At most `max_entries` caches and `max_bytes` of them; one entry per conversation key."""

    def __init__(self, max_entries: int = 8, max_bytes: int = 2 * 2**30, min_reuse: int = 1) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.min_reuse = min_reuse
        self._entries: OrderedDict[str | None, tuple[list[int], Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[str | None]:
        """The conversations that hold a cache, least recently used first."""
        with self._lock:
            return list(self._entries)

    @property
    def bytes(self) -> int:
        return sum(size for _, _, size in self._entries.values())

    def take(self, prompt_ids: list[int], key: str | None = None) -> Reuse:
        """Remove and return this conversation's cache, cropped to the part the new prompt shares.

        At least one prompt token is always left to prefill (its logits start the answer). A prefix
        shorter than `min_reuse` tokens, or a cache that cannot be cropped, gives a full prefill."""
        with self._lock:
            entry = self._entries.pop(key, None)
        if entry is None:
            return Reuse(None, 0)
        tokens, cache, _ = entry
        keep = min(_common_prefix(tokens, prompt_ids), len(prompt_ids) - 1)
        if keep < self.min_reuse:
            return Reuse(None, 0)
        held = cache.get_seq_length()
        if held != len(tokens):  # never trust a cache whose length disagrees with its tokens
            return Reuse(None, 0)
        if held > keep:
            try:
                cache.crop(keep - held)
            except (ValueError, NotImplementedError, AttributeError):  # e.g. sliding-window layers
                return Reuse(None, 0)
        return Reuse(cache, keep)

    def put(self, tokens: list[int], cache: Any, key: str | None = None) -> None:
        """Keep `cache` (holding exactly `tokens`) as this conversation's latest; evict to the bounds."""
        size = _cache_bytes(cache)
        if size > self.max_bytes or self.max_entries <= 0:
            return
        with self._lock:
            self._entries.pop(key, None)
            self._entries[key] = (list(tokens), cache, size)
            while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
                self._entries.popitem(last=False)

    def drop(self, key: str | None) -> None:
        """Forget one conversation's cache (its session ended, or its history was replaced)."""
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
