"""Page behaviour the older page tests faked or missed, driven through AppTest with the real model.

A stop here is Streamlit's own: the script runner is asked to stop mid-stream (what the stop button
does), so the page's partial-answer path runs for real. Also: the "waiting for the model" and
"context full" notices, the export download buttons, and uploads into the code sandbox's workdir.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import streamlit as st
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from composite.messages import Message, SamplingParams

ROOT = Path(__file__).resolve().parent.parent


def _page(name: str, model_dir: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv("MODEL_PATH", str(model_dir))
    at = AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=90)
    at.run()
    assert not at.exception, at.exception
    at.slider(key=f"{name}_temperature").set_value(0.0)
    return at


def _runtime(model_dir: Path):
    """The page's cached runtime (same cache key as the page's first run: auto device, dtype and engine)."""
    from pages._shared import _cached_runtime

    return _cached_runtime(str(model_dir), "auto", "auto", None, "auto")


@pytest.fixture
def downloads(monkeypatch) -> dict[str, bytes]:
    """What a click on each download button would fetch (file name -> bytes): data given directly is
    recorded when Streamlit stores it, data given as a callable is made when the test reads it."""
    from streamlit.runtime.media_file_manager import MediaFileManager

    class Downloads(dict):
        def __getitem__(self, name):
            value = super().__getitem__(name)
            value = value() if callable(value) else value
            return value.encode() if isinstance(value, str) else value

    seen = Downloads()
    stored, deferred = MemoryMediaFileStorage.load_and_get_id, MediaFileManager.add_deferred

    def store(self, path_or_data, mimetype, kind, filename=None):
        if filename is not None:
            seen[filename] = path_or_data if isinstance(path_or_data, bytes) else Path(path_or_data).read_bytes()
        return stored(self, path_or_data, mimetype, kind, filename)

    def defer(self, data_callable, mimetype, coordinates, file_name=None, **kwargs):
        seen[file_name] = data_callable
        return deferred(self, data_callable, mimetype, coordinates, file_name=file_name, **kwargs)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", store)
    monkeypatch.setattr(MediaFileManager, "add_deferred", defer)
    return seen


def test_stop_mid_stream_keeps_what_had_streamed(tiny_model_dir, monkeypatch):
    at = _page("chat", tiny_model_dir, monkeypatch)
    at.number_input(key="chat_max_new").set_value(200).run()
    runtime = _runtime(tiny_model_dir)
    full = list(runtime.generate_ids(runtime.dialect.render([at.session_state["chat_history"][0],
                                                             Message("user", "tell me a story")]),
                                     SamplingParams(max_new_tokens=200, temperature=0)))
    runtime_type = type(runtime)
    original = runtime_type.generate_ids
    produced: list[int] = []

    def press_stop_after_a_few_tokens(self, prompt_ids, params, stop_ids=None, stop=None, **kwargs):
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        for i, token in enumerate(original(self, prompt_ids, params, stop_ids, stop, **kwargs)):
            produced.append(token)
            if i == 8:  # the user presses stop: the same request the stop button sends
                get_script_run_ctx().script_requests.request_stop()
            if i >= 8:
                threading.Event().wait(0.06)  # past the page's redraw interval, so the next delta draws
            yield token

    monkeypatch.setattr(runtime_type, "generate_ids", press_stop_after_a_few_tokens)
    at.chat_input[0].set_value("tell me a story").run()
    assert 8 < len(produced) < len(full)  # stopped mid-stream, not at the end
    assert [m.role for m in at.session_state["chat_history"]] == ["system", "user"]  # nothing saved yet
    monkeypatch.setattr(runtime_type, "generate_ids", original)
    at.run()  # the next run (what the browser does after a stop) keeps the streamed part
    history = at.session_state["chat_history"]
    assert [m.role for m in history] == ["system", "user", "assistant"]
    kept = history[-1]
    assert kept.extra.get("stopped") is True
    streamed = runtime.dialect.decode(produced).strip()
    whole = runtime.dialect.decode(full).strip()
    assert kept.content and streamed.startswith(kept.content) and whole.startswith(kept.content)
    assert len(kept.content) < len(whole)
    assert any(m.value.endswith("*(stopped)*") for m in at.markdown)


def test_waiting_notice_while_another_session_generates(tiny_model_dir, monkeypatch):
    at = _page("chat", tiny_model_dir, monkeypatch)
    at.number_input(key="chat_max_new").set_value(4).run()
    runtime = _runtime(tiny_model_dir)
    other = runtime.stream_turn([Message("user", "another session")], None, SamplingParams(max_new_tokens=50,
                                                                                          temperature=0))
    next(e for e in other if type(e).__name__ == "TextDelta")  # that session now holds the model
    assert runtime.busy
    release = threading.Timer(1.0, other.close)  # it finishes a moment later
    release.start()
    try:
        at.chat_input[0].set_value("hi").run()
    finally:
        release.join()
    assert not at.exception
    assert any("waiting for another session" in i.value for i in at.info)
    assert [m.role for m in at.session_state["chat_history"]] == ["system", "user", "assistant"]


def test_context_full_notice_when_old_turns_are_dropped(tiny_model_dir, monkeypatch):
    at = _page("chat", tiny_model_dir, monkeypatch)
    at.number_input(key="chat_max_new").set_value(4)
    at.number_input(key="chat_max_length").set_value(128).run()
    old = [Message("user", "The weather in Oslo is 12 degrees and cloudy. " * 3),
           Message("assistant", "Hello! How can I help you today? " * 3)] * 3
    at.session_state["chat_history"] = [at.session_state["chat_history"][0], *old]
    at.chat_input[0].set_value("and now?").run()
    assert not at.exception
    notices = [i.value for i in at.info if i.value.startswith("context full")]
    assert len(notices) == 1 and "oldest message(s)" in notices[0]
    assert len(at.session_state["chat_history"]) == 1 + len(old) + 2  # the page keeps the whole history


def test_export_buttons_download_the_conversation_as_it_is_when_clicked(tiny_model_dir, monkeypatch, downloads):
    """The sidebar draws before the answer streams: the export must still include that answer."""
    at = _page("chat", tiny_model_dir, monkeypatch)
    at.number_input(key="chat_max_new").set_value(4).run()
    at.chat_input[0].set_value("export me").run()
    history = at.session_state["chat_history"]
    assert [m.role for m in history] == ["system", "user", "assistant"]
    assert json.loads(downloads["chat-conversation.json"]) == [m.to_dict() for m in history]
    markdown = downloads["chat-conversation.md"].decode()
    assert "### user\n\nexport me" in markdown and f"### assistant\n\n{history[-1].content}" in markdown
    labels = [b.label for b in at.download_button]
    assert any("Export JSON" in label for label in labels) and any("Export Markdown" in label for label in labels)


@pytest.fixture
def code_page(tiny_model_dir, monkeypatch):
    at = _page("code", tiny_model_dir, monkeypatch)
    at.number_input(key="code_max_new").set_value(4).run()
    yield at
    st.cache_resource.clear()  # AppTest never ends its session: shut the kernels down


def test_upload_lands_in_the_workdir_and_is_named_to_the_model(code_page, downloads):
    uploader = code_page.file_uploader(key="code_uploads")
    uploader.set_value([("data.csv", b"a,b\n1,2\n", "text/csv")]).run()
    assert not code_page.exception
    assert any("data.csv" in b.label for b in code_page.download_button)  # offered from the workdir
    assert downloads["data.csv"] == b"a,b\n1,2\n"
    code_page.chat_input[0].set_value("sum the columns").run()
    user = code_page.session_state["code_history"][1]
    assert user.role == "user" and "Uploaded files in the working directory: data.csv" in user.content
    code_page.chat_input[0].set_value("again").run()  # named once, not with every question
    again = [m for m in code_page.session_state["code_history"] if m.role == "user"][-1]
    assert again.content == "again"


def test_a_file_the_code_writes_gets_a_download_button(code_page, downloads):
    from composite.agent import Decision
    from composite.prompts import system_prompt

    code_page.session_state["code_history"] = [
        Message("system", system_prompt("code")),
        Message("user", "write a file"),
        Message("assistant", "```python\nopen('out.txt', 'w').write('made in the sandbox')\n```", "interpreter"),
    ]
    code_page.session_state["code_decision"] = Decision("run")
    code_page.run()  # the sidebar's file list is drawn after the turn: the new file is offered at once
    assert any("out.txt" in b.label for b in code_page.download_button)
    assert downloads["out.txt"] == b"made in the sandbox"


def test_downloads_outlive_other_sessions_runs(code_page, monkeypatch):
    """Streamlit deletes a stored download that no session's page references after two orphan passes, and
    every script run of every session ends with one. A callable's file (made on click) is such a file: with
    eight people on the app the browser's fetch found it gone (404, no download; the soak caught it). The
    exports and small workdir files are therefore handed over as data, referenced by this session's page, and
    clicking them starts no run."""
    from streamlit.runtime.media_file_manager import MediaFileManager

    managers = []  # AppTest's runtime exists only during a run: catch its manager at its end-of-run pass
    orphan_pass = MediaFileManager.remove_orphaned_files
    monkeypatch.setattr(MediaFileManager, "remove_orphaned_files", lambda self: (managers.append(self), orphan_pass(self))[1])
    code_page.file_uploader(key="code_uploads").set_value([("kept.csv", b"a\n1\n", "text/csv")]).run()
    code_page.chat_input[0].set_value("hello").run()
    assert not code_page.exception
    manager = managers[-1]
    for _ in range(2):  # two other sessions' runs end before the browser fetches
        manager.remove_orphaned_files()
    buttons = {b.proto.label: b.proto for b in code_page.get("download_button")}
    wanted = [label for label in buttons if label in ("Export JSON", "Export Markdown") or "kept.csv" in label]
    assert len(wanted) == 3, sorted(buttons)
    for label in wanted:
        url = buttons[label].url
        assert url and not buttons[label].deferred_file_id, f"{label} is made on click"
        # a click must not start a run: the run drops this page's reference to the file until it draws the
        # button again, and two other sessions' runs ending meanwhile delete it (a canceled download)
        assert buttons[label].ignore_rerun, f"clicking {label} reruns the page"
        manager._storage.get_file(url.rsplit("/", 1)[-1])  # raises when the file was deleted


def test_a_sessions_next_turn_reuses_its_kv_cache_and_the_session_end_drops_it(tiny_model_dir, monkeypatch):
    from pages._shared import _Conversations

    at = _page("chat", tiny_model_dir, monkeypatch)
    at.number_input(key="chat_max_new").set_value(4).run()
    runtime = _runtime(tiny_model_dir)
    at.chat_input[0].set_value("first question").run()
    keys = [key for key in runtime.prefix_cache.keys() if str(key).endswith(":chat")]
    assert len(keys) == 1  # this session's chat conversation, under its own key
    at.chat_input[0].set_value("second question").run()
    prompt = runtime.dialect.render(at.session_state["chat_history"][:-1])
    assert 0 < runtime.last_prefill_tokens < len(prompt) // 2  # most of the prompt came from the cache
    owner = _Conversations()
    owner.id, owner.backends = keys[0].split(":")[0], {keys[0]: runtime}
    owner.release()  # what Streamlit calls when the session ends
    assert keys[0] not in runtime.prefix_cache.keys()
