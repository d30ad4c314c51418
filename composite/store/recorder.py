"""Keeps one stored conversation in step with an in-memory message list: the UI and the CLI call
`sync` after each completed message, and only what changed is written (one transaction)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..errors import ConflictError
from ..messages import Message
from .db import ConversationInfo, Store, StoredConversation, title_from

__all__ = ["Recorder", "fingerprint"]


def fingerprint(message: Message) -> str:
    data = json.dumps(message.to_dict(with_extra=True), sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha1(data.encode("utf-8")).hexdigest()


class Recorder:
    """One conversation of one mode. Nothing is stored before the first user message."""

    def __init__(self, store: Store, mode: str, user: str | None = None) -> None:
        self.store, self.mode, self.user = store, mode, user
        self.id: str | None = None
        self.version = 0
        self.saved: list[str] = []  # fingerprints of the stored messages, in order
        self.meta: tuple = ()
        self.files_signature: tuple = ()

    @classmethod
    def reopen(cls, store: Store, conv_id: str, user: str | None = None) -> tuple["Recorder", StoredConversation]:
        conversation = store.get(conv_id, user=user)
        recorder = cls(store, conversation.info.mode, user)
        recorder.id = conversation.info.id
        recorder.version = conversation.info.version
        recorder.saved = [fingerprint(m) for m in conversation.messages]
        recorder.meta = (conversation.info.model, conversation.info.backend, conversation.info.params)
        return recorder, conversation

    def sync(self, messages: list[Message], model: str = "", backend: str = "",
             params: dict[str, Any] | None = None) -> str | None:
        """Write what changed since the last sync. When another session wrote this conversation in
        between, this session's version is saved as a new conversation; the returned note says so."""
        if not any(m.role == "user" for m in messages):
            return None
        prints = [fingerprint(m) for m in messages]
        meta = (model, backend, dict(params or {}))
        if self.id is None:
            self._create(messages, meta)
            self.saved = prints
            return None
        start = next((i for i, (a, b) in enumerate(zip(prints, self.saved)) if a != b), min(len(prints), len(self.saved)))
        if start == len(prints) == len(self.saved) and meta == self.meta:
            return None
        try:
            self.version = self.store.write_messages(
                self.id, start, messages[start:], version=self.version, user=self.user, title=title_from(messages),
                model=model, backend=backend, params=meta[2])
        except ConflictError:
            old = self.id
            self._create(messages, meta, copy_of=old)
            self.saved = prints
            return (f"This conversation was changed in another window meanwhile; your version was saved as a new "
                    f"conversation ({self.id}).")
        self.saved, self.meta = prints, meta
        return None

    def _create(self, messages: list[Message], meta: tuple, copy_of: str | None = None) -> ConversationInfo:
        title = title_from(messages)
        if copy_of:
            title = f"{title} (copy)"
        info = self.store.create_conversation(self.mode, messages, user=self.user, title=title, model=meta[0],
                                              backend=meta[1], params=meta[2])
        self.id, self.version, self.meta = info.id, info.version, meta
        self.files_signature = ()
        return info
