"""The local kernel: `Sandbox`, one ipykernel (jupyter_client, IPC transport) under bubblewrap
with resource limits; ordered outputs, timeouts, interrupts, restarts and death detection.
What it protects and what not: see the package docstring (composite/sandbox/__init__.py)."""

from __future__ import annotations

import atexit
import functools
import logging
import os
import re
import stat
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composite.errors import SandboxError
from composite.sandbox.base import ExecutorStatus, SandboxStartError
from composite.sandbox.config import SandboxConfig
from composite.sandbox.files import (
    MAX_READ_BYTES,
    WorkFile,
    chown_tree,
    list_workdir,
    read_workdir_file,
    remove_tree,
    safe_name,
    write_file_safely,
    write_workdir_file,
)
from composite.sandbox.cgroups import CgroupUnavailable, KernelCgroup
from composite.sandbox.cgroups import probe as cgroup_probe
from composite.sandbox.isolation import (
    FULL_NOTE,
    NO_CGROUP_NOTE,
    REDUCED_NOTE,
    accessible_to_others,
    allocate_uid,
    bootstrap_argv,
    bwrap_argv,
    count_user_tasks,
    exit_reason,
    host_watch_fd,
    launcher_call,
    probe_bwrap,
    python_paths,
    release_uid,
    seccomp_fd,
)
from composite.sandbox.outputs import (
    STDIN_NOTE,
    ExecutionResult,
    Output,
    OutputCollector,
    cut_middle,
    decode_large_stream,
)
from composite.sandbox.processes import (
    STATE_PREFIX,
    LogPump,
    cleanup_stale_state,
    kill_process,
    only_child,
    process_identity,
    wait_gone,
)

__all__ = ["Sandbox"]

logger = logging.getLogger("composite.sandbox")

_MiB = 2**20
_LARGE_FRAME = 2 * _MiB  # stream messages bigger than this are decoded only as far as we keep


_import_lock = threading.Lock()


def _kernel_manager_class() -> type:
    """The sandbox's KernelManager class. Its first call imports jupyter_client, one thread at a time:
    a page's background start importing it while another thread imports part of the same packages once
    saw a half-initialised package ("cannot import name 'KernelManager'"). start_async() calls it on the
    caller's thread, before the start thread exists."""
    with _import_lock:
        return _make_kernel_manager_class()


@functools.lru_cache(maxsize=1)
def _make_kernel_manager_class() -> type:
    try:
        from jupyter_client import KernelManager
    except ImportError as exc:
        raise SandboxError(f"the sandbox needs jupyter_client, which does not import here ({exc}); "
                           "install requirements.txt") from exc

    class SandboxKernelManager(KernelManager):
        """A KernelManager whose kernel command is the sandbox's (bubblewrap + bootstrap)."""

        sandbox_command: Any = None  # callable(connection_file) -> argv
        sandbox_owner: tuple[int, int] | None = None

        def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
            return list(self.sandbox_command(os.path.realpath(self.connection_file)))

        def write_connection_file(self, **kwargs: Any) -> None:
            super().write_connection_file(**kwargs)
            if self.sandbox_owner is not None:
                # the kernel reads it after dropping to its own uid
                os.chown(self.connection_file, *self.sandbox_owner)

    return SandboxKernelManager


def _zmq_context() -> Any:
    import zmq

    return zmq.Context.instance()


_janitor_done: set[str] = set()
_LIVE: weakref.WeakSet[Sandbox] = weakref.WeakSet()
_atexit_lock = threading.Lock()
_atexit_registered = False


def _shutdown_live_sandboxes() -> None:
    for sandbox in list(_LIVE):
        sandbox.shutdown()


def _register_atexit() -> None:
    global _atexit_registered
    with _atexit_lock:
        if not _atexit_registered:
            atexit.register(_shutdown_live_sandboxes)
            _atexit_registered = True


def _fmt_seconds(value: float) -> str:
    return f"{value:g}"


class Sandbox:
    """One sandboxed Jupyter kernel with its own working directory. Thread-safe: executions are
    serialized; interrupt() may be called from another thread while execute() runs.

    workdir: the writable directory (None: a fresh temporary one, removed at shutdown). As root
    the kernel runs as its own uid, so a given directory is handed to that uid while the sandbox
    lives and given back (owner and mode) at shutdown. cleanup_workdir: remove it at shutdown
    (default: only when we created it). hide: extra host directories the kernel must not see.
    """

    def __init__(
        self,
        workdir: str | Path | None = None,
        config: SandboxConfig | None = None,
        *,
        cleanup_workdir: bool | None = None,
        hide: tuple[str, ...] = (),
    ) -> None:
        self.config = config if config is not None else SandboxConfig.from_env()
        self._python = self.config.python or sys.executable
        self.isolation, self.isolation_note, self.isolation_detail = self._choose_isolation()
        self._full = self._bwrap  # bubblewrap is used
        self._as_root = os.geteuid() == 0
        # root ignores RLIMIT_NPROC: run the kernel as its own unprivileged uid whenever we can
        self.kernel_uid: int | None = None
        if self._as_root and (self._full or accessible_to_others(python_paths(self._python))):
            self.kernel_uid = allocate_uid(self.config.kernel_uid)
        elif self._as_root:
            self.isolation_detail = (self.isolation_detail + "; " if self.isolation_detail else "") + (
                "the kernel runs as root because its Python is not readable by other users, "
                "so the process-count limit is not enforced and the code could raise its limits"
            )
        self._owner = (self.kernel_uid, self.kernel_uid) if self.kernel_uid is not None else None

        runtime_parent = self.config.runtime_dir or None
        if (runtime_parent or "") not in _janitor_done:
            _janitor_done.add(runtime_parent or "")
            cleanup_stale_state(runtime_parent)
        self._state_dir = Path(tempfile.mkdtemp(prefix=STATE_PREFIX, dir=runtime_parent))
        os.chmod(self._state_dir, 0o711)
        (self._state_dir / "owner").write_text(process_identity(os.getpid()) or "", encoding="ascii")
        if workdir is None:
            workdir = self._state_dir / "work"
            self._cleanup_workdir = True if cleanup_workdir is None else cleanup_workdir
        else:
            self._cleanup_workdir = bool(cleanup_workdir)
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._cleanup_workdir and not self.workdir.is_relative_to(self._state_dir):
            (self._state_dir / "remove-workdir").write_text(str(self.workdir), encoding="utf-8")
        self._prepare_workdir()
        self._hide = tuple(hide)

        self._lock = threading.Lock()  # held by an execution or a lifecycle change
        self._km: Any = None
        self._proc: Any = None
        self._shell: Any = None
        self._iopub: Any = None
        self._poller: Any = None
        self._run_dir: Path | None = None
        self._inner_pid: int | None = None
        self._log_path: Path | None = None
        self._cgroup: KernelCgroup | None = None
        self._monitors: list[Any] = []
        self._launches = 0
        self._ready = False
        self._closed = False  # set when shutdown() begins: refuse new work
        self._shut_down = False  # set when shutdown() has finished
        self._image_counter: int | None = None
        self._start_thread: threading.Thread | None = None
        self._start_error: BaseException | None = None
        self.last_result: ExecutionResult | None = None
        self.last_used = time.monotonic()
        _LIVE.add(self)
        _register_atexit()

    # ----------------------------------------------------------------- isolation and layout
    def _choose_isolation(self) -> tuple[str, str, str]:
        """(level, note, detail); sets self._bwrap and self._use_cgroup. Full needs both
        bubblewrap and a cgroup for the kernel's tree; anything less is reduced, and says why."""
        mode = self.config.isolation
        self._use_cgroup, cgroup_reason = False, "cgroups not used (cgroup=off was configured)"
        if self.config.cgroup == "auto":
            self._use_cgroup, cgroup_reason = cgroup_probe()
        self._bwrap = False
        if mode == "reduced":
            return "reduced", REDUCED_NOTE, "bubblewrap not used (isolation=reduced was configured)"
        works, reason = probe_bwrap(self.config.bwrap)
        self._bwrap = works
        if works and self._use_cgroup:
            return "full", FULL_NOTE, ""
        if mode == "full":
            missing = f"bubblewrap does not work here: {reason}" if not works else f"no cgroup: {cgroup_reason}"
            raise SandboxStartError(f"isolation=full was required but {missing}")
        if not works:
            logger.warning("%s: %s", REDUCED_NOTE, reason)
            return "reduced", REDUCED_NOTE, reason
        logger.warning("%s: %s", NO_CGROUP_NOTE, cgroup_reason)
        return "reduced", NO_CGROUP_NOTE, cgroup_reason

    def _prepare_workdir(self) -> None:
        self._workdir_original: tuple[int, int, int] | None = None
        if self._owner is None:
            return
        st = os.lstat(self.workdir)
        if not self._cleanup_workdir:
            # a directory the caller gave us: its owner and mode come back at shutdown()
            self._workdir_original = (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))
        if st.st_uid != self._owner[0]:
            chown_tree(self.workdir, None, self._owner)
        os.chmod(self.workdir, 0o700)

    def _restore_workdir(self) -> None:
        if self._workdir_original is None or self._owner is None or not self.workdir.is_dir():
            return
        uid, gid, mode = self._workdir_original
        chown_tree(self.workdir, self._owner[0], (uid, gid))
        os.chmod(self.workdir, mode)

    def _hidden_paths(self) -> list[str]:
        hide = ["/run", "/home", "/root", "/var/tmp", os.path.expanduser("~")]
        hide += list(self.config.hide_paths) + list(self._hide)
        if self.config.base_dir:
            hide.append(self.config.base_dir)
        return hide

    def _private_tmp(self, run_dir: Path) -> str:
        return "/tmp" if self._full else str(run_dir / "tmp")

    def _kernel_env(self, run_dir: Path) -> dict[str, str]:
        tmp = self._private_tmp(run_dir)
        env = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ") if k in os.environ}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.setdefault("LANG", "C.UTF-8")
        env.update(
            HOME=str(self.workdir),
            USER="sandbox",
            LOGNAME="sandbox",
            SHELL="/bin/sh",
            TMPDIR=tmp,
            MPLBACKEND="module://matplotlib_inline.backend_inline",
            MPLCONFIGDIR=f"{tmp}/.matplotlib",
            IPYTHONDIR=f"{tmp}/.ipython",
            JUPYTER_CONFIG_DIR=f"{tmp}/.jupyter",
            JUPYTER_DATA_DIR=f"{tmp}/.jupyter-data",
            JUPYTER_RUNTIME_DIR=f"{tmp}/.jupyter-runtime",
            JUPYTER_PLATFORM_DIRS="1",
            XDG_CACHE_HOME=f"{tmp}/.cache",
            XDG_CONFIG_HOME=f"{tmp}/.config",
            MALLOC_ARENA_MAX="2",  # glibc reserves 64 MiB of address space per arena and thread
            PYDEVD_DISABLE_FILE_VALIDATION="1",
            COMPOSITE_SANDBOX="1",
        )
        return env

    def _command(
        self,
        connection_file: str,
        run_dir: Path,
        cgroup: KernelCgroup | None = None,
        seccomp: int | None = None,
    ) -> list[str]:
        nproc_offset = 0
        if self.kernel_uid is None and not self._full and not self._as_root:
            # same uid as the host user: the limit counts their processes too
            nproc_offset = count_user_tasks(os.getuid())
        kernel_args = ["-f", connection_file, "--HistoryManager.enabled=False"]
        inner = bootstrap_argv(
            self._python,
            self.config.limits.rlimits(nproc_offset),
            self.kernel_uid,
            str(self.workdir),
            kernel_args,
            watch_fd=host_watch_fd(),
            # JSON may escape a character into 6 bytes; keep cut strings well under the limit
            max_chars=self.config.max_message_bytes // 8,
            supervise=not self._full,  # with bubblewrap, its init does this job
            procs_file=cgroup.procs_files[0] if cgroup is not None else None,
        )
        if self._full:
            outer = bwrap_argv(
                self.config.bwrap,
                ro_paths=python_paths(self._python),
                rw_paths=[str(self.workdir), str(run_dir)],
                hide=self._hidden_paths(),
                tmp_bytes=self.config.tmp_bytes,
                drop_to_uid=self.kernel_uid is not None,
                seccomp_fd=seccomp,
            )
            inner = [*outer, "--", *inner]
        return cgroup.join_argv(inner) if cgroup is not None else inner

    # ----------------------------------------------------------------------- lifecycle
    @property
    def alive(self) -> bool:
        proc = self._proc
        return not self._closed and proc is not None and proc.poll() is None

    @property
    def closed(self) -> bool:
        """True once shutdown() has finished (processes gone, runtime files removed)."""
        return self._shut_down

    @property
    def ready(self) -> bool:
        return self._ready and self.alive

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    @property
    def pid(self) -> int | None:
        """Host pid of the kernel's outermost process (bubblewrap, or the kernel in reduced mode)."""
        return self._proc.pid if self._proc is not None else None

    def touch(self) -> None:
        self.last_used = time.monotonic()

    def start(self) -> None:
        """Start the kernel and wait until it answers; idempotent (returns at once when ready)."""
        if self.ready:
            return
        with self._lock:
            self._ensure_started_locked()

    def start_async(self) -> None:
        """Start the kernel in the background; execute() and wait_ready() wait for it."""
        if self.ready or self._closed:
            return
        thread = self._start_thread
        if thread is not None and thread.is_alive():
            return
        self._start_error = None
        try:
            _kernel_manager_class()  # import on this thread, not racing the caller's own imports
        except SandboxError as exc:
            self._start_error = exc  # raised again by wait_ready(), as a failed background start would be
            return
        self._start_thread = threading.Thread(
            target=self._start_in_background, name="composite-sandbox-start", daemon=True
        )
        self._start_thread.start()

    def _start_in_background(self) -> None:
        try:
            self.start()
        except SandboxError as exc:
            self._start_error = exc
            if not self._closed:  # a start cut short by shutdown() is not worth a warning
                logger.warning("sandbox start failed: %s", exc)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait for a start_async(); re-raise its error; start now if it was never started."""
        thread = self._start_thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                return False
        if self._start_error is not None:
            error, self._start_error = self._start_error, None
            raise error
        self.start()
        return True

    ensure_ready = wait_ready

    def _check_open(self) -> None:
        if self._closed:
            raise SandboxError("the sandbox was shut down; create a new one")

    def _ensure_started_locked(self) -> None:
        self._check_open()
        if self._ready and self._proc is not None and self._proc.poll() is None:
            return
        if self._km is not None:
            self._kill_locked()
        self._launch_locked()

    def _launch_locked(self) -> None:
        self._launches += 1
        run_dir = self._state_dir / f"run-{self._launches}"
        run_dir.mkdir(mode=0o700)
        if not self._full:
            (run_dir / "tmp").mkdir(mode=0o700)
        if self._owner is not None:
            os.chown(run_dir, *self._owner)
            if not self._full:
                os.chown(run_dir / "tmp", *self._owner)
        ipc_prefix = str(run_dir / "k")
        if len(ipc_prefix) > 90:
            raise SandboxStartError(f"the runtime directory path is too long for Unix sockets: {run_dir}")
        log_path = self._state_dir / f"kernel-{self._launches}.log"
        stale_log = self._state_dir / f"kernel-{self._launches - self.config.keep_logs}.log"
        stale_log.unlink(missing_ok=True)  # logs rotate: only the latest keep_logs stay
        km = _kernel_manager_class()(
            transport="ipc",
            ip=ipc_prefix,
            connection_file=str(run_dir / "kernel.json"),
            context=_zmq_context(),
            kernel_name="python3",
        )
        cgroup: KernelCgroup | None = None
        if self._use_cgroup:
            try:
                cgroup = KernelCgroup.create(self.config.cgroup_limits)
            except CgroupUnavailable as exc:
                remove_tree(run_dir)
                raise SandboxStartError(f"could not create the kernel's cgroup: {exc}") from exc
            # the janitor kills and removes it if this host process dies without shutting down
            (run_dir.parent / f"cgroup-{self._launches}").write_text(cgroup.to_lines(), encoding="utf-8")
        seccomp = seccomp_fd() if self._full else None
        km.sandbox_command = lambda cf: self._command(cf, run_dir, cgroup, seccomp)
        km.sandbox_owner = self._owner
        env = self._kernel_env(run_dir)
        deadline = time.monotonic() + self.config.startup_timeout
        self._run_dir, self._log_path, self._cgroup = run_dir, log_path, cgroup
        # the kernel's stdout/stderr go through a pipe to a capped log (code can flood fd 2)
        log_read, log_write = os.pipe()
        fds = (host_watch_fd(),) + ((seccomp,) if seccomp is not None else ())

        def spawn() -> None:
            km.start_kernel(
                env=env,
                cwd=str(self.workdir),
                stdin=subprocess.DEVNULL,
                stdout=log_write,
                stderr=log_write,
                pass_fds=fds,
            )

        try:
            launcher_call(spawn, timeout=self.config.startup_timeout)
        except Exception as exc:  # any launch failure (OSError, jupyter_client errors) is a start error
            os.close(log_read)
            remove_tree(run_dir)
            self._drop_cgroup()
            raise SandboxStartError(f"could not launch the sandboxed kernel: {exc}") from exc
        finally:
            os.close(log_write)
            if seccomp is not None:
                os.close(seccomp)
        LogPump(log_read, log_path, self.config.max_log_bytes).start()
        self._km = km
        self._proc = km.provisioner.process
        self._inner_pid = None
        try:
            self._connect_locked(deadline)
        except SandboxStartError:
            self._kill_locked()
            raise
        self._ready = True

    def _startup_failure(self, what: str) -> SandboxStartError:
        tail = ""
        if self._log_path is not None:
            try:
                with open(self._log_path, "rb") as fh:
                    fh.seek(max(0, os.fstat(fh.fileno()).st_size - 2000))
                    tail = fh.read().decode("utf-8", "replace").strip()
            except OSError:
                pass
        return SandboxStartError(f"the sandboxed kernel {what}" + (f"; kernel log:\n{tail}" if tail else ""))

    def _connect_locked(self, deadline: float) -> None:
        import zmq

        km = self._km
        paths = [f"{km.ip}-{km.shell_port}", f"{km.ip}-{km.iopub_port}"]
        while not all(os.path.exists(p) for p in paths):
            self._check_startup(deadline)
            time.sleep(0.005)
        if self._full:
            # the kernel has bound its sockets, so bubblewrap's one child (its init, PID 1 of the
            # namespace, whose death takes the whole namespace down) exists
            self._inner_pid = only_child(self._proc.pid)
        self._shell = self._socket(zmq.DEALER, km.shell_port, km.session.bsession)
        self._iopub = self._socket(zmq.SUB, km.iopub_port)
        self._iopub.setsockopt(zmq.SUBSCRIBE, b"")
        # a message over the limit makes zmq drop it (and the connection, which comes back): the
        # monitors tell us, so that the result can say so
        self._monitors = [
            sock.get_monitor_socket(zmq.EVENT_DISCONNECTED) for sock in (self._shell, self._iopub)
        ]
        self._poller = zmq.Poller()
        self._poller.register(self._shell, zmq.POLLIN)
        self._poller.register(self._iopub, zmq.POLLIN)
        for monitor in self._monitors:
            self._poller.register(monitor, zmq.POLLIN)
        # the kernel is ready when it answers on shell and our IOPub subscription delivers (a
        # SUB socket misses what is published before it is connected)
        sent: set[str] = set()
        shell_ok = iopub_ok = False
        next_send = 0.0
        while not (shell_ok and iopub_ok):
            now = time.monotonic()
            self._check_startup(deadline)
            if now >= next_send:
                msg = km.session.msg("kernel_info_request")
                km.session.send(self._shell, msg)
                sent.add(msg["header"]["msg_id"])
                next_send = now + 0.25
            events = dict(self._poller.poll(50))
            if self._iopub in events:
                while self._recv(self._iopub, content=False) is not None:
                    iopub_ok = True
            if self._shell in events:
                while (reply := self._recv(self._shell, content=False)) is not None:
                    if reply["parent_header"].get("msg_id") in sent:
                        shell_ok = True

    def _socket(self, kind: int, port: int, identity: bytes | None = None) -> Any:
        """A socket to the kernel that never takes a message over max_message_bytes into memory."""
        import zmq

        sock = _zmq_context().socket(kind)
        sock.linger = 0
        sock.setsockopt(zmq.MAXMSGSIZE, self.config.max_message_bytes)
        sock.setsockopt(zmq.RECONNECT_IVL, 10)  # after a dropped message, lose as little as we can
        if identity:
            sock.identity = identity
        sock.connect(f"ipc://{self._km.ip}-{port}")
        return sock

    def _reconnect(self, index: int) -> None:
        """Replace the shell (0) or IOPub (1) socket after zmq dropped an oversized message: the
        old connection does not come back by itself, and the kernel would route answers to the
        dropped connection's identity."""
        import secrets

        import zmq

        old, old_monitor = (self._shell, self._iopub)[index], self._monitors[index]
        self._poller.unregister(old)
        self._poller.unregister(old_monitor)
        try:
            old.disable_monitor()
        except zmq.ZMQError:
            pass
        old.close(linger=0)
        old_monitor.close(linger=0)
        if index == 0:
            identity = self._km.session.bsession + b"-" + secrets.token_hex(4).encode()
            sock = self._shell = self._socket(zmq.DEALER, self._km.shell_port, identity)
        else:
            sock = self._iopub = self._socket(zmq.SUB, self._km.iopub_port)
            sock.setsockopt(zmq.SUBSCRIBE, b"")
        self._monitors[index] = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self._poller.register(sock, zmq.POLLIN)
        self._poller.register(self._monitors[index], zmq.POLLIN)

    def _dropped_connections(self) -> tuple[int, int]:
        """(shell, iopub) disconnections seen since the last call: each one is a message over
        max_message_bytes that zmq dropped (the kernel is on the same host: nothing else breaks
        an IPC connection while it lives)."""
        import zmq
        from zmq.utils.monitor import recv_monitor_message

        counts = [0, 0]
        for i, monitor in enumerate(self._monitors):
            while True:
                try:
                    recv_monitor_message(monitor, zmq.NOBLOCK)
                except zmq.Again:
                    break
                counts[i] += 1
        return counts[0], counts[1]

    def _check_startup(self, deadline: float) -> None:
        code = self._proc.poll()
        if code is not None:
            reason = exit_reason(code, self._full, self.config.cpu_seconds)
            raise self._startup_failure(f"exited during startup ({reason})")
        if time.monotonic() > deadline:
            raise self._startup_failure(
                f"did not become ready within {_fmt_seconds(self.config.startup_timeout)} s"
            )

    def _close_sockets(self) -> None:
        for sock in (self._shell, self._iopub):
            if sock is not None:
                try:
                    sock.disable_monitor()
                except Exception:  # zmq may refuse on a socket whose monitor is already gone
                    pass
                sock.close(linger=0)
        for monitor in self._monitors:
            monitor.close(linger=0)
        self._monitors = []
        self._shell = self._iopub = self._poller = None

    def _kill_locked(self) -> None:
        km, proc, run_dir, inner = self._km, self._proc, self._run_dir, self._inner_pid
        self._ready = False
        self._close_sockets()
        kill_process(proc, inner)
        if km is not None:
            try:
                launcher_call(lambda: km.shutdown_kernel(now=True), timeout=15)
            except Exception as exc:  # best effort: the kernel may be half-dead; kill it directly below
                logger.debug("shutdown_kernel failed: %s", exc)
        kill_process(proc, inner)
        if inner is not None:
            # the kernel itself (bubblewrap's child) may take a moment longer to exit
            wait_gone(inner, 5.0)
        self._drop_cgroup()
        if run_dir is not None:
            remove_tree(run_dir)
        self._km = self._proc = self._run_dir = self._inner_pid = None

    def _drop_cgroup(self) -> None:
        """Kill whatever is left of the kernel's tree (background processes too), then remove
        its cgroup and the janitor's note of it."""
        cgroup, self._cgroup = self._cgroup, None
        if cgroup is None:
            return
        if not cgroup.kill_all():
            logger.warning("processes of a sandbox cgroup survived SIGKILL: %s", cgroup.pids())
        if cgroup.remove():
            for note in self._state_dir.glob("cgroup-*"):
                if note.read_text(encoding="utf-8") == cgroup.to_lines():
                    note.unlink(missing_ok=True)

    def interrupt(self) -> None:
        """Send SIGINT to the running code (through the kernel manager); safe from any thread."""
        km = self._km
        if km is None or not self.alive:
            return
        try:
            launcher_call(km.interrupt_kernel, timeout=10)
        except Exception as exc:  # an interrupt is advisory; a dead kernel is handled by execute()
            logger.debug("interrupt failed: %s", exc)

    def restart(self) -> None:
        """Kill the kernel and start a fresh one (variables are lost; workdir files stay). It does not wait for
        a running execution: the kernel is killed first, so code that ignored the interrupt ends at once (its
        execution returns as a kernel death) instead of holding the restart until its own timeout."""
        self._check_open()
        if self._lock.locked():
            kill_process(self._proc, self._inner_pid)
        with self._lock:
            self._check_open()  # shut down while this waited
            self._kill_locked()
            self._launch_locked()

    def shutdown(self) -> None:
        """Stop the kernel, remove its runtime files (and the workdir if this sandbox created it)."""
        if self._closed:
            return
        self._closed = True
        # kill first so that an execution running in another thread returns promptly
        kill_process(self._proc, self._inner_pid)
        with self._lock:
            self._kill_locked()
            if self._cleanup_workdir:
                workdir_gone = remove_tree(self.workdir)
            else:
                self._restore_workdir()
                workdir_gone = True
            # the owner marker goes last (and stays if the workdir could not be removed), so that
            # whatever is left is found again by the janitor
            remove_tree(self._state_dir, keep_last=None if workdir_gone else "owner")
            if self.config.kernel_uid is None:
                release_uid(self.kernel_uid)
            self._shut_down = True
        _LIVE.discard(self)

    close = shutdown

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("ready" if self._ready else "not started")
        return f"<Sandbox {self.workdir} isolation={self.isolation} {state}>"

    @property
    def log_files(self) -> list[Path]:
        """The kernel logs kept on the host (stdout/stderr of the latest launches, each capped)."""
        return sorted(self._state_dir.glob("kernel-*.log"), key=lambda p: int(p.stem.split("-")[1]))

    def tree_memory_bytes(self) -> int | None:
        """Memory used now by the kernel's whole process tree (its cgroup), if it has one."""
        cgroup = self._cgroup
        return cgroup.memory_bytes() if cgroup is not None else None

    def _death_reason(self, code: int | None) -> str:
        cgroup = self._cgroup
        if cgroup is not None and cgroup.memory_events():
            limit = self.config.cgroup_limits.memory_bytes
            return f"out of memory: its processes together reached the limit of {limit // 2**20} MiB"
        return exit_reason(code, self._full, self.config.cpu_seconds)

    def status(self) -> ExecutorStatus:
        """What protects this kernel (isolation level and a note for people) and its state."""
        return ExecutorStatus(
            isolation=self.isolation,
            isolation_note=self.isolation_note,
            detail=self.isolation_detail,
            ready=self.ready,
            workdir=str(self.workdir),
            kind="local",
        )

    # ------------------------------------------------------------------------ messages
    def _recv(self, sock: Any, content: bool = True) -> dict[str, Any] | None:
        """One message from sock without blocking, or None. With content=False the content frame
        is left raw (a zmq Frame) so huge outputs are not parsed whole."""
        import zmq

        try:
            frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return None
        session = self._km.session
        try:
            _idents, msg_list = session.feed_identities(frames, copy=False)
            msg = session.deserialize(msg_list, content=False, copy=False)
        except ValueError as exc:
            logger.warning("ignoring an invalid kernel message: %s", exc)
            return {
                "header": {"msg_type": "invalid"},
                "parent_header": {},
                "msg_type": "invalid",
                "content": {},
            }
        if content:
            msg["content"] = session.unpack(msg["content"].bytes)
        return msg

    def _unpack(self, msg: dict[str, Any]) -> dict[str, Any]:
        raw = msg["content"]
        return self._km.session.unpack(raw.bytes if hasattr(raw, "bytes") else raw)

    def _save_image(self, ext: str, raw: bytes) -> str:
        if self._image_counter is None:
            highest = 0
            for entry in os.listdir(self.workdir):
                match = re.fullmatch(r"plot_(\d+)\.\w+", entry)
                if match:
                    highest = max(highest, int(match.group(1)))
            self._image_counter = highest
        self._image_counter += 1
        name = f"plot_{self._image_counter}.{ext}"
        while os.path.lexists(self.workdir / name):  # never replace a file the code wrote
            self._image_counter += 1
            name = f"plot_{self._image_counter}.{ext}"
        try:
            write_file_safely(self.workdir, name, raw, self._owner)
        except OSError as exc:
            logger.warning("could not save %s: %s", name, exc)
            return ""
        return name

    # ----------------------------------------------------------------------- execution
    def execute(
        self,
        code: str,
        timeout: float | None = None,
        on_output: Callable[[Output], None] | None = None,
    ) -> ExecutionResult:
        """Run code; returns every output in order and how it ended. on_output, if given, is
        called with each Output as it arrives, in order (live rendering); the result's outputs are
        the same ones, with adjacent stdout/stderr pieces merged. Raises SandboxError only when
        the kernel cannot be started or the sandbox was shut down."""
        gen = self._run(code, timeout)
        while True:
            try:
                out = next(gen)
            except StopIteration as stop:
                return stop.value
            if on_output is not None:
                on_output(out)

    def execute_iter(
        self, code: str, timeout: float | None = None
    ) -> Generator[Output, None, ExecutionResult]:
        """Like execute(), yielding outputs as they arrive. When the run ends in a timeout or a
        kernel death, a last Output(kind="error") carries the message. The generator's return
        value (and `last_result`) is the ExecutionResult."""
        result = yield from self._run(code, timeout)
        if result.status not in ("ok", "error") and result.message:
            yield Output(kind="error", text=f"[{result.status}] {result.message}")
        return result

    def _run(self, code: str, timeout: float | None) -> Generator[Output, None, ExecutionResult]:
        started = time.monotonic()
        timeout = self.config.timeout if timeout is None else float(timeout)
        if not code or not code.strip():
            result = ExecutionResult([], "no_code", "there was no code to run", 0.0)
            self.last_result = result
            return result
        self._lock.acquire()
        finished = False
        state: _RunState | None = None
        try:
            note = self._revive_locked()
            shell_drops, iopub_drops = self._dropped_connections()  # since the last execution
            for index, drops in enumerate((shell_drops, iopub_drops)):
                if drops:
                    self._reconnect(index)
            # the clock starts once the kernel is up: a cold start is not the code's time
            started = self.last_used = time.monotonic()
            collector = OutputCollector(
                self.config.max_output_chars,
                self.config.max_images,
                self._save_image,
                max_image_bytes=self.config.max_image_bytes,
                max_total_image_bytes=self.config.max_total_image_bytes,
                max_message_bytes=self.config.max_message_bytes,
            )
            outputs: list[Output] = []
            state = _RunState(self._send_execute(code), started + timeout)
            for out in self._collect(state, collector, timeout):
                outputs.append(out)
                yield out
            marker = collector.cut_marker()
            if marker is not None:
                outputs.append(marker)
                yield marker
            message = state.message
            if note:
                message = f"{message}; {note}" if message else note
            result = ExecutionResult(
                _merge_streams(outputs), state.status, message, time.monotonic() - started
            )
            finished = True
            self.last_result = result
            return result
        finally:
            if not finished and state is not None and self._km is not None and not self._closed:
                # the caller stopped iterating: do not leave the code running behind its back
                self._settle_abandoned(state)
            self.last_used = time.monotonic()
            self._lock.release()

    def _settle_abandoned(self, state: _RunState) -> None:
        """Interrupt an execution nobody listens to any more and wait for its reply, so that the
        kernel is idle (and not aborting queued requests) when the next execution starts."""
        self.interrupt()
        until = time.monotonic() + self.config.interrupt_grace
        sink = OutputCollector(0, 0, lambda ext, raw: "")
        while state.reply is None and time.monotonic() < until:
            if self._proc is None or self._proc.poll() is not None:
                return  # the next execution notices the death and restarts
            events = dict(self._poller.poll(50))
            if self._iopub in events:
                for _ in self._drain_iopub(state, sink):
                    pass
            if self._shell in events:
                self._drain_shell(state)
        if state.reply is None:
            self._restart_after_failure(state)

    def _revive_locked(self) -> str:
        """Start the kernel if needed; if it died since the last execution, restart it and return
        a note saying so."""
        note = ""
        if self._ready and self._proc is not None and self._proc.poll() is not None and not self._closed:
            reason = self._death_reason(self._proc.poll())
            note = (
                f"the kernel had died since the last execution ({reason}); "
                "it was restarted and variables were lost"
            )
        self._ensure_started_locked()
        return note

    def _send_execute(self, code: str) -> str:
        session = self._km.session
        msg = session.msg(
            "execute_request",
            {
                "code": code,
                "silent": False,
                "store_history": True,
                "user_expressions": {},
                "allow_stdin": False,
                # we send one request at a time; with stop_on_error ipykernel answers the error
                # first and only then starts aborting queued requests, so a request sent right
                # after an error could be aborted
                "stop_on_error": False,
            },
        )
        session.send(self._shell, msg)
        return msg["header"]["msg_id"]

    def _collect(self, state: _RunState, collector: OutputCollector, timeout: float) -> Iterator[Output]:
        grace = self.config.interrupt_grace
        while True:
            now = time.monotonic()
            if state.reply is not None and (state.idle or now - state.reply_at > 2.0):
                break
            if state.interrupted_at is None and now >= state.deadline and state.reply is None:
                self.interrupt()
                state.interrupted_at = state.signalled_at = now
            elif state.interrupted_at is not None and state.reply is None and now - state.signalled_at >= 1.0:
                # a SIGINT that lands between two executions (before ipykernel arms its handler)
                # is lost; repeat it while waiting for the answer
                self.interrupt()
                state.signalled_at = now
            if (
                state.interrupted_at is not None
                and state.reply is None
                and now >= state.interrupted_at + grace
            ):
                state.status = "timeout"
                state.message = (
                    f"timed out after {_fmt_seconds(timeout)} s; the kernel did not answer the "
                    f"interrupt within {_fmt_seconds(grace)} s and was restarted (variables lost)"
                )
                self._restart_after_failure(state)
                return
            if state.reply is not None:
                wake = state.reply_at + 2.0
            elif state.interrupted_at is not None:
                wake = state.interrupted_at + grace
            else:
                wake = state.deadline
            wait_ms = max(0, min(100, int((wake - now) * 1000) + 1))
            events = dict(self._poller.poll(wait_ms))
            if any(monitor in events for monitor in self._monitors):
                shell_drops, iopub_drops = self._dropped_connections()
                collector.dropped_messages += shell_drops + iopub_drops
                if iopub_drops:
                    self._reconnect(1)
                if shell_drops and state.reply is None:
                    state.reply_lost = True
                elif shell_drops:
                    self._reconnect(0)
            if state.reply_lost and state.probe_id is None:
                # the reply was too large and is gone; the kernel answers requests in order, so
                # the answer to this one means the code has finished. A fresh socket: the kernel
                # would route the answer to the dropped connection's identity
                self._reconnect(0)
                probe = self._km.session.msg("kernel_info_request")
                self._km.session.send(self._shell, probe)
                state.probe_id = probe["header"]["msg_id"]
            if self._iopub in events:
                yield from self._drain_iopub(state, collector)
            if self._shell in events:
                self._drain_shell(state)
            if not events and self._proc.poll() is not None:
                yield from self._drain_iopub(state, collector)
                self._on_death(state)
                return
        reply = state.reply or {}
        status = reply.get("status", "error")
        if state.interrupted_at is not None:
            # even if the code caught the KeyboardInterrupt and finished, it overran its time
            state.status = "timeout"
            state.message = f"timed out after {_fmt_seconds(timeout)} s; interrupted"
        elif status == "ok":
            state.status = "ok"
        elif status == "aborted":
            state.status = "aborted"
            state.message = "the kernel skipped this code (aborted after an earlier error or interrupt)"
        elif reply.get("ename") == "KeyboardInterrupt":
            state.status = "interrupted"  # interrupt() from another thread, e.g. a Stop button
            state.message = "interrupted (KeyboardInterrupt)"
        else:
            state.status = "error"
            summary = f"{reply.get('ename', 'Error')}: {reply.get('evalue', '')}".rstrip(": ")
            state.message = cut_middle(summary, 500)
            if reply.get("ename") == "StdinNotImplementedError":
                state.message = STDIN_NOTE
            if not state.saw_error and reply.get("ename"):
                out = collector.error(
                    reply.get("ename", ""), reply.get("evalue", ""), reply.get("traceback", [])
                )
                yield out

    def _drain_shell(self, state: _RunState) -> None:
        while (msg := self._recv(self._shell, content=False)) is not None:
            parent = msg["parent_header"].get("msg_id")
            if parent == state.msg_id and msg["msg_type"] == "execute_reply":
                state.reply = self._unpack(msg)
                state.reply_at = time.monotonic()
            elif parent is not None and parent == state.probe_id and state.reply is None:
                state.reply = {
                    "status": "error",
                    "ename": "OutputTooLarge",
                    "evalue": (
                        f"the kernel's reply was larger than {self.config.max_message_bytes} bytes "
                        "and was dropped"
                    ),
                }
                state.reply_at = time.monotonic()

    def _drain_iopub(self, state: _RunState, collector: OutputCollector) -> Iterator[Output]:
        while (msg := self._recv(self._iopub, content=False)) is not None:
            if msg["parent_header"].get("msg_id") != state.msg_id:
                continue  # another (earlier, timed out) request's late output
            kind = msg["msg_type"]
            out: Output | None = None
            if kind == "stream":
                frame = msg["content"]
                size = len(frame.buffer) if hasattr(frame, "buffer") else len(frame)
                if size > _LARGE_FRAME:
                    room = max(collector.max_chars - collector.kept_chars, 0)
                    name, text, rest = decode_large_stream(
                        frame.buffer if hasattr(frame, "buffer") else frame, room
                    )
                    out = collector.stream(name, text, extra_dropped=rest)
                else:
                    content = self._unpack(msg)
                    out = collector.stream(content.get("name", "stdout"), content.get("text", ""))
            elif kind in ("execute_result", "display_data", "update_display_data"):
                content = self._unpack(msg)
                out = collector.rich(
                    "result" if kind == "execute_result" else "display",
                    content.get("data") or {},
                    content.get("metadata") or {},
                )
            elif kind == "error":
                content = self._unpack(msg)
                state.saw_error = True
                out = collector.error(
                    content.get("ename", ""), content.get("evalue", ""), content.get("traceback") or []
                )
            elif kind == "status":
                if self._unpack(msg).get("execution_state") == "idle":
                    state.idle = True
            if out is not None:
                yield out

    def _on_death(self, state: _RunState) -> None:
        code = self._proc.poll()
        reason = self._death_reason(code)
        state.status = "died"
        if self._closed:
            state.message = "the sandbox was shut down while the code was running"
            return
        state.message = f"the kernel died ({reason}); it was restarted and variables were lost"
        self._restart_after_failure(state)

    def _restart_after_failure(self, state: _RunState) -> None:
        if self._closed:
            return
        self._kill_locked()
        try:
            self._launch_locked()
        except SandboxError as exc:
            state.message = state.message.replace("was restarted", "could not be restarted") + f" ({exc})"

    # --------------------------------------------------------------------------- files
    def upload(self, name: str, data: bytes) -> Path:
        """Save data as workdir/<name>; name is reduced to a plain file name (no directories, no
        traversal) and an existing file (or a link planted under that name) is replaced. Returns
        the path."""
        safe = safe_name(name)
        if len(data) > self.config.max_file_bytes:
            raise SandboxError(
                f"{safe!r} is {len(data)} bytes; the sandbox file size limit is "
                f"{self.config.max_file_bytes} bytes"
            )
        try:
            return write_file_safely(self.workdir, safe, bytes(data), self._owner)
        except OSError as exc:
            raise SandboxError(f"could not save {safe!r} into the sandbox: {exc}") from exc

    def restore_file(self, path: str, data: bytes) -> str:
        """Write a kept file back to its relative path in the workdir (a reopened conversation), making
        its folders; the path is checked and no link is followed (files.write_workdir_file). Returns the
        relative path."""
        if len(data) > self.config.max_file_bytes:
            raise SandboxError(
                f"{str(path)[:200]!r} is {len(data)} bytes; the sandbox file size limit is "
                f"{self.config.max_file_bytes} bytes"
            )
        return write_workdir_file(self.workdir, path, bytes(data), self._owner)

    def list_files(self) -> list[WorkFile]:
        """Regular files of the workdir by relative path (hidden names, links and special files
        skipped, so a file planted as a link to a host file is never offered); bounded in count,
        depth and work (see files.list_workdir)."""
        return list_workdir(self.workdir)

    def read_file(self, name: str | Path, max_bytes: int = MAX_READ_BYTES) -> bytes:
        """Read a regular file of the workdir (relative path) without following any link; an
        error if it is larger than max_bytes."""
        return read_workdir_file(self.workdir, name, max_bytes)


@dataclass
class _RunState:
    msg_id: str
    deadline: float
    reply: dict[str, Any] | None = None
    reply_at: float = 0.0
    idle: bool = False
    interrupted_at: float | None = None
    signalled_at: float = 0.0
    saw_error: bool = False
    reply_lost: bool = False  # the execute_reply was over max_message_bytes and dropped
    probe_id: str | None = None
    status: str = "ok"
    message: str = ""


def _merge_streams(outputs: list[Output]) -> list[Output]:
    merged: list[Output] = []
    for out in outputs:
        if merged and out.kind in ("stdout", "stderr") and merged[-1].kind == out.kind:
            merged[-1] = Output(kind=out.kind, text=merged[-1].text + out.text)
        else:
            merged.append(out)
    return merged
