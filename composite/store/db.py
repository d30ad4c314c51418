"""The history database: open and migrate it (SQLite WAL or PostgreSQL), then read and write conversations,
their messages and files, and batch runs. Every database failure becomes one StoreError that says what happened.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from ..errors import ConflictError, NotFoundError, StoreError
from ..messages import Message

__all__ = [
    "Store",
    "ConversationInfo",
    "StoredConversation",
    "RunInfo",
    "open_store",
    "data_dir",
    "database_url",
    "bound_files",
    "MAX_FILE_BYTES",
    "MAX_FILES_BYTES",
    "MAX_FILES",
]

T = TypeVar("T")
_MiB = 2**20
MAX_FILE_BYTES = 10 * _MiB  # one kept workdir file
MAX_FILES_BYTES = 25 * _MiB  # all kept files of one conversation
MAX_FILES = 100
TITLE_CHARS = 80
LOCK_RETRIES = 4  # on top of SQLite's busy timeout: a writer that still finds the database locked retries
HEAD = "0002"
_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_migrate_lock = threading.Lock()


def data_dir(environ: dict[str, str] | None = None) -> Path:
    """COMPOSITE_DATA_DIR, else the per-user data directory (e.g. ~/.local/share/composite)."""
    env = os.environ if environ is None else environ
    if env.get("COMPOSITE_DATA_DIR", "").strip():
        return Path(env["COMPOSITE_DATA_DIR"].strip()).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("composite", appauthor=False))


def database_url(environ: dict[str, str] | None = None) -> str:
    """COMPOSITE_DATABASE_URL (e.g. postgresql+psycopg://user:pw@host/db), else SQLite in the data dir."""
    env = os.environ if environ is None else environ
    url = env.get("COMPOSITE_DATABASE_URL", "").strip()
    return url or f"sqlite:///{data_dir(env) / 'composite.db'}"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


@dataclass
class ConversationInfo:
    id: str
    mode: str
    title: str
    created_at: datetime
    updated_at: datetime
    model: str = ""
    backend: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    version: int = 0
    title_edited: bool = False


@dataclass
class StoredConversation:
    info: ConversationInfo
    messages: list[Message]

    def export(self) -> dict[str, Any]:
        """The JSON export: conversation facts plus every message with its extras (re-importable)."""
        info = self.info
        return {
            "id": info.id, "mode": info.mode, "title": info.title, "created_at": info.created_at.isoformat(),
            "updated_at": info.updated_at.isoformat(), "model": info.model, "backend": info.backend,
            "params": info.params, "messages": [m.to_dict(with_extra=True) for m in self.messages],
        }


@dataclass
class RunInfo:
    id: str
    created_at: datetime
    prompts_file: str
    prompts_sha256: str
    model: str
    backend: str
    params: dict[str, Any]
    summary: dict[str, Any]


def bound_files(files: Iterable[tuple[str, bytes]]) -> tuple[list[tuple[str, bytes]], list[str]]:
    """The files kept with a conversation (each <= MAX_FILE_BYTES, together <= MAX_FILES_BYTES, at most
    MAX_FILES, in the given order) and the names of those left out, each with the reason."""
    kept, skipped, total = [], [], 0
    for name, data in files:
        if len(name) > 255:  # the column's width: a cut path would be restored to another place
            skipped.append(f"{name[:60]}… (a path longer than 255 characters)")
        elif len(data) > MAX_FILE_BYTES:
            skipped.append(f"{name} (over {MAX_FILE_BYTES // _MiB} MiB)")
        elif total + len(data) > MAX_FILES_BYTES or len(kept) >= MAX_FILES:
            skipped.append(f"{name} (over the {MAX_FILES_BYTES // _MiB} MiB / {MAX_FILES} files kept per conversation)")
        else:
            kept.append((name, data))
            total += len(data)
    return kept, skipped


# -- failures -----------------------------------------------------------------------------------------
_SQLITE_HINTS = [
    (re.compile(r"database is locked|database table is locked"), "is locked by another process (still busy after "
     "waiting); try again in a moment"),
    (re.compile(r"readonly|read-only"), "is read-only (check the permissions of the file and its folder)"),
    (re.compile(r"disk is full|database or disk is full|no space left"), "cannot grow: the disk (or the database's "
     "size limit) is full; free some space"),
    (re.compile(r"file is not a database|malformed|file is encrypted|not a database"), "is corrupt (not a readable "
     "SQLite database); move the file away and a fresh history starts"),
    (re.compile(r"unable to open database file|no such file"), "cannot be opened (check that its folder exists "
     "and is writable)"),
    (re.compile(r"disk i/o error"), "could not be read or written (disk I/O error)"),
]


def _is_locked(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "database is locked" in text or "database table is locked" in text


class Store:
    """Conversations, messages, files and runs in one database. Thread-safe; one per process is enough.

    `user` scopes every call: None is local single-user use (everything is visible, new rows have no
    owner); a string (from a trusted proxy header) sees and changes only that owner's rows.
    """

    def __init__(self, url: str, busy_timeout: float = 5.0) -> None:
        from sqlalchemy import create_engine, event
        from sqlalchemy.engine import make_url

        self.url = url
        try:
            parsed = make_url(url)
        except Exception as exc:  # ArgumentError and friends: any unparsable URL is a settings problem
            raise StoreError(f"COMPOSITE_DATABASE_URL {url!r} is not a database URL ({exc}); expected e.g. "
                             "postgresql+psycopg://user:password@host:5432/composite") from exc
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise StoreError(f"unsupported database {self.dialect!r} in {parsed.render_as_string()}; expected "
                             "sqlite:///path or postgresql+psycopg://...")
        self.location = parsed.database if self.dialect == "sqlite" else parsed.render_as_string(hide_password=True)
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:" and not parsed.query.get("uri"):
                try:
                    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StoreError(f"cannot create the data directory {Path(parsed.database).parent}: "
                                     f"{exc.strerror or exc}") from exc
            engine = create_engine(url, connect_args={"timeout": busy_timeout, "check_same_thread": False})

            @event.listens_for(engine, "connect")
            def _sqlite_connect(dbapi_conn, _record) -> None:
                dbapi_conn.isolation_level = None  # transactions are begun below, so writers can ask for IMMEDIATE
                cursor = dbapi_conn.cursor()
                cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
                cursor.execute("PRAGMA foreign_keys = ON")
                cursor.execute("PRAGMA synchronous = NORMAL")
                try:  # WAL: readers never block the writer; persistent, so usually already set
                    if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                        cursor.execute("PRAGMA journal_mode = WAL")
                except Exception:  # sqlite3.DatabaseError: a read-only or corrupt file; the next query explains it
                    pass
                cursor.close()

            @event.listens_for(engine, "begin")
            def _sqlite_begin(conn) -> None:
                # a writer takes the write lock up front: a deferred transaction that upgrades later gets
                # SQLITE_BUSY at once, without waiting for the busy timeout
                conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")
        else:
            engine = create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 5})
        self.engine = engine
        self._writer = engine.execution_options(write=True)

    def __repr__(self) -> str:
        return f"Store({self.dialect}: {self.location})"

    @property
    def where(self) -> str:
        """Where the history lives, for people: the SQLite file or the PostgreSQL URL without password."""
        return str(self.location) if self.dialect == "sqlite" else f"PostgreSQL {self.location}"

    def close(self) -> None:
        self.engine.dispose()

    # -- plumbing -------------------------------------------------------------------------------------
    def explain(self, exc: BaseException, action: str) -> str:
        """One sentence for a failed database call: what failed, where, why, and what to do."""
        text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        low = text.lower()
        if self.dialect == "sqlite":
            for pattern, hint in _SQLITE_HINTS:
                if pattern.search(low):
                    return f"could not {action}: the history database {self.location} {hint} ({text})"
            return f"could not {action} in the history database {self.location}: {text}"
        if any(s in low for s in ("connection refused", "could not connect", "server closed", "connection failed",
                                  "terminating connection", "timeout expired", "consuming input failed",
                                  "connection is closed", "the connection is lost")):
            return (f"could not {action}: the PostgreSQL server at {self.location} cannot be reached ({text}); "
                    "history resumes when it is back")
        return f"could not {action} in PostgreSQL {self.location}: {text}"

    def _call(self, action: str, fn: Callable[[], T]) -> T:
        from sqlalchemy.exc import SQLAlchemyError

        for attempt in range(LOCK_RETRIES):
            try:
                return fn()
            except (NotFoundError, ConflictError):
                raise
            except SQLAlchemyError as exc:
                if _is_locked(exc) and attempt < LOCK_RETRIES - 1:
                    time.sleep(0.05 * 2**attempt)
                    continue
                raise StoreError(self.explain(exc, action)) from exc
            except OSError as exc:
                raise StoreError(f"could not {action}: {exc.strerror or exc}") from exc
        raise AssertionError("unreachable")

    def _session(self, write: bool = False):
        from sqlalchemy.orm import Session

        return Session(self._writer if write else self.engine, expire_on_commit=False)

    @staticmethod
    def _scoped(query, model, user: str | None):
        return query if user is None else query.where(model.owner == user)

    # -- migrations -----------------------------------------------------------------------------------
    def revision(self) -> str | None:
        """The schema revision of the database (None: empty)."""
        from alembic.runtime.migration import MigrationContext

        def read():
            with self.engine.connect() as conn:
                return MigrationContext.configure(conn).get_current_revision()

        return self._call("read the schema version", read)

    def migrate(self, target: str = "head") -> None:
        """Bring the schema to `target` with the Alembic migrations; several processes may race here."""
        from alembic import command
        from alembic.config import Config

        def upgrade():
            with _migrate_lock, self._migration_lock():
                with self._writer.connect() as conn:
                    if self.dialect == "postgresql":
                        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7301013)")
                    config = Config()
                    config.set_main_option("script_location", str(_MIGRATIONS))
                    config.attributes["connection"] = conn
                    command.upgrade(config, target)
                    conn.commit()

        self._call("update the history schema", upgrade)

    @contextlib.contextmanager
    def _migration_lock(self):
        """SQLite: an exclusive file lock beside the database, so two processes never migrate at once."""
        if self.dialect != "sqlite" or not self.location or self.location == ":memory:":
            yield
            return
        import fcntl

        path = Path(str(self.location) + ".migrate-lock")
        try:
            handle = open(path, "a+b")
        except OSError:  # a read-only folder: the migration itself reports the real problem
            yield
            return
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- conversations --------------------------------------------------------------------------------
    @staticmethod
    def _info(row) -> ConversationInfo:
        return ConversationInfo(
            id=row.id, mode=row.mode, title=row.title, created_at=_aware(row.created_at),
            updated_at=_aware(row.updated_at), model=row.model, backend=row.backend, params=dict(row.params or {}),
            version=row.version, title_edited=bool(row.title_edited),
        )

    def create_conversation(self, mode: str, messages: Iterable[Message] = (), *, user: str | None = None,
                            title: str = "", model: str = "", backend: str = "",
                            params: dict[str, Any] | None = None) -> ConversationInfo:
        """A new conversation (id: 128 random bits, URL-safe) with its first messages, in one transaction."""
        from .models import Conversation

        messages = list(messages)
        now = _now()
        row = Conversation(
            id=secrets.token_urlsafe(16), owner=user or "", mode=mode, title=(title or title_from(messages))[:200],
            title_edited=False, created_at=now, updated_at=now, model=model[:500], backend=backend[:100],
            params=dict(params or {}), version=1,
        )

        def create():
            with self._session(write=True) as s, s.begin():
                s.add(row)
                s.flush()
                s.add_all(self._rows(row.id, 0, messages, now))
            return self._info(row)

        return self._call("save the new conversation", create)

    @staticmethod
    def _rows(conv_id: str, start: int, messages: list[Message], now: datetime):
        from .models import StoredMessage

        return [StoredMessage(conversation_id=conv_id, position=start + i, role=m.role, content=m.content,
                              meta=m.metadata, extra=_jsonable(m.extra), created_at=now)
                for i, m in enumerate(messages)]

    def write_messages(self, conv_id: str, start: int, messages: list[Message], *, version: int,
                       user: str | None = None, title: str | None = None, model: str | None = None,
                       backend: str | None = None, params: dict[str, Any] | None = None) -> int:
        """Replace the messages from `start` on, if the conversation is still at `version` (else
        ConflictError: another session wrote it). Returns the new version. One transaction."""
        from sqlalchemy import delete, select, update

        from .models import Conversation, StoredMessage

        def write():
            now = _now()
            values: dict[str, Any] = {"version": version + 1, "updated_at": now}
            values.update({k: v for k, v in (("model", model), ("backend", backend), ("params", params))
                           if v is not None})
            with self._session(write=True) as s, s.begin():
                where = self._scoped(update(Conversation).where(Conversation.id == conv_id,
                                                                Conversation.version == version), Conversation, user)
                if s.execute(where.values(**values)).rowcount != 1:
                    exists = s.execute(self._scoped(select(Conversation.id).where(Conversation.id == conv_id),
                                                    Conversation, user)).first()
                    if exists is None:
                        raise NotFoundError(f"conversation {conv_id} not found")
                    raise ConflictError(f"conversation {conv_id} was changed by another session")
                if title:
                    s.execute(update(Conversation).where(Conversation.id == conv_id,
                                                         Conversation.title_edited.is_(False)).values(title=title[:200]))
                s.execute(delete(StoredMessage).where(StoredMessage.conversation_id == conv_id,
                                                      StoredMessage.position >= start))
                s.add_all(self._rows(conv_id, start, messages, now))
            return version + 1

        return self._call("save the message", write)

    def get(self, conv_id: str, *, user: str | None = None) -> StoredConversation:
        """The conversation with its messages; NotFoundError for an unknown id or another user's."""
        from sqlalchemy import select

        from .models import Conversation, StoredMessage

        def read():
            with self._session() as s:
                row = s.execute(self._scoped(select(Conversation).where(Conversation.id == conv_id),
                                             Conversation, user)).scalar_one_or_none()
                if row is None:
                    raise NotFoundError(f"conversation {conv_id!r} not found")
                rows = s.execute(select(StoredMessage).where(StoredMessage.conversation_id == conv_id)
                                 .order_by(StoredMessage.position)).scalars().all()
                messages = [Message(r.role, r.content, r.meta or "", dict(r.extra or {})) for r in rows]
                return StoredConversation(self._info(row), messages)

        return self._call("read the conversation", read)

    def list(self, mode: str | None = None, *, user: str | None = None, search: str = "",
             limit: int = 200) -> list[ConversationInfo]:
        """Conversations, newest first; `search` matches titles (case-insensitive substring)."""
        from sqlalchemy import select

        from .models import Conversation

        query = self._scoped(select(Conversation), Conversation, user)
        if mode:
            query = query.where(Conversation.mode == mode)
        if search.strip():
            escaped = search.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(Conversation.title.ilike(f"%{escaped}%", escape="\\"))
        query = query.order_by(Conversation.updated_at.desc(), Conversation.id).limit(limit)

        def read():
            with self._session() as s:
                return [self._info(row) for row in s.execute(query).scalars()]

        return self._call("list the conversations", read)

    def rename(self, conv_id: str, title: str, *, user: str | None = None) -> None:
        from sqlalchemy import update

        from .models import Conversation

        title = " ".join(title.split())[:200]
        if not title:
            raise StoreError("a conversation title cannot be empty")

        def write():
            with self._session(write=True) as s, s.begin():
                result = s.execute(self._scoped(update(Conversation).where(Conversation.id == conv_id), Conversation,
                                                user).values(title=title, title_edited=True))
                if result.rowcount != 1:
                    raise NotFoundError(f"conversation {conv_id!r} not found")

        self._call("rename the conversation", write)

    def delete(self, conv_id: str, *, user: str | None = None) -> None:
        """Delete a conversation with its messages and files."""
        from sqlalchemy import delete, select

        from .models import Conversation, ConversationFile, StoredMessage

        def write():
            with self._session(write=True) as s, s.begin():
                found = s.execute(self._scoped(select(Conversation.id).where(Conversation.id == conv_id),
                                               Conversation, user)).first()
                if found is None:
                    raise NotFoundError(f"conversation {conv_id!r} not found")
                # explicit deletes: SQLite only cascades with foreign_keys on, and a database may predate it
                s.execute(delete(StoredMessage).where(StoredMessage.conversation_id == conv_id))
                s.execute(delete(ConversationFile).where(ConversationFile.conversation_id == conv_id))
                s.execute(delete(Conversation).where(Conversation.id == conv_id))

        self._call("delete the conversation", write)

    # -- files ----------------------------------------------------------------------------------------
    def save_files(self, conv_id: str, files: Iterable[tuple[str, bytes]], *, user: str | None = None) -> list[str]:
        """Keep these files with the conversation (replacing the kept set, bounded by bound_files);
        returns what was left out and why."""
        from sqlalchemy import delete, select

        from .models import Conversation, ConversationFile

        kept, skipped = bound_files(files)

        def write():
            now = _now()
            with self._session(write=True) as s, s.begin():
                if s.execute(self._scoped(select(Conversation.id).where(Conversation.id == conv_id), Conversation,
                                          user)).first() is None:
                    raise NotFoundError(f"conversation {conv_id!r} not found")
                s.execute(delete(ConversationFile).where(ConversationFile.conversation_id == conv_id))
                s.add_all(ConversationFile(conversation_id=conv_id, name=name, data=data, size=len(data),
                                           sha256=hashlib.sha256(data).hexdigest(), updated_at=now)
                          for name, data in kept)

        self._call("save the working files", write)
        return skipped

    def load_files(self, conv_id: str, *, user: str | None = None) -> list[tuple[str, bytes]]:
        from sqlalchemy import select

        from .models import Conversation, ConversationFile

        def read():
            with self._session() as s:
                if s.execute(self._scoped(select(Conversation.id).where(Conversation.id == conv_id), Conversation,
                                          user)).first() is None:
                    raise NotFoundError(f"conversation {conv_id!r} not found")
                rows = s.execute(select(ConversationFile).where(ConversationFile.conversation_id == conv_id)
                                 .order_by(ConversationFile.name)).scalars().all()
                return [(r.name, bytes(r.data)) for r in rows]

        return self._call("read the working files", read)

    # -- runs -----------------------------------------------------------------------------------------
    def record_run(self, *, prompts_sha256: str, cases: list[dict[str, Any]], summary: dict[str, Any],
                   prompts_file: str = "", model: str = "", backend: str = "", params: dict[str, Any] | None = None,
                   user: str | None = None) -> RunInfo:
        """Store one batch run with its per-case results; the id is short (12 hex digits) for the CLI."""
        from .models import Run, RunCase

        row = Run(id=secrets.token_hex(6), owner=user or "", created_at=_now(), prompts_file=prompts_file[:1000],
                  prompts_sha256=prompts_sha256, model=model[:500], backend=backend[:100], params=dict(params or {}),
                  summary=_jsonable(summary))

        def write():
            with self._session(write=True) as s, s.begin():
                s.add(row)
                s.flush()
                s.add_all(RunCase(run_id=row.id, position=i, prompt=str(c.get("prompt", "")), result=_jsonable(c))
                          for i, c in enumerate(cases))
            return self._run_info(row)

        return self._call("record the batch run", write)

    @staticmethod
    def _runs_scoped(query, user: str | None):
        """A user sees their runs and the unowned ones (recorded by the CLI, shared by the team)."""
        from .models import Run

        return query if user is None else query.where(Run.owner.in_(["", user]))

    @staticmethod
    def _run_info(row) -> RunInfo:
        return RunInfo(id=row.id, created_at=_aware(row.created_at), prompts_file=row.prompts_file,
                       prompts_sha256=row.prompts_sha256, model=row.model, backend=row.backend,
                       params=dict(row.params or {}), summary=dict(row.summary or {}))

    def list_runs(self, *, user: str | None = None, limit: int = 200) -> list[RunInfo]:
        """Batch runs, newest first."""
        from sqlalchemy import select

        from .models import Run

        def read():
            with self._session() as s:
                query = self._runs_scoped(select(Run), user).order_by(Run.created_at.desc(), Run.id).limit(limit)
                return [self._run_info(r) for r in s.execute(query).scalars()]

        return self._call("list the batch runs", read)

    def get_run(self, run_id: str, *, user: str | None = None) -> tuple[RunInfo, list[dict[str, Any]]]:
        """A run (by id or a unique id prefix of at least 4 characters) and its cases in order."""
        from sqlalchemy import select

        from .models import Run, RunCase

        run_id = run_id.strip()
        if len(run_id) < 4 or not re.fullmatch(r"[0-9a-f]+", run_id):
            raise NotFoundError(f"run {run_id!r} not found; expected a run id (or its first 4+ characters) "
                                "from `python -m composite runs`")

        def read():
            with self._session() as s:
                rows = s.execute(self._runs_scoped(select(Run).where(Run.id.startswith(run_id)), user)
                                 .limit(2)).scalars().all()
                if not rows:
                    raise NotFoundError(f"run {run_id!r} not found; `python -m composite runs` lists the runs")
                if len(rows) > 1:
                    raise NotFoundError(f"run id prefix {run_id!r} is ambiguous; give more characters")
                cases = s.execute(select(RunCase).where(RunCase.run_id == rows[0].id)
                                  .order_by(RunCase.position)).scalars().all()
                return self._run_info(rows[0]), [dict(c.result or {}) for c in cases]

        return self._call("read the batch run", read)


def title_from(messages: Iterable[Message]) -> str:
    """The first user message's first line, shortened: the default title."""
    for message in messages:
        if message.role == "user" and message.content.strip():
            line = " ".join(message.content.strip().splitlines()[0].split())
            return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"
    return ""


def _jsonable(value: Any) -> Any:
    """JSON-safe copy of extras (tuples, paths, numpy scalars and the like become plain values)."""
    import json

    return json.loads(json.dumps(value, default=str))


def open_store(url: str | None = None, busy_timeout: float = 5.0) -> Store:
    """Open the history database (COMPOSITE_DATABASE_URL, else SQLite in the data dir) and migrate it to
    the current schema. Raises StoreError with the reason when it cannot be used."""
    store = Store(url or database_url(), busy_timeout=busy_timeout)
    try:
        if store.revision() != HEAD:
            store.migrate()
    except StoreError:
        store.close()
        raise
    return store
