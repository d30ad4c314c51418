"""Code Interpreter mode: the model writes Python that runs in this session's sandboxed Jupyter kernel."""

import uuid

import streamlit as st

from composite.agent import Agent
from composite.errors import SandboxError
from composite.prompts import with_uploads
from pages import _app, _history
from pages import _shared as ui

MODE = "code"


@st.cache_resource(show_spinner=False, max_entries=1, on_release=lambda manager: manager.shutdown_all())
def sandbox_manager(memory_gib: float, cpu_seconds: int, gateway_url: str = "", gateway_token: str = ""):
    """One manager per process: per-session kernels (local, or remote on a kernel gateway), idle culling,
    shutdown at exit.

    New limits or another gateway replace the manager, which restarts the kernels (variables are lost, files too)."""
    from composite.sandbox import SandboxConfig, SandboxManager

    config = SandboxConfig.from_env(memory_bytes=int(memory_gib * 2**30), cpu_seconds=cpu_seconds)
    return SandboxManager(config, gateway=(gateway_url, gateway_token) if gateway_url else None)


def gateway_settings() -> tuple[str, str]:
    """The kernel gateway URL and token (sidebar, defaulting to COMPOSITE_KERNEL_GATEWAY /
    COMPOSITE_GATEWAY_TOKEN); an invalid URL is reported and the local sandbox is used."""
    from composite.errors import ConfigError
    from composite.sandbox.gateway import check_url, gateway_from_env

    env_url, env_token = gateway_from_env()
    st.session_state.setdefault("code_gateway_url", env_url)
    st.session_state.setdefault("code_gateway_token", env_token)
    url = st.text_input("Kernel gateway URL (empty: local sandbox)", key="code_gateway_url",
                        help="A Jupyter Kernel or Enterprise Gateway, e.g. http://gateway:8888: each session "
                             "gets its own remote kernel there. Also set by COMPOSITE_KERNEL_GATEWAY.")
    token = st.text_input("Gateway token", key="code_gateway_token", type="password",
                          help="Also set by COMPOSITE_GATEWAY_TOKEN.")
    if not url.strip():
        return "", ""
    try:
        return check_url(url), token.strip()
    except ConfigError as exc:
        st.error(f"{exc}; using the local sandbox")
        return "", ""


class _SessionKernel:
    """This browser session's key into the manager; released (kernel shut down) when the session ends."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex
        self.managers: set = set()

    def release(self) -> None:
        for manager in self.managers:
            manager.close(self.id)


@st.cache_resource(scope="session", show_spinner=False, on_release=lambda handle: handle.release())
def session_kernel() -> _SessionKernel:
    return _SessionKernel()


@st.cache_resource(show_spinner=False)
def env_defaults():
    """The sandbox defaults after COMPOSITE_SANDBOX_* environment overrides; the sidebar starts from them."""
    from composite.sandbox import SandboxConfig

    return SandboxConfig.from_env()


DOWNLOAD_LIMIT = 100 * 2**20  # bytes one download button may read
# Files up to this many bytes in all are read while rendering and handed to Streamlit as data; larger ones are
# read on click (a callable). A callable's file belongs to no session and can be deleted by other sessions' runs
# before the browser fetches it (see _shared.export_buttons), so the small files people mostly download avoid it.
EAGER_BYTES = 4 * 2**20


def _file_downloads(executor) -> None:
    """One download button per workdir file, keyed by its relative path; the bytes are read through the
    executor's safe reader (no links, capped): now for small files (EAGER_BYTES in all), on click for the rest."""
    import functools
    import hashlib

    from composite.errors import SandboxError

    try:
        files = executor.list_files()
    except SandboxError as exc:
        st.caption(f"Files: {exc}")
        return
    if not files:
        return
    st.caption("Files in the working directory")
    budget = EAGER_BYTES
    for item in files:
        too_big = item.size > DOWNLOAD_LIMIT
        data = functools.partial(executor.read_file, item.path, DOWNLOAD_LIMIT)
        if not too_big and item.size <= budget:  # small: handed over now (see EAGER_BYTES)
            try:
                data = executor.read_file(item.path, DOWNLOAD_LIMIT)
                budget -= len(data)
            except SandboxError:
                pass  # read on click instead, where the error is shown
        # a key from the path's hash: every kernel-made name (duplicates in other folders, any
        # character) gives a distinct, valid key
        digest = hashlib.sha256(item.path.encode("utf-8", "surrogateescape")).hexdigest()[:20]
        st.download_button(
            f"{ui.plain_markdown(_shown(item.path))} ({_size(item.size)})",
            data,
            _shown(item.name, 200),
            key=f"code_dl_{digest}", icon=":material/download:",
            disabled=too_big,
            help=f"larger than the {_size(DOWNLOAD_LIMIT)} download limit" if too_big else None,
            on_click="ignore",
            use_container_width=True,
        )


def _size(n: float) -> str:
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            break
    return f"{n:.1f} {unit}"


def _shown(name: str, limit: int = 120) -> str:
    """A kernel-made name made safe to show: undecodable bytes and control characters replaced, capped."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


ui.page_header(MODE)
runtime = ui.model_sidebar()
params = ui.sampling_sidebar(MODE, runtime.info.context_length if runtime else 8192)
defaults = env_defaults()
with st.sidebar.expander("Sandbox", expanded=True):
    timeout = st.number_input("execution timeout (s)", 1.0, 3600.0, float(defaults.timeout), 1.0, key="code_timeout")
    memory = st.number_input("memory limit (GiB)", 0.25, 256.0, max(0.25, defaults.memory_bytes / 2**30), 0.25,
                             key="code_memory")
    cpu = st.number_input("CPU time limit per kernel (s)", 10, 10**6, int(defaults.cpu_seconds), 10, key="code_cpu")
    max_rounds = st.number_input("max code rounds per question", 1, 20, 5, key="code_max_rounds")
    ask = st.toggle("Ask before running", False, key="code_ask",
                    help="Show the model's code in an editable box and run it only when you say so.")
    st.caption("Asking before each run: **on**" if ask else "Asking before each run: off (code runs at once)")
    gateway_url, gateway_token = gateway_settings()

handle = session_kernel()
manager = sandbox_manager(float(memory), int(cpu), gateway_url, gateway_token)
handle.managers.add(manager)
# pre-started in the background; a reopened conversation gets a fresh kernel with its files restored
sandbox = _history.code_sandbox(manager, handle.id)

with st.sidebar:
    (st.success if sandbox.isolation == "full" else st.warning)(
        "sandbox: full (no network, read-only host, limits)" if sandbox.isolation == "full" else sandbox.isolation_note
    )
    c1, c2 = st.columns(2)
    if getattr(sandbox, "start_error", None) is not None:  # a gateway kernel that could not start
        st.error(f"Kernel not started: {sandbox.start_error}. It is tried again at the next run.")
    try:
        if c1.button("Interrupt", icon=":material/stop_circle:", key="code_interrupt", use_container_width=True):
            sandbox.interrupt()
        if c2.button("Restart kernel", icon=":material/restart_alt:", key="code_restart", use_container_width=True):
            sandbox.restart()
            st.toast("Kernel restarted: variables were cleared, files kept.")
    except SandboxError as exc:
        st.error(str(exc))
    if sandbox.status().files_available:
        uploads = st.file_uploader("Upload files for the code", accept_multiple_files=True, key="code_uploads")
        seen = st.session_state.setdefault("code_uploaded_ids", {})
        for upload in uploads or []:
            if upload.file_id not in seen:
                try:
                    seen[upload.file_id] = sandbox.upload(upload.name, upload.getvalue()).name
                except SandboxError as exc:
                    st.error(f"Upload failed: {exc}")
                    continue
                st.session_state.setdefault("code_new_files", []).append(seen[upload.file_id])
        files_slot = st.container()  # filled at the end of the run: a file the code writes is listed at once
    else:
        files_slot = None
        st.info(getattr(sandbox, "files_note", "") or "file transfer is unavailable for this executor")

ui.system_sidebar(MODE)
exports = ui.conversation_sidebar(MODE)
_history.history_sidebar(MODE)
ui.recover_partial(MODE)
history = ui.history(MODE)
_app.welcome(MODE, history, runtime, sandbox_note=sandbox.isolation_note)
ui.starter_prompts(MODE, history)
ui.render_history(history, sandbox.workdir)

prompt = ui.user_input(MODE, "Ask for something to compute, analyse or plot")
if ask:
    ui.code_approval_controls(MODE)
wanted, decision = ui.pending_run(MODE)
if prompt and runtime is not None:
    new_files = st.session_state.pop("code_new_files", [])
    prompt = with_uploads(prompt, new_files)  # the names of what was uploaded since the last question
if ui.start_turn(MODE, runtime, prompt, wanted):
    agent = Agent(runtime, MODE, sandbox=sandbox, max_rounds=int(max_rounds), code_timeout=float(timeout),
                  policy="ask" if ask else "auto")
    ui.run_agent(MODE, agent, params, decision, workdir=sandbox.workdir)
if files_slot is not None:
    with files_slot:
        _file_downloads(sandbox)
ui.export_buttons(MODE, exports)
