"""Stored history through the pages (AppTest): ?c=<id> reopens, the History list (open, search, rename,
delete, new), user scoping by a trusted proxy header, a broken store, and Code Interpreter files restored.

AppTest cannot send HTTP headers (Streamlit: "headers ... come from the session's client, so AppTest.context
cannot seed them"), so the header tests replace only `pages._history.request_headers`, the one function that
reads them; everything after it (scoping, the store, the page) is the real code.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from composite.messages import Message
from composite.store import open_store
from tests.helpers import short_greedy

ROOT = Path(__file__).resolve().parent.parent


def _page(mode: str, tiny_model_dir, monkeypatch, conv: str | None = None) -> AppTest:
    monkeypatch.setenv("MODEL_PATH", str(tiny_model_dir))
    at = AppTest.from_file(str(ROOT / "pages" / f"{mode}.py"), default_timeout=90)
    if conv is not None:
        at.query_params["c"] = conv
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def store():
    opened = open_store()  # the autouse fixture's per-test data dir: the one the pages use
    yield opened
    opened.close()


def _sidebar_text(at) -> str:
    return " ".join(str(e.value) for kind in ("warning", "error", "caption", "info") for e in getattr(at.sidebar, kind))


def test_a_sent_message_is_stored_and_the_url_names_it(tiny_model_dir, monkeypatch, store):
    at = short_greedy(_page("chat", tiny_model_dir, monkeypatch), "chat", 6)
    at.chat_input[0].set_value("remember the tulips").run()
    assert not at.exception
    (info,) = store.list("chat")
    assert at.query_params["c"] == info.id and info.title == "remember the tulips"
    stored = store.get(info.id)
    assert stored.messages == at.session_state["chat_history"]
    assert [m.role for m in stored.messages] == ["system", "user", "assistant"]
    assert stored.info.model == "tiny-random" and stored.info.params["max_new_tokens"] == 6
    assert "Stored in" in _sidebar_text(at) and str(store.location) in _sidebar_text(at)


def test_the_url_reopens_the_conversation_after_a_reload(tiny_model_dir, monkeypatch, store):
    sent = [Message("system", "be brief"), Message("user", "first question: 9**9**9?"),
            Message("assistant", "first answer")]
    info = store.create_conversation("chat", sent)
    at = _page("chat", tiny_model_dir, monkeypatch, conv=info.id)  # a new session: reload, bookmark, restart
    assert at.session_state["chat_history"] == sent
    user, answer = at.chat_message
    # the user's words come back literally (plain text, no Markdown eating the **), the answer as Markdown
    assert [t.value for t in user.text] == ["first question: 9**9**9?"] and not user.markdown
    assert answer.markdown[0].value == "first answer"
    assert at.text_area(key="chat_system").value == "be brief"
    short_greedy(at, "chat", 6).chat_input[0].set_value("second question").run()
    assert [m.content for m in store.get(info.id).messages][:4] == ["be brief", "first question: 9**9**9?", "first answer",
                                                                     "second question"]
    assert len(store.list("chat")) == 1  # continued, not copied


def test_an_unknown_id_is_not_found_and_the_page_still_works(tiny_model_dir, monkeypatch, store):
    at = _page("chat", tiny_model_dir, monkeypatch, conv="no-such-conversation")
    assert any("not found" in e.value for e in at.sidebar.error)
    short_greedy(at, "chat", 6).chat_input[0].set_value("fresh start").run()
    (info,) = store.list("chat")
    assert info.title == "fresh start" and at.query_params["c"] == info.id


def test_history_list_opens_searches_renames_and_deletes(tiny_model_dir, monkeypatch, store):
    older = store.create_conversation("chat", [Message("user", "about cats")])
    newer = store.create_conversation("chat", [Message("user", "about dogs")])
    store.create_conversation("tool", [Message("user", "tool mode only")])
    at = _page("chat", tiny_model_dir, monkeypatch)
    buttons = [b for b in at.sidebar.button if b.key and b.key.startswith("chat_hist_open_")]
    assert [b.label for b in buttons] == ["about dogs", "about cats"]  # newest first, this mode only
    at.text_input(key="chat_hist_search").set_value("CAT").run()
    assert [b.label for b in at.sidebar.button if b.key and b.key.startswith("chat_hist_open_")] == ["about cats"]
    at.button(key=f"chat_hist_open_{older.id}").click().run()
    assert at.query_params["c"] == older.id
    assert [m.content for m in at.session_state["chat_history"]][1:] == ["about cats"]
    at.text_input(key=f"chat_hist_title_{older.id}").set_value("Feline facts")
    at.button(key=f"chat_hist_rename_{older.id}").click().run()
    assert store.get(older.id).info.title == "Feline facts"
    at.text_input(key="chat_hist_search").set_value("").run()
    at.button(key=f"chat_hist_delete_{older.id}").click().run()
    assert [c.id for c in store.list("chat")] == [newer.id]
    assert "c" not in at.query_params and [m.role for m in at.session_state["chat_history"]] == ["system"]


def test_history_titles_are_shown_as_typed(tiny_model_dir, monkeypatch, store):
    from pages._history import literal

    typed = "is 9**9**9 big? _x_ [link](http://x) :red[y]"
    store.create_conversation("chat", [Message("user", typed)])
    at = _page("chat", tiny_model_dir, monkeypatch)
    [label] = [b.label for b in at.sidebar.button if b.key and b.key.startswith("chat_hist_open_")]
    assert label == literal(typed) and "\\*\\*" in label and "\\[link\\]" in label  # Markdown cannot act on it
    assert label.replace("\\", "") == typed  # and what shows is exactly what was typed


def test_new_conversation_keeps_the_old_one(tiny_model_dir, monkeypatch, store):
    at = short_greedy(_page("chat", tiny_model_dir, monkeypatch), "chat", 6)
    at.chat_input[0].set_value("the first").run()
    first = at.query_params["c"]
    at.button(key="chat_hist_new").click().run()
    assert "c" not in at.query_params and [m.role for m in at.session_state["chat_history"]] == ["system"]
    at.chat_input[0].set_value("the second").run()
    assert at.query_params["c"] != first
    assert {c.title for c in store.list("chat")} == {"the first", "the second"}


def test_import_and_export_work_on_stored_conversations(tiny_model_dir, monkeypatch, store):
    info = store.create_conversation("chat", [Message("system", "s"), Message("user", "exported question")])
    exported = store.get(info.id).export()
    assert exported["title"] == "exported question" and exported["messages"][1]["content"] == "exported question"
    from pages._shared import import_conversation
    import json

    again = import_conversation(json.dumps(exported).encode())
    assert again == store.get(info.id).messages


# -- users -------------------------------------------------------------------------------------------------
def _as(monkeypatch, user: str | None):
    import pages._history as history

    monkeypatch.setenv("COMPOSITE_TRUSTED_USER_HEADER", "X-Forwarded-User")
    monkeypatch.setattr(history, "request_headers", lambda: {"X-Forwarded-User": user} if user else {})


def test_user_scope_reads_the_trusted_header(monkeypatch):
    import pages._history as history

    monkeypatch.setattr(history, "request_headers", lambda: {"X-Forwarded-User": " alice "})
    assert history.user_scope() == (True, None, "")  # the variable is not set: local, the header ignored
    monkeypatch.setenv("COMPOSITE_TRUSTED_USER_HEADER", "X-Forwarded-User")
    assert history.user_scope() == (True, "alice", "")
    monkeypatch.setattr(history, "request_headers", lambda: {"X-Other": "x"})
    allowed, user, why = history.user_scope()
    assert not allowed and user is None and "X-Forwarded-User" in why


def test_users_see_only_their_own_conversations(tiny_model_dir, monkeypatch, store):
    _as(monkeypatch, "alice")
    at = short_greedy(_page("chat", tiny_model_dir, monkeypatch), "chat", 6)
    at.chat_input[0].set_value("alice's plan").run()
    alice_id = at.query_params["c"]
    assert [c.id for c in store.list(user="alice")] == [alice_id]
    assert "user `alice`" in _sidebar_text(at)

    _as(monkeypatch, "bob")
    bob = _page("chat", tiny_model_dir, monkeypatch, conv=alice_id)  # bob pastes alice's link
    assert any("not found" in e.value for e in bob.sidebar.error)
    assert [m.role for m in bob.session_state["chat_history"]] == ["system"]
    assert not [b for b in bob.sidebar.button if b.key and b.key.startswith("chat_hist_open_")]


def test_a_missing_header_stores_and_shows_nothing_and_says_why(tiny_model_dir, monkeypatch, store):
    store.create_conversation("chat", [Message("user", "someone's secret")], user="alice")
    _as(monkeypatch, None)
    at = short_greedy(_page("chat", tiny_model_dir, monkeypatch), "chat", 6)
    assert any("X-Forwarded-User" in w.value and "nothing is stored or shown" in w.value for w in at.sidebar.warning)
    assert not [b for b in at.sidebar.button if b.key and b.key.startswith("chat_hist_open_")]
    at.chat_input[0].set_value("not to be stored").run()
    assert not at.exception and at.session_state["chat_history"][-1].role == "assistant"  # the chat still works
    assert [c.title for c in store.list()] == ["someone's secret"] and "c" not in at.query_params


# -- a broken store ----------------------------------------------------------------------------------------
def test_a_corrupt_database_turns_history_off_and_the_chat_goes_on(tiny_model_dir, monkeypatch, tmp_path):
    data = tmp_path / "corrupt-data"
    data.mkdir()
    (data / "composite.db").write_bytes(b"not a database at all " * 100)
    monkeypatch.setenv("COMPOSITE_DATA_DIR", str(data))
    at = short_greedy(_page("chat", tiny_model_dir, monkeypatch), "chat", 6)
    assert "History is off" in _sidebar_text(at) and "corrupt" in _sidebar_text(at)
    at.chat_input[0].set_value("still answered?").run()
    assert not at.exception
    assert [m.role for m in at.session_state["chat_history"]] == ["system", "user", "assistant"]


# -- Code Interpreter: a fresh kernel, files restored, the model told ----------------------------------------
def _png() -> bytes:
    """A valid 2x2 RGB PNG."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * 2 for _ in range(2))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_a_reopened_code_conversation_gets_a_fresh_kernel_with_its_files(tiny_model_dir, monkeypatch, store):
    from composite.agent import Decision
    from composite.prompts import system_prompt

    at = short_greedy(_page("code", tiny_model_dir, monkeypatch), "code", 6)
    at.session_state["code_history"] = [
        Message("system", system_prompt("code")), Message("user", "make a file"),
        Message("assistant", "```python\nsecret = 41\nopen('result.txt', 'w').write(str(secret + 1))\n```",
                "interpreter"),
    ]
    at.session_state["code_decision"] = Decision("run")
    at.run()
    assert not at.exception, at.exception
    conv = at.query_params["c"]
    assert store.load_files(conv) == [("result.txt", b"42")]
    messages = store.get(conv).messages
    assert messages[3].role == "observation"
    # a plot the code drew: kept as a file, referenced by name from the observation
    from composite.store import Recorder

    store.save_files(conv, [("result.txt", b"42"), ("dot.png", _png())])
    recorder, _ = Recorder.reopen(store, conv)
    messages[3].extra["images"] = ["dot.png"]
    recorder.sync(messages)
    st.cache_resource.clear()  # the app restarts: every kernel is gone

    again = _page("code", tiny_model_dir, monkeypatch, conv=conv)
    assert any("fresh Python kernel" in i.value and "result.txt" in i.value for i in again.info)
    sandbox = again.session_state["code_sandbox"]
    assert sandbox.read_file("result.txt") == b"42" and sandbox.read_file("dot.png") == _png()
    assert [caption for image in again.get("image") for caption in image.captions] == ["dot.png"]  # shown again
    result = sandbox.execute("print(open('result.txt').read())\ntry:\n    secret\nexcept NameError:\n    print('gone')")
    assert result.text().split() == ["42", "gone"]
    short_greedy(again, "code", 6).chat_input[0].set_value("what is in result.txt?").run()
    user_turn = [m for m in again.session_state["code_history"] if m.role == "user"][-1]
    assert "what is in result.txt?" in user_turn.content and "fresh Python kernel" in user_turn.content
    st.cache_resource.clear()


def test_a_reopened_code_conversation_restores_files_in_their_folders(tiny_model_dir, monkeypatch, store, tmp_path):
    from composite.prompts import system_prompt

    info = store.create_conversation("code", [Message("system", system_prompt("code")), Message("user", "make files"),
                                              Message("assistant", "made")])
    outside = tmp_path / "outside"
    outside.mkdir()
    kept = [("a/x.txt", b"in a"), ("b/x.txt", b"in b"), ("c/d/deep.csv", b"1,2"), ("top.txt", b"top")]
    # the store is hostile input too: a path out of the workdir, an absolute one, a kernel startup file
    hostile = [("../escape.txt", b"no"), (str(outside / "abs.txt"), b"no"), ("a/../../up.txt", b"no"),
               (".ipython/profile_default/startup/evil.py", b"raise SystemExit")]
    store.save_files(info.id, kept + hostile)
    st.cache_resource.clear()
    at = _page("code", tiny_model_dir, monkeypatch, conv=info.id)
    sandbox = at.session_state["code_sandbox"]
    for name, data in kept:
        assert sandbox.read_file(name) == data  # in its folder, not flattened (a/x.txt and b/x.txt both kept)
    assert sorted(f.path for f in sandbox.list_files()) == sorted(name for name, _ in kept)
    [note] = [i.value for i in at.info if "fresh Python kernel" in i.value]
    assert "a/x.txt" in note and "c/d/deep.csv" in note
    assert "Not restored" in note and all(name[:20] in note for name, _ in hostile)
    assert not list(outside.iterdir()) and not (sandbox.workdir.parent / "escape.txt").exists()
    assert not (sandbox.workdir / ".ipython" / "profile_default" / "startup" / "evil.py").exists()
    result = sandbox.execute("print(open('c/d/deep.csv').read(), open('b/x.txt').read())")
    assert result.text().split() == ["1,2", "in", "b"]  # the code finds them where it left them
    st.cache_resource.clear()


def test_postgres_down_mid_session_turns_history_off_and_the_chat_goes_on(tiny_model_dir, monkeypatch,
                                                                          postgres_server):
    import uuid

    url = postgres_server.create_database(f"app_{uuid.uuid4().hex[:12]}")
    monkeypatch.setenv("COMPOSITE_DATABASE_URL", url)
    at = short_greedy(_page("chat", tiny_model_dir, monkeypatch), "chat", 6)
    at.chat_input[0].set_value("before the outage").run()
    conv = at.query_params["c"]
    postgres_server.stop()
    try:
        at.chat_input[0].set_value("during the outage").run()
        assert not at.exception
        assert [m.content for m in at.session_state["chat_history"] if m.role == "user"] == [
            "before the outage", "during the outage"]
        assert "cannot be reached" in at.session_state["history_error"][0]
        assert any("History is off" in t.value and "cannot be reached" in t.value for t in at.toast)
    finally:
        postgres_server.start()
    other = open_store(url)  # another replica on the same PostgreSQL sees what was saved before the outage
    assert [m.content for m in other.get(conv).messages if m.role == "user"] == ["before the outage"]
    import pages._history as history

    monkeypatch.setattr(history, "RETRY_AFTER", 0.0)  # instead of waiting 30 s before the next try
    at.chat_input[0].set_value("after the outage").run()
    assert "history_error" not in at.session_state
    assert [m.content for m in other.get(conv).messages if m.role == "user"] == [
        "before the outage", "during the outage", "after the outage"]  # what was missed is caught up
    other.close()


def test_a_link_to_another_modes_conversation_opens_on_its_page(tiny_model_dir, monkeypatch, store):
    """Through main.py's navigation: /?c=<tool conversation> lands on the Tool page with it open."""
    info = store.create_conversation("tool", [Message("system", "s"), Message("user", "weather in Oslo?")])
    monkeypatch.setenv("MODEL_PATH", str(tiny_model_dir))
    at = AppTest.from_file(str(ROOT / "main.py"), default_timeout=90)
    at.query_params["c"] = info.id
    at.run()
    assert not at.exception, at.exception
    assert "Tool" in at.title[0].value and at.query_params["c"] == info.id
    assert [m.content for m in at.session_state["tool_history"]] == ["s", "weather in Oslo?"]
