"""Code Interpreter mode: the model writes Python that runs in this session's sandboxed Jupyter kernel."""

import uuid

import streamlit as st

from composite.agent import Agent
from pages import _shared as ui

MODE = "code"


@st.cache_resource(show_spinner=False, max_entries=1, on_release=lambda manager: manager.shutdown_all())
def sandbox_manager(memory_gib: float, cpu_seconds: int):
    """One manager per process: per-session kernels, idle culling, shutdown at exit.

    New limits replace the manager, which restarts the kernels (variables are lost, files too)."""
    from composite.sandbox import SandboxConfig, SandboxManager

    config = SandboxConfig.from_env(memory_bytes=int(memory_gib * 2**30), cpu_seconds=cpu_seconds)
    return SandboxManager(config)


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


DOWNLOAD_LIMIT = 100 * 2**20  # bytes one download button may read (on click, never while rendering)


def _file_downloads(executor) -> None:
    """One download button per workdir file, keyed by its relative path; the bytes are read only
    when the button is clicked, through the executor's safe reader (no links, capped)."""
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
    for item in files:
        too_big = item.size > DOWNLOAD_LIMIT
        # a key from the path's hash: every kernel-made name (duplicates in other folders, any
        # character) gives a distinct, valid key
        digest = hashlib.sha256(item.path.encode("utf-8", "surrogateescape")).hexdigest()[:20]
        st.download_button(
            f"⬇️ {_shown(item.path)} ({_size(item.size)})",
            functools.partial(executor.read_file, item.path, DOWNLOAD_LIMIT),
            _shown(item.name, 200),
            key=f"code_dl_{digest}",
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

handle = session_kernel()
manager = sandbox_manager(float(memory), int(cpu))
handle.managers.add(manager)
sandbox = manager.get(handle.id)  # pre-started in the background while the page renders

with st.sidebar:
    (st.success if sandbox.isolation == "full" else st.warning)(
        "sandbox: full (no network, read-only host, limits)" if sandbox.isolation == "full" else sandbox.isolation_note
    )
    c1, c2 = st.columns(2)
    if c1.button("⏹ Interrupt", key="code_interrupt", use_container_width=True):
        sandbox.interrupt()
    if c2.button("♻️ Restart kernel", key="code_restart", use_container_width=True):
        sandbox.restart()
        st.toast("Kernel restarted: variables were cleared, files kept.")
    uploads = st.file_uploader("Upload files for the code", accept_multiple_files=True, key="code_uploads")
    seen = st.session_state.setdefault("code_uploaded_ids", {})
    for upload in uploads or []:
        if upload.file_id not in seen:
            seen[upload.file_id] = sandbox.upload(upload.name, upload.getvalue()).name
            st.session_state.setdefault("code_new_files", []).append(seen[upload.file_id])
    _file_downloads(sandbox)

ui.system_sidebar(MODE)
ui.conversation_sidebar(MODE)
ui.recover_partial(MODE)
history = ui.history(MODE)
ui.render_history(history, sandbox.workdir)

prompt = ui.user_input(MODE, "Ask for something to compute, analyse or plot")
wanted, _ = ui.pending_run(MODE)
if prompt and runtime is not None:
    new_files = st.session_state.pop("code_new_files", [])
    if new_files:  # tell the model the names of what was uploaded since the last question
        prompt = f"{prompt}\n\n(Uploaded files in the working directory: {', '.join(new_files)})"
if ui.start_turn(MODE, runtime, prompt, wanted):
    agent = Agent(runtime, MODE, sandbox=sandbox, max_rounds=int(max_rounds), code_timeout=float(timeout))
    ui.run_agent(MODE, agent, params, workdir=sandbox.workdir)
