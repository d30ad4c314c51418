"""What the three pages share: the cached model, sidebars, history rendering and the event renderer.

UI layer only: everything here reads widgets, calls the `composite` library and renders its events.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import streamlit as st

from composite import events as ev
from composite.agent import Agent, Decision, pending_call, pending_calls
from composite.errors import CompositeError
from composite.messages import Message, SamplingParams
from composite.prompts import system_prompt
from composite.backends.local import load_model, resolve_model_path
from pages import _app, _history

STREAM_INTERVAL = 0.05  # seconds between placeholder updates while streaming


# -- the model: one per process, shared by every page and session -----------------------------------
@st.cache_resource(show_spinner=False, max_entries=1)
def _cached_runtime(path: str | None, device: str, dtype: str, quantize: int | None, engine: str = "auto"):
    return load_model(path, device=device, dtype=dtype, quantize=quantize, engine=engine)


def model_sidebar():
    """The model: the local runtime (path, precision) or an OpenAI-compatible server (URL, model, key, test
    connection); returns the backend or None."""
    state = st.session_state
    state.setdefault("model_path", resolve_model_path(None) or "")
    state.setdefault("model_backend", "openai" if os.environ.get("COMPOSITE_BACKEND", "").lower() == "openai"
                     else "local")
    state.setdefault("openai_base_url", os.environ.get("OPENAI_BASE_URL", ""))
    state.setdefault("openai_model", os.environ.get("COMPOSITE_MODEL", ""))
    state.setdefault("openai_api_key", os.environ.get("OPENAI_API_KEY", ""))
    with st.sidebar.expander("Model", expanded=False):
        st.radio("Backend", ["local", "openai"], key="model_backend", horizontal=True,
                 format_func=lambda b: "this process" if b == "local" else "OpenAI-compatible server",
                 help="Also set by COMPOSITE_BACKEND (local or openai).")
        if state.model_backend == "openai":
            return _openai_sidebar(state)
        st.text_input("Model path (empty: embedded model)", key="model_path", help="Also set by MODEL_PATH.")
        st.selectbox("Device", ["auto", "cuda", "mps", "cpu"], key="model_device")
        st.selectbox("Precision", ["auto", "float16", "bfloat16", "float32"], key="model_dtype")
        st.selectbox("Quantize (CUDA)", [None, 4, 8], key="model_quantize", format_func=lambda q: q and f"{q}-bit" or "off")
        engines = ["auto", "torch", "numpy"]
        wanted = os.environ.get("COMPOSITE_ENGINE", "").strip().lower()
        state.setdefault("model_engine", wanted if wanted in engines else "auto")
        st.selectbox("Engine", engines, key="model_engine",
                     help="auto: a small GLM such as the embedded model runs in NumPy (no torch import); "
                          "torch: always transformers. Also set by COMPOSITE_ENGINE.")
    path = state.model_path.strip() or None
    try:
        with st.spinner(f"Loading {path or 'the embedded model'}…"):
            runtime = _cached_runtime(path, state.model_device, state.model_dtype, state.model_quantize,
                                      state.get("model_engine", "auto"))
    except CompositeError as exc:
        st.error(f"Model not loaded: {exc}")
        return None
    info = runtime.info
    st.sidebar.caption(
        f"**{info.name}** · {info.parameters / 1e6:,.1f} M params · {info.device} {info.dtype}"
        f"{f' · {info.quantize}-bit' if info.quantize else ''}{' · NumPy engine' if info.engine == 'numpy' else ''}"
        f" · context {info.context_length} · "
        f"dialect `{info.dialect}`"
    )
    return runtime


def _openai_sidebar(state):
    """Server URL, model name and key; "Test connection" lists the server's models."""
    from composite.backends.openai import OpenAIBackend

    st.text_input("Server URL", key="openai_base_url", placeholder="http://127.0.0.1:8000/v1",
                  help="Also set by OPENAI_BASE_URL (vLLM, SGLang, transformers serve, python -m composite serve).")
    st.text_input("Model name", key="openai_model", help="Also set by COMPOSITE_MODEL; Test connection lists them.")
    st.text_input("API key", key="openai_api_key", type="password", help="Also set by OPENAI_API_KEY.")
    try:
        backend = OpenAIBackend(state.openai_base_url, state.openai_model or "-", state.openai_api_key or None)
    except CompositeError as exc:
        st.error(f"Server not set: {exc}")
        return None
    if st.button("Test connection", key="openai_test", icon=":material/lan:"):
        try:
            models = backend.list_models()
        except CompositeError as exc:
            st.error(str(exc))
        else:
            st.success(f"Connected: {len(models)} model(s): {', '.join(models) or 'none'}")
            if models and not state.openai_model:
                st.caption("Copy one of these names into Model name.")
    if not state.openai_model.strip():
        st.warning("Enter the server's model name (Test connection lists them).")
        return None
    st.sidebar.caption(f"**{backend.info.name}** · OpenAI-compatible server {backend.info.path}")
    return backend


def sampling_sidebar(mode: str, context_length: int = 8192) -> SamplingParams:
    """Sampling controls, keyed per mode so moving one never touches a history."""
    with st.sidebar.expander("Sampling", expanded=True):
        top_p = st.slider("top_p", 0.01, 1.0, 0.8, 0.01, key=f"{mode}_top_p")
        temperature = st.slider("temperature (0 = greedy)", 0.0, 2.0, 0.8 if mode == "chat" else 0.2, 0.05,
                                key=f"{mode}_temperature")
        repetition = st.slider("repetition_penalty", 0.5, 2.0, 1.0, 0.05, key=f"{mode}_repetition")
        max_length = st.number_input("max_length (prompt + answer)", 64, max(64, context_length),
                                     min(8192, context_length), 64, key=f"{mode}_max_length")
        max_new = st.number_input("max_new_tokens", 1, 32768, 512, 16, key=f"{mode}_max_new")
        seed = st.number_input("seed (-1 = random)", -1, 2**31 - 1, -1, 1, key=f"{mode}_seed")
    return SamplingParams(
        max_new_tokens=int(max_new),
        max_length=int(max_length),
        temperature=float(temperature),
        top_p=float(top_p),
        repetition_penalty=float(repetition),
        seed=None if seed < 0 else int(seed),
    )


# -- per-mode, per-session history -----------------------------------------------------------------
def history(mode: str) -> list[Message]:
    """This session's history for a mode; index 0 is the (editable) system message."""
    key = f"{mode}_history"
    _history.bind(mode)  # ?c=<id> in the URL reopens a stored conversation
    if key not in st.session_state:
        st.session_state[key] = [Message("system", system_prompt(mode))]
    return st.session_state[key]


def system_sidebar(mode: str) -> None:
    msgs = history(mode)
    with st.sidebar.expander("System prompt", expanded=False):
        text = st.text_area("System prompt", msgs[0].content, key=f"{mode}_system", height=120)
        if st.button("Reset to default", key=f"{mode}_system_reset"):
            text = system_prompt(mode)
            st.session_state.pop(f"{mode}_system", None)
    if text != msgs[0].content:
        msgs[0] = Message("system", text)


def _to_markdown(msgs: list[Message]) -> str:
    parts = []
    for m in msgs:
        label = m.role + (f" ({m.metadata})" if m.metadata else "")
        parts.append(f"### {label}\n\n{m.content}\n")
    return "\n".join(parts)


def conversation_sidebar(mode: str) -> Any:
    """Clear, retry and import of this mode's conversation; returns the sidebar slot for export_buttons()."""
    msgs = history(mode)
    col1, col2 = st.sidebar.columns(2)
    if col1.button("Clear", icon=":material/delete_sweep:", key=f"{mode}_clear", use_container_width=True):
        del msgs[1:]
        _history.detach(mode)  # the stored conversation stays in the History list
        st.session_state.pop(f"{mode}_partial", None)
        st.session_state.pop(f"{mode}_decision", None)
    if col2.button("Retry", icon=":material/refresh:", key=f"{mode}_retry", use_container_width=True, help="Regenerate the last answer"):
        last_user = max((i for i, m in enumerate(msgs) if m.role == "user"), default=None)
        if last_user is not None:
            del msgs[last_user + 1 :]
            st.session_state[f"{mode}_run"] = True
    exports = st.sidebar.container()  # filled by export_buttons() at the end of the run
    upload = st.sidebar.file_uploader("Import a JSON conversation", type=["json"], key=f"{mode}_import")
    if upload is not None and st.session_state.get(f"{mode}_imported") != upload.file_id:
        st.session_state[f"{mode}_imported"] = upload.file_id
        try:
            imported = import_conversation(upload.getvalue())
        except CompositeError as exc:
            st.sidebar.error(f"Import failed: {exc}")
        else:
            if imported[0].role != "system":
                imported.insert(0, msgs[0])
            msgs[:] = imported
            _history.detach(mode)
            _history.save(mode)  # an imported conversation is stored as a new one
            st.sidebar.success(f"Imported {len(imported)} messages.")
    return exports


def export_buttons(mode: str, slot: Any) -> None:
    """Export JSON / Markdown, drawn at the end of the run into conversation_sidebar()'s slot, so an answer
    streamed in this run is included. The data is handed to Streamlit as it is, not as a callable: the file a
    callable makes on click belongs to no session, and any session's run ending (twice) deletes it, so with
    several people on the app the browser's fetch could find it gone (a 404, no download). A click starts no
    run (on_click="ignore"): a run of this session drops the page's references to its files until it draws
    them again, and two other sessions' runs ending meanwhile delete them (the soak's canceled download)."""
    msgs = history(mode)
    with slot:
        st.download_button("Export JSON", json.dumps([m.to_dict() for m in msgs], ensure_ascii=False, indent=2),
                           f"{mode}-conversation.json", "application/json", key=f"{mode}_export_json",
                           icon=":material/download:", on_click="ignore", use_container_width=True)
        st.download_button("Export Markdown", _to_markdown(msgs), f"{mode}-conversation.md", "text/markdown",
                           key=f"{mode}_export_md", icon=":material/download:", on_click="ignore",
                           use_container_width=True)


def import_conversation(raw: bytes) -> list[Message]:
    """Parse an exported conversation; a clear error for anything else."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CompositeError(f"not a JSON file ({exc}); expected a list of messages") from exc
    if isinstance(data, dict) and isinstance(data.get("messages"), list):
        data = data["messages"]
    if not isinstance(data, list) or not data:
        raise CompositeError("expected a non-empty JSON list of {role, content, metadata} messages")
    return [Message.from_dict(item) for item in data]


# -- rendering ---------------------------------------------------------------------------------------
_IMAGE_LIMIT = 20 * 2**20  # bytes of one image read back from a sandbox workdir
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()<>#+!|~$:])")
_LINE_START = re.compile(r"^(\s*\d*)([-=.)])")


def plain_markdown(text: str) -> str:
    """Text that Streamlit's Markdown (labels, st.error, st.caption) shows as it is: every character Markdown or
    Streamlit's directives give a meaning is backslash-escaped, and line breaks stay line breaks. Kernel output,
    kernel-made file names and model-made tool names go through it: otherwise `![x](http:/host/?data)` printed by
    the sandboxed code is an image the user's browser fetches, a channel out of the network-less sandbox, and
    `print(9**9**9)` in a traceback shows as print(999)."""
    lines = []
    for line in text.expandtabs(4).splitlines() or [""]:
        line = _MARKDOWN_PUNCTUATION.sub(r"\\\1", line)
        line = _LINE_START.sub(r"\1\\\2", line)  # a list item, a numbered item or a heading underline
        indent = len(line) - len(line.lstrip(" "))
        lines.append("\u00a0" * indent + line[indent:])  # indentation kept, and never a code block
    return "  \n".join(lines)


_CODE_REGIONS = re.compile(r"(```.*?(?:```|$)|~~~.*?(?:~~~|$)|`[^`\n]*`)", re.S)


def no_images(text: str) -> str:
    """The model's Markdown without images: `![` becomes `!\\[` outside code, so neither an inline nor a reference
    image is made (its text stays readable). A model led by a tool's or the kernel's output to write
    `![x](https://host/?data)` would otherwise have the user's browser fetch that address as it renders."""
    parts = _CODE_REGIONS.split(text)
    return "".join(part if i % 2 else part.replace("![", "!\\[") for i, part in enumerate(parts))


def _workdir_images(message: Message, workdir: Path | None) -> list[tuple[str, bytes | None]]:
    """The observation's plots, read through the sandbox's one safe reader (relative to the
    workdir, no link followed, regular files only, capped); None for one that cannot be read."""
    if workdir is None:
        return []
    from composite.sandbox.files import read_workdir_file

    found: list[tuple[str, bytes | None]] = []
    for name in list(message.extra.get("images") or [])[:50]:
        try:
            found.append((str(name), read_workdir_file(workdir, str(name), _IMAGE_LIMIT)))
        except CompositeError:
            found.append((str(name), None))
    return found


def show_image(data: bytes | None, caption: str | None = None) -> None:
    """Render image bytes (PNG, JPEG, GIF or SVG), never a path; anything else becomes a short note,
    so no file the sandboxed code writes can break the page or reach it as text."""
    # a caption is Markdown too: a name the code (or an imported conversation) chose is shown escaped
    label = plain_markdown("".join(ch if ch.isprintable() else "?" for ch in str(caption or "image"))[:120])
    payload: bytes | str | None = None
    if data and (data[:8] == b"\x89PNG\r\n\x1a\n" or data[:3] == b"\xff\xd8\xff" or data[:6] in (b"GIF87a", b"GIF89a")):
        payload = data
    elif data and b"<svg" in data[:4096]:
        payload = data.decode("utf-8", "replace")  # st.image takes SVG as markup
    if payload is None:
        st.caption(f"{label}: not shown (missing, not a regular file, or not a PNG/JPEG/GIF/SVG image)")
        return
    try:
        st.image(payload, caption=label)
    except Exception:  # deliberately broad: a malformed image (PIL raises many kinds) costs its picture, not the page
        st.caption(f"{label}: not shown (the image could not be decoded)")


def render_call(message: Message) -> None:
    if message.metadata == "interpreter":
        with st.status(":material/terminal: Code", state="complete", expanded=True):
            code = (message.extra.get("arguments") or {}).get("code")  # parsed once, by the dialect
            if code is None:
                st.markdown(no_images(message.content))
            else:
                st.code(code, language="python")
            if message.extra.get("edited"):
                st.caption(":material/edit: edited by you before it ran")
    else:
        label = f":material/build: {plain_markdown(message.metadata)}"
        args = message.extra.get("arguments")
        with st.status(label, state="error" if message.extra.get("call_error") else "complete", expanded=False):
            if args is not None:  # parsed once, by the dialect; the raw call text is shown as it was written
                st.json(args)
            if message.extra.get("call_error"):
                st.error(message.extra["call_error"])
            st.code(message.content)


def render_observation(message: Message, workdir: Path | None = None) -> None:
    extra = message.extra
    failed = bool(extra.get("error")) or extra.get("status") not in (None, "ok") or message.content.startswith("Error")
    preview = plain_markdown(message.content.strip().splitlines()[0][:80]) if message.content.strip() else "(no output)"
    label = "Observation" + (f" · {extra['duration']:.2f} s" if "duration" in extra else "") + f" · {preview}"
    if extra.get("manual"):
        label += " · typed by you"
    shows_images = bool(extra.get("images") or extra.get("image_data"))  # a plot is the answer: keep it in view
    with st.status(label, state="error" if failed else "complete", expanded=failed or shows_images):
        if extra.get("note"):
            st.warning(extra["note"])
        body = st.container(height=300) if len(message.content) > 1500 else st.container()
        if failed:
            body.error(plain_markdown(message.content))
        else:
            body.code(message.content)
        for name, data in _workdir_images(message, workdir):
            show_image(data, name)
        for index, image in enumerate(extra.get("image_data") or []):  # images a tool (an MCP server) returned
            import base64

            st.image(base64.b64decode(image["data"]), caption=f"image {index + 1} ({image['mime_type']})")


def show_user_message(text: str) -> None:
    """The user's words as they typed them: plain text, never Markdown or HTML (`9**9**9` stays `9**9**9`)."""
    st.chat_message("user").text(text)


def render_history(msgs: list[Message], workdir: Path | None = None) -> None:
    for message in msgs[1:]:
        if message.role == "user":
            show_user_message(message.content)
        elif message.role == "assistant":
            with st.chat_message("assistant"):
                if message.metadata:
                    render_call(message)
                else:
                    st.markdown(no_images(message.content) + (" *(stopped)*" if message.extra.get("stopped") else ""))
        elif message.role == "observation":
            with st.chat_message("assistant", avatar=":material/attach_file:"):
                render_observation(message, workdir)


RUN_WAIT = 30.0  # seconds a run waits for the session's previous run of the mode to finish recording


def run_lock(mode: str) -> threading.Lock:
    """Held while this session's agent runs in a mode, until what it produced is recorded."""
    return st.session_state.setdefault(f"{mode}_run_lock", threading.Lock())


def wait_for_previous_run(mode: str) -> None:
    """A button pressed mid-run (Interrupt, a sidebar widget) makes Streamlit stop that run and start this one at
    once, beside it (runner.fastReruns), while the stopped run still records what it had: an interrupted run's
    observation, a stopped answer. Wait for it (bounded), so this run shows the conversation as it is."""
    lock = run_lock(mode)
    if lock.acquire(blocking=False):
        lock.release()
        return
    with st.spinner("Finishing the interrupted run…"):
        if lock.acquire(timeout=RUN_WAIT):
            lock.release()


def recover_partial(mode: str) -> None:
    """A stop ends the script mid-stream: keep what was streamed as a (stopped) answer."""
    wait_for_previous_run(mode)
    partial = st.session_state.pop(f"{mode}_partial", None)
    msgs = history(mode)
    if partial and partial.get("length") == len(msgs):
        from composite.dialects import stopped_answer

        content = stopped_answer(partial["text"], partial.get("dialect", ""))
        if content:
            msgs.append(Message("assistant", content, extra={"stopped": True}))
    _history.save(mode)  # the stopped answer, and any sidebar change (system prompt, retry, clear)


class _LiveView:
    """The assistant bubble being drawn; a new one starts after each observation, lazily."""

    def __init__(self) -> None:
        self._bubble = None
        self._placeholder = None
        self._running: list = []  # the "running …" lines of calls not yet answered

    def running(self, what: str) -> None:
        """Say that a call runs, until its observation arrives (or the run ends)."""
        slot = self.bubble.empty()
        slot.caption(f"running {what}…")
        self._running.append(slot)

    def done_running(self) -> None:
        for slot in self._running:
            slot.empty()
        self._running.clear()

    @property
    def bubble(self):
        if self._bubble is None:
            self._bubble = st.chat_message("assistant")
            self._placeholder = self._bubble.empty()
        return self._bubble

    def draw(self, text: str) -> None:
        _ = self.bubble
        self._placeholder.markdown(no_images(_streaming_view(text)) + "▌")

    def clear(self) -> None:
        if self._placeholder is not None:
            self._placeholder.empty()

    def observation(self, message: Message, workdir: Path | None) -> None:
        self.done_running()
        with st.chat_message("assistant", avatar=":material/attach_file:"):
            render_observation(message, workdir)
        self._bubble = None


class _LiveOutput:
    """What running code has printed and displayed so far, redrawn as each output arrives."""

    MAX_CHARS = 5000  # the tail shown while running; the observation has the whole (capped) result

    def __init__(self, bubble) -> None:
        self._slot = bubble.empty()
        self._text = ""
        self._images: list = []
        self._seconds = 0.0

    def update(self, event) -> None:
        if isinstance(event, ev.CodeRunning):
            self._seconds = event.seconds
        elif event.output.kind == "image":
            self._images.append(event.output)
        else:
            self._text += event.output.text if event.output.text.endswith("\n") or event.output.kind in (
                "stdout", "stderr") else event.output.text + "\n"
        with self._slot.container():
            st.caption(f"running code… {self._seconds:.0f} s" if self._seconds >= 1 else "running code…")
            if self._text:
                st.code(self._text[-self.MAX_CHARS:], language="text")
            for image in self._images:
                show_image(image.data, image.filename or None)

    def clear(self) -> None:
        self._slot.empty()


def code_approval_controls(mode: str) -> None:
    """Ask before running: the model's code in an editable box with Run, Run edited and Reject."""
    call = pending_call(history(mode))
    if call is None or call.kind != "code" or st.session_state.get(f"{mode}_decision") is not None:
        return
    with st.chat_message("assistant", avatar=":material/front_hand:"):
        st.markdown("The model wants to run this code. Run it as written, edit it first, or reject it?")
        import hashlib

        digest = hashlib.sha256(call.code.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        box = f"{mode}_edit_code_{digest}"
        edited = st.text_area("Code to run (editable)", call.code, height=200, key=box)
        c1, c2, c3 = st.columns(3)
        choice = None
        if c1.button("Run", icon=":material/play_arrow:", key=f"{mode}_approve_run"):
            choice = Decision("run")
        if c2.button("Run edited", icon=":material/edit:", key=f"{mode}_approve_edited", disabled=not edited.strip()):
            choice = Decision("edit", code=edited)
        if c3.button("Reject", icon=":material/close:", key=f"{mode}_reject_code"):
            choice = Decision("reject")
        if choice is not None:
            st.session_state[f"{mode}_decision"] = choice
            st.session_state.pop(box, None)  # the same code proposed later starts from the model's version
            st.rerun()


def run_agent(mode: str, agent: Agent, params: SamplingParams, decision: Decision | None = None,
              workdir: Path | None = None) -> None:
    """Consume the agent's events and render them live; saves the streamed text for a stop."""
    msgs = history(mode)
    state = st.session_state
    stop = threading.Event()
    dialect_name = getattr(getattr(agent.backend, "info", None), "dialect", "")
    stream = agent.run(msgs, params, stop, decision)
    scope = _conversation_scope(mode, agent.backend)
    view = _LiveView()
    text, last_draw = "", 0.0
    live: _LiveOutput | None = None
    lock = run_lock(mode)
    locked = lock.acquire(timeout=RUN_WAIT)  # released once everything this run produced is in the history
    try:
        for event in stream:
            if isinstance(event, ev.TextDelta):
                text += event.text
                state[f"{mode}_partial"] = {"text": text, "length": len(msgs), "dialect": dialect_name}
                if time.monotonic() - last_draw > STREAM_INTERVAL:
                    view.draw(text)
                    last_draw = time.monotonic()
            elif isinstance(event, ev.TurnEnd):
                state.pop(f"{mode}_partial", None)
                view.clear()
                text = ""
            elif isinstance(event, ev.AssistantMessage):
                with view.bubble:
                    if event.message.metadata:
                        render_call(event.message)
                    else:
                        st.markdown(event.message.content)
                _history.save(mode, agent, params)  # committed as each message completes
            elif isinstance(event, ev.ToolCall):
                view.running("code" if event.kind == "code" else event.name)
            elif isinstance(event, (ev.OutputDelta, ev.CodeRunning)):
                live = live or _LiveOutput(view.bubble)
                live.update(event)
            elif isinstance(event, ev.Observation):
                if live is not None:
                    live.clear()  # the observation below shows the whole result
                    live = None
                view.observation(event.message, workdir)
                _history.save(mode, agent, params)
            elif isinstance(event, ev.ApprovalNeeded):
                st.rerun()  # the page shows the approval controls for the pending call
            elif isinstance(event, (ev.Waiting, ev.ContextTrimmed)):
                view.bubble.info(event.message)
            elif isinstance(event, ev.Notice):
                (view.bubble.warning if event.level == "warning" else view.bubble.info)(event.message)
            elif isinstance(event, ev.Failure):
                view.bubble.error(event.message)
        view.done_running()  # nothing runs any more (a call left without an observation included)
    except CompositeError as exc:
        st.error(f"Generation failed: {exc}")
    finally:
        stop.set()
        try:
            stream.close()  # an interrupted code run records its observation here
            scope.close()
            _history.save(mode, agent, params)
        finally:
            if locked:
                lock.release()


class _Conversations:
    """This session's prefix-cache keys (one per mode); their KV caches are dropped when the session ends."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex
        self.backends: dict[str, object] = {}

    def release(self) -> None:
        for key, backend in self.backends.items():
            cache = getattr(backend, "prefix_cache", None)
            if cache is not None:
                cache.drop(key)


@st.cache_resource(scope="session", show_spinner=False, on_release=lambda owner: owner.release())
def _session_conversations() -> _Conversations:
    return _Conversations()


def _conversation_scope(mode: str, backend) -> contextlib.ExitStack:
    """Generation for this session and mode reuses only its own KV cache (composite/backends/prefix_cache.py)."""
    from composite.backends.prefix_cache import conversation

    owner = _session_conversations()
    key = f"{owner.id}:{mode}"
    owner.backends[key] = backend
    scope = contextlib.ExitStack()
    scope.enter_context(conversation(key))
    return scope


def _streaming_view(text: str) -> str:
    """Raw turn text while streaming: hide ChatGLM3's empty metadata line, show calls as code."""
    if text.startswith("\n"):
        return text.lstrip("\n")
    head, _, rest = text.partition("\n")
    return f"`{head}`\n\n{rest}" if rest else text


def approval_controls(mode: str, manual: bool) -> None:
    """Approve / Reject (or type the observation in manual mode) for the pending call."""
    msgs = history(mode)
    calls = pending_calls(msgs)
    if not calls or st.session_state.get(f"{mode}_decision") is not None:  # decided: it runs in this rerun
        return
    names = ", ".join(f"`{call.metadata}`" for call in calls)
    with st.chat_message("assistant", avatar=":material/front_hand:"):
        if manual:
            st.markdown(f"**Manual mode:** type the result of {names} for the model.")
            with st.form(f"{mode}_manual_form", clear_on_submit=True):
                texts = [st.text_area(f"Observation for {call.metadata}" if len(calls) > 1 else "Observation",
                                      key=f"{mode}_manual_text" + (f"_{index}" if index else ""))
                         for index, call in enumerate(calls)]
                if st.form_submit_button("Send observation") and all(text.strip() for text in texts):
                    st.session_state[f"{mode}_decision"] = Decision("observe", texts[0], texts=texts)
                    st.rerun()
        else:
            st.markdown(f"The model wants to run {names.replace('`', '**')}. Run {'them' if len(calls) > 1 else 'it'}?")
            c1, c2 = st.columns(2)
            if c1.button("Approve", icon=":material/check:", key=f"{mode}_approve"):
                st.session_state[f"{mode}_decision"] = Decision("run")
                st.rerun()
            if c2.button("Reject", icon=":material/close:", key=f"{mode}_reject"):
                st.session_state[f"{mode}_decision"] = Decision("reject")
                st.rerun()


def page_header(mode: str) -> None:
    _app.ensure_app_navigation()
    st.title(_app.title(mode))


# Clickable examples shown while a conversation is empty: what the built-in model can do in each mode.
STARTERS = {
    "chat": ["Who are you?", "What can you do?", "你好，你能做什么？"],
    "tool": ["What's the weather in Berlin?", "What time is it in Tokyo?", "What is 23 * 19?", "上海现在几点？"],
    "code": ["Plot sin(x) from 0 to 10.", "What is the median of 3, 9, 4, 7, 1?", "Reverse the string 'starter'",
             "Compute 1234+4321 with Python."],
}


_starters = threading.local()  # this script run's row of starter prompts, removed when the conversation starts


def starter_prompts(mode: str, history: list) -> None:
    """A row of example prompts while the conversation is empty; a click sends it like a typed message."""
    _starters.slot = None
    if len(history) > 1 or st.session_state.get(f"{mode}_starter"):  # index 0 is the system message
        return
    examples = STARTERS.get(mode, [])
    if not examples:
        return
    _starters.slot = st.empty()  # hide_starters() clears it when the first message is sent in this run
    with _starters.slot.container():
        for index, (column, example) in enumerate(zip(st.columns(len(examples)), examples)):
            if column.button(example, key=f"{mode}_starter_{index}", icon=":material/lightbulb:",
                             use_container_width=True):
                st.session_state[f"{mode}_starter"] = example
                st.rerun()


def hide_starters() -> None:
    """The conversation starts in this run: remove the starter prompts drawn above it."""
    slot = getattr(_starters, "slot", None)
    _starters.slot = None
    if slot is not None:
        slot.empty()


def user_input(mode: str, placeholder: str) -> str | None:
    """The chat box (its button turns into stop while an answer streams), or a clicked starter prompt.
    Empty prompts are ignored."""
    prompt = st.chat_input(placeholder, key=f"{mode}_input", submit_mode="stop")
    starter = st.session_state.pop(f"{mode}_starter", None)
    if (prompt is None or not str(prompt).strip()) and starter:
        return str(starter)
    if prompt is None or not str(prompt).strip():
        return None
    return str(prompt)


def start_turn(mode: str, runtime, prompt: str | None, wanted: bool) -> bool:
    """Append and show the user's message; True when the agent should run now.

    Without a model, a typed message is not lost silently: the page says why it was not sent."""
    if runtime is None:
        if prompt:
            st.warning("No model is loaded: fix the model path in the sidebar (your message was not sent).")
        return False
    if not (prompt or wanted):
        return False
    if prompt:
        _app.hide_welcome()
        hide_starters()
        prompt = _history.note_for_model(mode, prompt)  # a reopened code conversation: variables were lost
        history(mode).append(Message("user", prompt))
        show_user_message(prompt)
        _history.save(mode)
    return True


def pending_run(mode: str) -> tuple[bool, Decision | None]:
    """Whether a retry or an approval decision asks for a run now."""
    decision = st.session_state.pop(f"{mode}_decision", None)
    retry = st.session_state.pop(f"{mode}_run", False)
    return (retry or decision is not None), decision


def env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")
