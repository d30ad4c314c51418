"""The history store against SQLite and a real PostgreSQL: round trips, migrations, scoping, concurrency, failures."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from composite.errors import NotFoundError, StoreError
from composite.messages import Message
from composite.store import (
    MAX_FILE_BYTES,
    MAX_FILES_BYTES,
    Recorder,
    bound_files,
    data_dir,
    database_url,
    open_store,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    """A fresh, empty database of each engine."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    server = request.getfixturevalue("postgres_server")
    return server.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def store(url):
    opened = open_store(url)
    yield opened
    opened.close()


def every_kind() -> list[Message]:
    return [
        Message("system", "You are helpful."),
        Message("user", "What's the weather in Oslo? 🌧️ « ok »"),
        Message("assistant", 'tool_call(city_name="Oslo")', "get_weather",
                {"structured": True, "arguments": {"city_name": "Oslo", "days": [1, 2]}}),
        Message("observation", '{"temperature": 12}', "get_weather", {"status": "ok", "duration": 0.125}),
        Message("assistant", "```python\nprint(1)\n```", "interpreter"),
        Message("observation", "1\n[image: plot_1.png 640x480]", "interpreter",
                {"status": "ok", "duration": 1.5, "images": ["plot_1.png"], "note": "restarted"}),
        Message("assistant", "It is 12 degrees.", extra={"stopped": True}),
    ]


def test_round_trip_of_every_message_kind(store):
    sent = every_kind()
    info = store.create_conversation("tool", sent, title="", model="tiny", backend="local",
                                     params={"temperature": 0.2, "seed": None})
    got = store.get(info.id)
    assert got.messages == sent
    assert (got.info.mode, got.info.model, got.info.backend) == ("tool", "tiny", "local")
    assert got.info.params == {"temperature": 0.2, "seed": None}
    assert got.info.title == "What's the weather in Oslo? 🌧️ « ok »"
    assert got.info.created_at.tzinfo is not None and got.info.updated_at >= got.info.created_at


def test_ids_are_unguessable_and_url_safe(store):
    ids = {store.create_conversation("chat", [Message("user", "x")]).id for _ in range(20)}
    assert len(ids) == 20
    for conv_id in ids:
        assert len(conv_id) >= 22 and all(c.isalnum() or c in "-_" for c in conv_id)  # >= 128 random bits


def test_list_is_per_mode_newest_first_and_searchable(store):
    a = store.create_conversation("chat", [Message("user", "Plan a trip to Oslo")])
    b = store.create_conversation("chat", [Message("user", "100% literal_search")])
    store.create_conversation("tool", [Message("user", "Oslo weather")])
    rec, _ = Recorder.reopen(store, a.id)
    rec.sync([Message("user", "Plan a trip to Oslo"), Message("assistant", "Sure.")])  # a becomes the newest
    assert [c.id for c in store.list("chat")] == [a.id, b.id]
    assert [c.id for c in store.list("chat", search="oslo")] == [a.id]
    assert [c.id for c in store.list("chat", search="100%")] == [b.id]
    assert store.list("chat", search="0%_") == []  # % and _ are literal, not wildcards
    assert len(store.list()) == 3


def test_rename_sticks_and_delete_removes_messages_and_files(store):
    info = store.create_conversation("code", [Message("user", "first question")])
    store.rename(info.id, "  My   analysis ")
    rec, _ = Recorder.reopen(store, info.id)
    rec.sync([Message("user", "first question"), Message("assistant", "ok")])
    assert store.get(info.id).info.title == "My analysis"  # a later write keeps the edited title
    with pytest.raises(StoreError, match="empty"):
        store.rename(info.id, "   ")
    store.save_files(info.id, [("data.csv", b"a,b\n1,2\n")])
    store.delete(info.id)
    with pytest.raises(NotFoundError):
        store.get(info.id)
    with pytest.raises(NotFoundError):
        store.load_files(info.id)
    with pytest.raises(NotFoundError):
        store.delete(info.id)


def test_user_scope_hides_other_users_conversations(store):
    alice = store.create_conversation("chat", [Message("user", "alice's secret")], user="alice")
    bob = store.create_conversation("chat", [Message("user", "bob's note")], user="bob")
    assert [c.id for c in store.list("chat", user="alice")] == [alice.id]
    for call in (lambda: store.get(alice.id, user="bob"), lambda: store.rename(alice.id, "x", user="bob"),
                 lambda: store.delete(alice.id, user="bob"), lambda: store.load_files(alice.id, user="bob"),
                 lambda: store.save_files(alice.id, [], user="bob"),
                 lambda: store.write_messages(alice.id, 0, [], version=1, user="bob")):
        with pytest.raises(NotFoundError):
            call()
    assert store.get(alice.id, user="alice").messages[0].content == "alice's secret"
    assert {c.id for c in store.list("chat")} == {alice.id, bob.id}  # local (unscoped) use sees everything


def test_recorder_writes_each_message_and_rewrites_only_what_changed(store):
    msgs = [Message("system", "s")]
    rec = Recorder(store, "chat")
    assert rec.sync(msgs) is None and rec.id is None  # nothing stored before the first user message
    msgs.append(Message("user", "one"))
    rec.sync(msgs, model="m", backend="local", params={"top_p": 0.8})
    msgs.append(Message("assistant", "answer one"))
    rec.sync(msgs, model="m", backend="local", params={"top_p": 0.8})
    version = store.get(rec.id).info.version
    rec.sync(msgs, model="m", backend="local", params={"top_p": 0.8})
    assert store.get(rec.id).info.version == version  # nothing changed: nothing written
    del msgs[2:]  # retry: the answer is replaced
    msgs.append(Message("assistant", "answer one, again"))
    rec.sync(msgs, model="m", backend="local", params={"top_p": 0.8})
    assert [m.content for m in store.get(rec.id).messages] == ["s", "one", "answer one, again"]


def test_two_sessions_writing_one_conversation_lose_nothing(store):
    """Two tabs on the same conversation: the second writer's version is kept as a copy."""
    base = [Message("user", "shared question")]
    first = Recorder(store, "chat")
    first.sync(list(base))
    second, conversation = Recorder.reopen(store, first.id)
    first.sync(base + [Message("assistant", "from tab one")])
    note = second.sync(conversation.messages + [Message("assistant", "from tab two")])
    assert note and "new conversation" in note and second.id != first.id
    assert store.get(first.id).messages[-1].content == "from tab one"
    copy = store.get(second.id)
    assert copy.messages[-1].content == "from tab two" and copy.info.title.endswith("(copy)")


def test_files_are_bounded_and_round_trip(store):
    info = store.create_conversation("code", [Message("user", "q")])
    big = b"x" * (MAX_FILE_BYTES + 1)
    skipped = store.save_files(info.id, [("a.txt", b"alpha"), ("big.bin", big), ("plot.png", b"\x89PNG\r\n")])
    assert skipped == [f"big.bin (over {MAX_FILE_BYTES // 2**20} MiB)"]
    assert store.load_files(info.id) == [("a.txt", b"alpha"), ("plot.png", b"\x89PNG\r\n")]
    store.save_files(info.id, [("b.txt", b"beta")])  # the kept set is replaced
    assert store.load_files(info.id) == [("b.txt", b"beta")]


def test_bound_files_caps_the_total():
    chunk = b"y" * (MAX_FILE_BYTES - 1)
    kept, skipped = bound_files([(f"f{i}", chunk) for i in range(4)])
    assert sum(len(d) for _, d in kept) <= MAX_FILES_BYTES and len(skipped) == 4 - len(kept) >= 1


def test_bound_files_leaves_out_a_path_the_name_column_would_cut():
    deep = "d/" * 140 + "f.txt"  # 285 characters: cut to 255 it would be restored somewhere else
    kept, skipped = bound_files([(deep, b"x"), ("d/ok.txt", b"y")])
    assert kept == [("d/ok.txt", b"y")] and len(skipped) == 1 and "longer than 255" in skipped[0]


def test_runs_are_recorded_listed_and_found_by_prefix(store):
    cases = [{"prompt": "p1", "name_correct": True}, {"prompt": "p2", "name_correct": False}]
    run = store.record_run(prompts_sha256="ab" * 32, cases=cases, summary={"tool_name_accuracy": 0.5},
                           prompts_file="prompts.jsonl", model="tiny", backend="local", params={"seed": 1})
    other = store.record_run(prompts_sha256="cd" * 32, cases=[], summary={})
    assert [r.id for r in store.list_runs()] == [other.id, run.id]
    info, got = store.get_run(run.id[:6])
    assert info.summary == {"tool_name_accuracy": 0.5} and info.params == {"seed": 1} and got == cases
    with pytest.raises(NotFoundError, match="not found"):
        store.get_run("ffffffffffff" if not run.id.startswith("ffff") else "000000000000")
    with pytest.raises(NotFoundError, match="expected a run id"):
        store.get_run("x; drop")
    mine = store.record_run(prompts_sha256="ef" * 32, cases=[], summary={}, user="alice")
    assert [r.id for r in store.list_runs(user="alice")] == [mine.id, other.id, run.id]  # CLI runs are shared
    assert mine.id not in [r.id for r in store.list_runs(user="bob")]
    with pytest.raises(NotFoundError):
        store.get_run(mine.id, user="bob")


# -- migrations -------------------------------------------------------------------------------------------
def test_migration_from_the_first_schema_keeps_data(url):
    from composite.store import Store

    old = Store(url)
    old.migrate("0001")
    assert old.revision() == "0001"
    with old.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO conversations (id, owner, mode, title, title_edited, created_at, updated_at, model, backend,"
            " params) VALUES ('old-conversation-id-0001', '', 'chat', 'from v1', false, '2026-01-01 10:00:00',"
            " '2026-01-01 10:00:00', 'glm', 'local', '{}')")
        conn.exec_driver_sql(
            "INSERT INTO messages (conversation_id, position, role, content, metadata, extra, created_at) VALUES"
            " ('old-conversation-id-0001', 0, 'user', 'hello from v1', '', '{\"duration\": 2}', '2026-01-01 10:00:00')")
    old.close()
    store = open_store(url)
    assert store.revision() == "0002"
    got = store.get("old-conversation-id-0001")
    assert got.info.title == "from v1" and got.messages == [Message("user", "hello from v1", extra={"duration": 2})]
    rec, _ = Recorder.reopen(store, got.info.id)
    rec.sync(got.messages + [Message("assistant", "hi")])
    assert len(store.get(got.info.id).messages) == 2
    store.save_files(got.info.id, [("f.txt", b"1")])  # the tables of the second revision exist
    store.close()


def test_opening_twice_does_not_migrate_again(url):
    first = open_store(url)
    first.create_conversation("chat", [Message("user", "kept")])
    first.close()
    second = open_store(url)
    assert [c.title for c in second.list()] == ["kept"]
    second.close()


# -- two processes -----------------------------------------------------------------------------------------
WRITER = textwrap.dedent("""
    import sys
    from composite.messages import Message
    from composite.store import Recorder, open_store
    url, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = open_store(url)
    for i in range(count):
        msgs = [Message("system", "s"), Message("user", f"{name} question {i}")]
        rec = Recorder(store, "chat")
        rec.sync(msgs)
        for j in range(3):
            msgs.append(Message("assistant", f"{name} answer {i}.{j}"))
            rec.sync(msgs)
    print(len(store.list("chat", search="question")))
""")


def test_two_processes_write_the_same_database_without_loss(url):
    count = 8
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, name, str(count)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for name in ("alpha", "beta")]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
    store = open_store(url)
    listed = store.list("chat", limit=1000)
    assert len(listed) == 2 * count
    for info in listed:
        msgs = store.get(info.id).messages
        name, _, i = msgs[1].content.split()
        assert [m.content for m in msgs[2:]] == [f"{name} answer {i}.{j}" for j in range(3)]
    # each process saw the other's conversations (the later one listed more than its own)
    assert max(int(out) for out, _ in outputs) > count
    store.close()


# -- failures: one clear StoreError, never a crash ---------------------------------------------------------
def test_corrupt_sqlite_file_is_reported(tmp_path):
    path = tmp_path / "history.db"
    path.write_bytes(b"this is not a database\n" * 200)
    with pytest.raises(StoreError, match="corrupt") as exc:
        open_store(f"sqlite:///{path}")
    assert str(path) in str(exc.value) and "move the file away" in str(exc.value)


def test_locked_sqlite_reports_then_recovers(tmp_path):
    path = tmp_path / "history.db"
    store = open_store(f"sqlite:///{path}", busy_timeout=0.2)
    rec = Recorder(store, "chat")
    rec.sync([Message("user", "before the lock")])
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    msgs = [Message("user", "before the lock"), Message("assistant", "during the lock")]
    with pytest.raises(StoreError, match="is locked by another process"):
        rec.sync(msgs)
    holder.execute("ROLLBACK")
    holder.close()
    rec.sync(msgs)  # the same session goes on once the lock is gone
    assert store.get(rec.id).messages == msgs
    store.close()


def test_full_database_is_reported(tmp_path):
    from sqlalchemy import event

    store = open_store(f"sqlite:///{tmp_path / 'history.db'}")
    store.engine.dispose()

    @event.listens_for(store.engine, "connect")
    def _cap(dbapi_conn, _record):  # SQLite's own size cap: the same SQLITE_FULL a full disk gives
        pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
        dbapi_conn.execute(f"PRAGMA max_page_count = {pages + 2}")

    rec = Recorder(store, "chat")
    with pytest.raises(StoreError, match="full"):
        rec.sync([Message("user", "x" * 200_000)])
    store.close()


def test_read_only_database_is_reported(tmp_path):
    """A database SQLite may only read (a read-only mount or file): reading works, a write says why."""
    path = tmp_path / "history.db"
    store = open_store(f"sqlite:///{path}")
    store.create_conversation("chat", [Message("user", "readable")])
    holder = store.engine.connect()  # keeps the WAL index in place, as a running app does
    ro = open_store(f"sqlite:///file:{path}?mode=ro&uri=true")
    assert [c.title for c in ro.list()] == ["readable"]
    with pytest.raises(StoreError, match="is read-only"):
        Recorder(ro, "chat").sync([Message("user", "write me")])
    holder.close()
    ro.close()
    store.close()


def test_postgres_down_mid_session_is_reported_then_recovers(postgres_server):
    url = postgres_server.create_database(f"t_{uuid.uuid4().hex[:12]}")
    store = open_store(url)
    rec = Recorder(store, "chat")
    msgs = [Message("user", "before")]
    rec.sync(msgs)
    postgres_server.stop()
    try:
        msgs.append(Message("assistant", "while down"))
        with pytest.raises(StoreError, match="cannot be reached"):
            rec.sync(msgs)
        with pytest.raises(StoreError, match="cannot be reached"):
            store.list()
    finally:
        postgres_server.start()
    rec.sync(msgs)  # the session resumes writing once the server is back
    assert store.get(rec.id).messages == msgs
    store.close()


def test_bad_database_url_is_a_clear_error():
    with pytest.raises(StoreError, match="not a database URL"):
        open_store("not a url at all")
    with pytest.raises(StoreError, match="unsupported database 'mysql'"):
        open_store("mysql://u@h/db")


def test_default_location_is_the_data_dir(tmp_path):
    env = {"COMPOSITE_DATA_DIR": str(tmp_path / "d")}
    assert data_dir(env) == tmp_path / "d"
    assert database_url(env) == f"sqlite:///{tmp_path / 'd' / 'composite.db'}"
    assert database_url({**env, "COMPOSITE_DATABASE_URL": "postgresql+psycopg://u@h/db"}).startswith("postgresql")
    assert "composite" in str(data_dir({}))  # the per-user directory from platformdirs


def test_the_autouse_fixture_keeps_history_out_of_the_home_directory():
    assert "composite-data" in os.environ["COMPOSITE_DATA_DIR"]
    assert str(Path.home()) not in database_url() or os.environ["COMPOSITE_DATA_DIR"].startswith(str(Path.home()))
