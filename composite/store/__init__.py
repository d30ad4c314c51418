"""Conversation and experiment history: SQLite (WAL) in the data dir by default, PostgreSQL via
COMPOSITE_DATABASE_URL; Alembic migrations run when the store is opened. SQLAlchemy is imported lazily."""

from .db import (
    MAX_FILE_BYTES,
    MAX_FILES,
    MAX_FILES_BYTES,
    ConversationInfo,
    RunInfo,
    Store,
    StoredConversation,
    bound_files,
    data_dir,
    database_url,
    open_store,
    title_from,
)
from .recorder import Recorder, fingerprint

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_FILES",
    "MAX_FILES_BYTES",
    "ConversationInfo",
    "Recorder",
    "RunInfo",
    "Store",
    "StoredConversation",
    "bound_files",
    "data_dir",
    "database_url",
    "fingerprint",
    "open_store",
    "title_from",
]
