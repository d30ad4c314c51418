"""Stored history for the pages: the store of this process, the user from a trusted proxy header, the
conversation in the URL (`?c=<id>`), the sidebar list (open, rename, delete, new), and saving as each
message completes. A store that fails turns history off with one clear message; the page keeps working.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import streamlit as st

from composite.errors import NotFoundError, SandboxError, StoreError
from composite.messages import Message

USER_HEADER_ENV = "COMPOSITE_TRUSTED_USER_HEADER"
RETRY_AFTER = 30.0  # seconds without store calls after a failure, so a locked or down database never stalls each turn
LIST_LIMIT = 50
MODE_PAGES = {"chat": "pages/chat.py", "tool": "pages/tool.py", "code": "pages/code.py"}


# -- the store: one per process, reopened after a failure -------------------------------------------
class _StoreHandle:
    """Opens the store lazily; after a failure, tries again only after RETRY_AFTER seconds."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.store = None
        self.error = ""
        self.failed_at = 0.0
        self._lock = threading.Lock()

    def get(self):
        with self._lock:
            if self.store is None and (not self.error or time.monotonic() - self.failed_at > RETRY_AFTER):
                from composite.store import open_store

                try:
                    self.store, self.error = open_store(self.url), ""
                except StoreError as exc:
                    self.error, self.failed_at = str(exc), time.monotonic()
            return self.store


@st.cache_resource(show_spinner=False)
def _handle(url: str) -> _StoreHandle:
    return _StoreHandle(url)


def store():
    """This process's store, or None while history is off (the reason is in `problem()`)."""
    from composite.store import database_url

    try:
        url = database_url()
    except OSError as exc:  # no home directory to put the per-user data dir in
        st.session_state["history_error"] = (f"no data directory: {exc}", time.monotonic())
        return None
    handle = _handle(url)
    found = handle.get()
    if found is None:
        _fail(handle.error)
    return found


# -- users ----------------------------------------------------------------------------------------------
def request_headers() -> Any:
    """The HTTP headers of this session's request (the one place they are read; tests replace it)."""
    return st.context.headers


def user_scope() -> tuple[bool, str | None, str]:
    """(allowed, user, why): local use is (True, None, ""); behind a trusted proxy header the user is its
    value, and a request without it is not allowed to store or see anything."""
    header = os.environ.get(USER_HEADER_ENV, "").strip()
    if not header:
        return True, None, ""
    value = (request_headers() or {}).get(header) or ""
    value = str(value).strip()
    if not value:
        return False, None, (f"History is off: this app trusts the `{header}` header from an authenticating proxy "
                             f"({USER_HEADER_ENV}), and this request came without it, so nothing is stored or shown. "
                             "Open the app through the proxy.")
    return True, value[:255], ""


def _ready():
    """(store, user) when history can be used now, else None."""
    allowed, user, _ = user_scope()
    if not allowed:
        return None
    failed = st.session_state.get("history_error")
    if failed and time.monotonic() - failed[1] < RETRY_AFTER:
        return None
    found = store()
    return None if found is None else (found, user)


def _fail(message: str) -> None:
    state = st.session_state
    first = "history_error" not in state or state["history_error"][0] != message
    state["history_error"] = (message, time.monotonic())
    if first:
        st.toast(f"History is off: {message}. The conversation goes on without being saved.", icon=":material/warning:")


def problem() -> str:
    """Why history is off for this session right now ('' when it works)."""
    allowed, _, why = user_scope()
    if not allowed:
        return why
    failed = st.session_state.get("history_error")
    return f"History is off: {failed[0]}. The conversation goes on without being saved." if failed else ""


# -- the conversation of each mode ----------------------------------------------------------------------
def _recorder_key(mode: str) -> str:
    return f"{mode}_recorder"


def current_id(mode: str) -> str | None:
    recorder = st.session_state.get(_recorder_key(mode))
    return recorder.id if recorder is not None else None


def bind(mode: str) -> None:
    """Follow the URL: `?c=<id>` names the conversation to show; load it if this session has not. Without
    the parameter (after switching pages), put the open conversation back into the URL."""
    state = st.session_state
    wanted = st.query_params.get("c")
    current = current_id(mode)
    if not wanted:
        if current:
            st.query_params["c"] = current
        return
    if wanted == current or state.get(f"{mode}_missing") == wanted:
        return
    ready = _ready()
    if ready is None:
        return
    from composite.store import Recorder

    found, user = ready
    try:
        recorder, conversation = Recorder.reopen(found, wanted, user)
    except NotFoundError:
        state[f"{mode}_missing"] = wanted
        return
    except StoreError as exc:
        _fail(str(exc))
        return
    if conversation.info.mode != mode:  # a link to another mode's conversation: open it on its page
        from streamlit.errors import StreamlitAPIException

        try:
            st.switch_page(MODE_PAGES[conversation.info.mode], query_params={"c": wanted})
        except StreamlitAPIException:  # the page runs alone (no navigation): say where it belongs
            state[f"{mode}_missing"] = wanted
            return
    messages = conversation.messages
    if not messages or messages[0].role != "system":
        from composite.prompts import system_prompt

        messages.insert(0, Message("system", system_prompt(mode)))
    state[f"{mode}_history"] = messages
    state[_recorder_key(mode)] = recorder
    state.pop(f"{mode}_missing", None)
    state.pop(f"{mode}_system", None)  # the system prompt box shows the reopened conversation's prompt
    for key in (f"{mode}_partial", f"{mode}_decision", f"{mode}_run"):
        state.pop(key, None)
    if mode == "code":
        state["code_reopened"] = wanted


def detach(mode: str) -> None:
    """The page's messages no longer belong to the stored conversation: the next save starts a new one."""
    st.session_state.pop(_recorder_key(mode), None)
    st.session_state.pop(f"{mode}_missing", None)
    if "c" in st.query_params:
        del st.query_params["c"]


def new_conversation(mode: str) -> None:
    """An empty conversation (the system prompt kept); in Code Interpreter a fresh kernel and workdir."""
    state = st.session_state
    history = state.get(f"{mode}_history")
    if history:
        del history[1:]
    for key in (f"{mode}_partial", f"{mode}_decision", f"{mode}_run"):
        state.pop(key, None)
    detach(mode)
    if mode == "code":
        state["code_reopened"] = ""
        state.pop("code_restore_note", None)


def save(mode: str, agent: Any = None, params: Any = None) -> None:
    """Store what changed in this mode's conversation (called as each message completes)."""
    state = st.session_state
    messages = state.get(f"{mode}_history")
    if not messages or not any(m.role == "user" for m in messages):
        return
    ready = _ready()
    if ready is None:
        return
    found, user = ready
    from composite.store import Recorder

    if agent is not None:
        info = getattr(agent.backend, "info", None)
        state[f"{mode}_model_meta"] = (
            getattr(info, "name", "") or type(agent.backend).__name__, getattr(info, "backend", "") or "",
            _params_dict(params),
        )
    model, backend, sampling = state.get(f"{mode}_model_meta", ("", "", {}))
    recorder = state.get(_recorder_key(mode))
    if recorder is None or recorder.store is not found or recorder.user != user:
        recorder = state[_recorder_key(mode)] = Recorder(found, mode, user)
    try:
        note = recorder.sync(messages, model=model, backend=backend, params=sampling)
        if mode == "code" and agent is not None:  # during a run: code may have written files
            _save_files(recorder, state.get("code_sandbox"))
    except StoreError as exc:
        _fail(str(exc))
        return
    state.pop("history_error", None)
    if note:
        st.toast(note, icon="ℹ️")
    if recorder.id and st.query_params.get("c") != recorder.id:
        st.query_params["c"] = recorder.id


def _params_dict(params: Any) -> dict[str, Any]:
    from dataclasses import asdict, is_dataclass

    return asdict(params) if is_dataclass(params) else dict(params or {})


# -- Code Interpreter: a fresh kernel per reopened conversation, its files kept ---------------------------
def _work_files(sandbox) -> list[tuple[str, int]]:
    """(relative path, size) of the workdir's files through the sandbox's own listing."""
    items = []
    for item in sandbox.list_files():
        if isinstance(item, Path):  # an older sandbox lists host paths
            items.append((item.relative_to(sandbox.workdir).as_posix(), item.lstat().st_size))
        else:
            items.append((item.path, int(item.size)))
    return items


def _save_files(recorder, sandbox) -> None:
    """Keep the workdir's files with the conversation (bounded); written only when their content changed."""
    if sandbox is None or recorder.id is None:
        return
    import hashlib

    from composite.store import MAX_FILE_BYTES

    files, skipped = [], []
    try:
        listing = _work_files(sandbox)
    except (SandboxError, OSError):
        return
    for name, size in listing:
        if size > MAX_FILE_BYTES:  # never read a file that will not be kept
            skipped.append(f"{name} (over {MAX_FILE_BYTES // 2**20} MiB)")
            continue
        try:
            files.append((name, sandbox.read_file(name, MAX_FILE_BYTES)))
        except (SandboxError, OSError):  # vanished, or unsafe (a link planted by the code): not kept
            continue
    signature = tuple((name, hashlib.sha256(data).hexdigest()) for name, data in files)
    if signature != recorder.files_signature:
        skipped = recorder.store.save_files(recorder.id, files, user=recorder.user) + skipped
        recorder.files_signature = signature
    if skipped:
        st.session_state["code_files_left_out"] = skipped
    else:
        st.session_state.pop("code_files_left_out", None)


def _restore_file(sandbox, name: str, data: bytes) -> str:
    """Put a kept file back at its relative path (sub-folders included) through the executor's checked
    writer; an executor without one gets the plain file name."""
    restore = getattr(sandbox, "restore_file", None)
    if restore is not None:
        return str(restore(name, data))
    return str(sandbox.upload(Path(name).name, data).name)


def code_sandbox(manager, session_id: str):
    """This session's sandbox. After a conversation was opened (or a new one started), the kernel is
    replaced by a fresh one and the conversation's kept files are copied into its workdir; the page and
    the next prompt say that variables were lost."""
    state = st.session_state
    bind("code")  # a conversation named in the URL is loaded before its kernel is chosen
    pending = state.pop("code_reopened", None)
    if pending is not None:
        manager.close(session_id)
    sandbox = manager.get(session_id)
    state["code_sandbox"] = sandbox
    if pending:
        restored, failed, files = [], [], []
        ready = _ready()
        if ready is not None:
            found, user = ready
            try:
                files = found.load_files(pending, user=user)
            except StoreError as exc:
                _fail(str(exc))
                files = []
            kept = []
            for name, data in files:
                try:
                    restored.append(_restore_file(sandbox, name, data))
                except SandboxError as exc:
                    failed.append(f"{name[:200]} ({exc})")
                else:
                    kept.append((name, data))
            files = kept
        recorder = state.get(_recorder_key("code"))
        if recorder is not None:
            import hashlib

            recorder.files_signature = tuple((n, hashlib.sha256(d).hexdigest()) for n, d in files)
        note = ("This conversation was reopened in a fresh Python kernel: variables, imports and functions from "
                "earlier code are gone and must be recreated.")
        if restored:
            note += f" Files restored into the working directory: {', '.join(restored)}."
        if failed:
            note += f" Not restored: {', '.join(failed)}."
        state["code_restore_note"] = note
    if state.get("code_restore_note"):
        st.info(state["code_restore_note"])
    if state.get("code_files_left_out"):
        st.caption("Not kept with the conversation: " + ", ".join(state["code_files_left_out"]))
    return sandbox


def note_for_model(mode: str, prompt: str) -> str:
    """The prompt with the pending reopen note appended once (the model learns variables were lost)."""
    if mode != "code":
        return prompt
    note = st.session_state.pop("code_restore_note", None)
    return f"{prompt}\n\n({note})" if note else prompt


# -- the sidebar ---------------------------------------------------------------------------------------
_MARKDOWN_PUNCTUATION = frozenset("\\`*_{}[]()#+-.!|<>~$:")


def literal(text: str) -> str:
    """text for a label that Streamlit renders as Markdown, shown as written: every character Markdown
    (or Streamlit's :icon: / :color[] / $math$) could act on is backslash-escaped, line breaks become spaces."""
    flat = " ".join(str(text).split())
    return "".join(f"\\{ch}" if ch in _MARKDOWN_PUNCTUATION else ch for ch in flat)


def _open(mode: str, conv_id: str) -> None:
    st.session_state.pop(f"{mode}_missing", None)
    st.query_params["c"] = conv_id


def _rename(mode: str, conv_id: str) -> None:
    ready = _ready()
    if ready is None:
        return
    found, user = ready
    title = st.session_state.get(f"{mode}_hist_title_{conv_id}", "")
    try:
        found.rename(conv_id, title, user=user)
    except NotFoundError:
        st.session_state[f"{mode}_hist_notice"] = "That conversation no longer exists."
    except StoreError as exc:
        st.session_state[f"{mode}_hist_notice"] = str(exc)


def _delete(mode: str, conv_id: str) -> None:
    ready = _ready()
    if ready is None:
        return
    found, user = ready
    try:
        found.delete(conv_id, user=user)
    except NotFoundError:
        pass
    except StoreError as exc:
        st.session_state[f"{mode}_hist_notice"] = str(exc)
        return
    if current_id(mode) == conv_id:
        new_conversation(mode)


def history_sidebar(mode: str) -> None:
    """The History panel: where it is stored, new conversation, title search, and the list (newest first)."""
    state = st.session_state
    with st.sidebar.expander("History", expanded=True):
        allowed, user, why = user_scope()
        if not allowed:
            st.warning(why)
            return
        st.button("New conversation", icon=":material/add:", key=f"{mode}_hist_new", on_click=new_conversation, args=(mode,),
                  width="stretch")
        missing = state.get(f"{mode}_missing")
        if missing and st.query_params.get("c") == missing:
            st.error(f"Conversation `{missing}` was not found (deleted, mistyped, or not yours).")
        ready = _ready()
        if ready is None:
            st.warning(problem() or "History is off.")
            return
        found, _ = ready
        st.caption(f"Stored in {found.where}" + (f" · user `{user}`" if user else ""))
        if state.get(f"{mode}_hist_notice"):
            st.warning(state.pop(f"{mode}_hist_notice"))
        search = st.text_input("Search titles", key=f"{mode}_hist_search", placeholder="Search titles")
        try:
            items = found.list(mode, user=user, search=search, limit=LIST_LIMIT)
        except StoreError as exc:
            _fail(str(exc))
            st.warning(problem())
            return
        if not items:
            st.caption("No matching conversations." if search.strip() else "No saved conversations yet.")
        current = current_id(mode)
        for info in items:
            c1, c2 = st.columns([5, 1], vertical_alignment="center")
            label = literal(info.title) or "(untitled)"  # a title is the user's words: never Markdown
            c1.button(label, key=f"{mode}_hist_open_{info.id}", on_click=_open, args=(mode, info.id),
                      type="primary" if info.id == current else "secondary", width="stretch",
                      help=f"{info.updated_at:%Y-%m-%d %H:%M} UTC · {info.model or 'model ?'}")
            with c2.popover("⋯"):
                st.text_input("Title", info.title, key=f"{mode}_hist_title_{info.id}")
                st.button("Rename", key=f"{mode}_hist_rename_{info.id}", on_click=_rename, args=(mode, info.id))
                st.button("Delete", icon=":material/delete:", key=f"{mode}_hist_delete_{info.id}", on_click=_delete, args=(mode, info.id))
