"""How the sandboxed kernel process is launched: bubblewrap probing and arguments, resource limits,
the in-sandbox bootstrap that applies them, and the one long-lived thread that spawns kernels."""

from __future__ import annotations

import json
import os
import queue
import secrets
import signal
import site
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "FULL_NOTE",
    "REDUCED_NOTE",
    "NO_CGROUP_NOTE",
    "Limits",
    "probe_bwrap",
    "python_paths",
    "allocate_uid",
    "release_uid",
    "accessible_to_others",
    "bwrap_argv",
    "bootstrap_argv",
    "launcher_call",
    "host_watch_fd",
    "exit_reason",
    "seccomp_program",
    "seccomp_fd",
]

FULL_NOTE = (
    "sandbox: full (bubblewrap: no network, read-only host filesystem, private /tmp, "
    "only its own working directory is writable; no new user namespaces; cgroup limits on "
    "memory, processes and CPU)"
)
REDUCED_NOTE = "sandbox: reduced (no network/filesystem isolation)"
NO_CGROUP_NOTE = (
    "sandbox: reduced (no cgroup: memory, processes and CPU are limited per process only, "
    "not for the kernel's whole process tree)"
)

T = TypeVar("T")

# uids handed to kernels when the host runs as root (root ignores RLIMIT_NPROC, so the kernel must
# not be root); far above normal users and the usual subordinate-id ranges (100000-165535)
_UID_BASE = 1_900_000_000
_UID_SPAN = 100_000_000
_uids_in_use: set[int] = set()
_uids_lock = threading.Lock()


def allocate_uid(requested: int | None) -> int:
    """A uid for one kernel: the configured one, or a fresh one, so that the per-uid process limit
    and file permissions separate sandboxes from each other."""
    if requested is not None:
        return requested
    with _uids_lock:
        while True:
            uid = _UID_BASE + secrets.randbelow(_UID_SPAN)
            if uid not in _uids_in_use:
                _uids_in_use.add(uid)
                return uid


def release_uid(uid: int | None) -> None:
    with _uids_lock:
        _uids_in_use.discard(uid)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Limits:
    """Per-kernel resource limits, applied with setrlimit inside the sandbox before any user code."""

    memory_bytes: int
    cpu_seconds: int
    max_processes: int
    max_file_bytes: int
    max_open_files: int

    def rlimits(self, nproc_offset: int = 0) -> list[tuple[str, int, int]]:
        """(name, soft, hard); soft == hard so the code cannot raise them again. CPU gets one extra
        hard second so SIGXCPU (soft) comes before SIGKILL (hard) where SIGXCPU is deliverable."""
        return [
            ("RLIMIT_AS", self.memory_bytes, self.memory_bytes),
            ("RLIMIT_CPU", self.cpu_seconds, self.cpu_seconds + 1),
            ("RLIMIT_NPROC", self.max_processes + nproc_offset, self.max_processes + nproc_offset),
            ("RLIMIT_FSIZE", self.max_file_bytes, self.max_file_bytes),
            ("RLIMIT_NOFILE", self.max_open_files, self.max_open_files),
            ("RLIMIT_CORE", 0, 0),  # no core dumps: a segfault must not write (or pipe) a huge core
        ]


_probe_cache: dict[tuple[str, bool], tuple[bool, str]] = {}
_probe_lock = threading.Lock()


def probe_bwrap(bwrap: str) -> tuple[bool, str]:
    """Try bubblewrap once (per binary, cached) with the namespaces and options we rely on.
    Returns (works, reason-if-not)."""
    as_root = os.geteuid() == 0
    key = (bwrap, as_root)
    with _probe_lock:
        if key in _probe_cache:
            return _probe_cache[key]
        argv = [bwrap, *_namespace_args(), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        argv += ["--perms", "1777", "--size", str(2**20), "--tmpfs", "/tmp"]
        argv += _cap_args(as_root) + ["--", "true"]
        try:
            proc = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=20, check=False
            )
        except FileNotFoundError:
            result = (False, f"{bwrap!r} was not found")
        except (OSError, subprocess.SubprocessError) as exc:
            result = (False, f"{bwrap!r} could not run: {exc}")
        else:
            if proc.returncode == 0:
                result = (True, "")
            else:
                err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
                result = (False, f"{bwrap} failed ({err[-1] if err else f'exit code {proc.returncode}'})")
        _probe_cache[key] = result
        return result


def _namespace_args() -> list[str]:
    return [
        "--unshare-net",
        # no --as-pid-1: bubblewrap's own init is PID 1 of the namespace, outside the code's reach
        # (root, no capabilities given to the code); it dies with bubblewrap (--die-with-parent),
        # and the death of a namespace's PID 1 kills every process in it, whatever they patched
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--hostname",
        "sandbox",
        "--unshare-cgroup-try",
        "--die-with-parent",
    ]


def _cap_args(as_root: bool, switch_uid: bool = True) -> list[str]:
    # As root, bwrap keeps root's capabilities inside; drop them all, except the two the bootstrap
    # needs to switch to the unprivileged kernel uid (after which none are left).
    if not as_root:
        return []
    keep = ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"] if switch_uid else []
    return ["--cap-drop", "ALL", *keep]


_paths_cache: dict[str, list[str]] = {}


def python_paths(python: str) -> list[str]:
    """Directories the kernel's interpreter needs to read: prefixes and site-packages."""
    if python in _paths_cache:
        return _paths_cache[python]
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        info = {
            "prefixes": [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix],
            "site": list(site.getsitepackages()),
            "exe": sys.executable,
        }
    else:
        code = (
            "import json,site,sys;print(json.dumps({'prefixes':[sys.prefix,sys.base_prefix,"
            "sys.exec_prefix,sys.base_exec_prefix],'site':site.getsitepackages(),'exe':sys.executable}))"
        )
        out = subprocess.run([python, "-I", "-c", code], capture_output=True, timeout=60, check=True)
        info = json.loads(out.stdout)
    paths = [*info["prefixes"], *info["site"], str(Path(info["exe"]).parent), str(Path(python).parent)]
    resolved: list[str] = []
    for path in paths:
        real = os.path.realpath(path)
        if os.path.isdir(real) and real not in resolved:
            resolved.append(real)
    _paths_cache[python] = resolved
    return resolved


def accessible_to_others(paths: Iterable[str]) -> bool:
    """Whether a user with no relation to the owners could traverse to and read these paths."""
    for path in paths:
        p = Path(path)
        for part in [*reversed(p.parents), p]:
            try:
                mode = part.stat().st_mode
            except OSError:
                return False
            if not mode & 0o001:
                return False
        try:
            if not p.stat().st_mode & 0o004:
                return False
        except OSError:
            return False
    return True


def _is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def bwrap_argv(
    bwrap: str,
    *,
    ro_paths: Sequence[str],
    rw_paths: Sequence[str],
    hide: Sequence[str],
    tmp_bytes: int,
    drop_to_uid: bool,
    seccomp_fd: int | None = None,
) -> list[str]:
    """The bubblewrap command line (without the command): host / read-only, fresh /dev and /proc,
    a private size-limited /tmp, `hide` covered by empty tmpfs, then ro_paths and rw_paths bound
    back at their own paths. Directories an unprivileged kernel uid could not traverse on the way
    to a needed path are hidden too, and the needed path re-exposed through 0755 directories."""
    needed = [(os.path.realpath(p), "ro") for p in ro_paths] + [(os.path.realpath(p), "rw") for p in rw_paths]
    hidden: set[str] = set()
    for h in hide:
        real = os.path.realpath(h)
        if real != "/" and os.path.isdir(real):
            hidden.add(real)
    if drop_to_uid:
        for path, _ in needed:
            for parent in Path(path).parents:
                if str(parent) == "/":
                    continue
                try:
                    if not parent.stat().st_mode & 0o001:
                        hidden.add(str(parent))
                except OSError:
                    continue
    # an inner hidden dir is redundant under an outer one (nothing under the outer one is visible)
    hidden = {h for h in hidden if not any(o != h and _is_under(h, o) for o in hidden)}
    # under /tmp nothing needs hiding: /tmp itself is a fresh tmpfs
    hidden = {h for h in hidden if not _is_under(h, "/tmp")}

    ops: list[tuple[str, str]] = [(h, "tmpfs") for h in hidden]
    ops += [(p, kind) for p, kind in needed if os.path.exists(p)]
    order = {"tmpfs": 0, "ro": 1, "rw": 2}
    ops.sort(key=lambda op: (op[0].count("/"), op[0], order[op[1]]))

    argv = [bwrap, *_namespace_args(), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    argv += ["--perms", "1777", "--size", str(tmp_bytes), "--tmpfs", "/tmp"]
    argv += ["--perms", "1777", "--size", str(min(tmp_bytes, 64 * 2**20)), "--tmpfs", "/dev/shm"]
    mounts: dict[str, str] = {"/tmp": "tmpfs", "/": "ro"}
    created: set[str] = set()
    for path, kind in ops:
        for parent in reversed(Path(path).parents):
            p = str(parent)
            if p in mounts or p in created:
                continue
            owner = max((m for m in mounts if _is_under(p, m)), key=len)
            if mounts[owner] == "tmpfs":
                # bwrap would create it 0700 root: the unprivileged kernel could not pass through
                argv += ["--perms", "0755", "--dir", p]
                created.add(p)
        if kind == "tmpfs":
            argv += ["--perms", "0755", "--size", str(2**20), "--tmpfs", path]
        elif kind == "ro":
            argv += ["--ro-bind", path, path]
        else:
            argv += ["--bind", path, path]
        mounts[path] = kind
    # no --chdir: bubblewrap's capability-less root cannot enter the kernel uid's 0700 workdir;
    # the bootstrap changes directory after switching uid
    argv += ["--unsetenv", "JPY_PARENT_PID"]
    argv += _cap_args(os.geteuid() == 0, switch_uid=drop_to_uid)
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    return argv


# seccomp: refuse new user namespaces (inside one the code could mount a tmpfs outside every
# limit, or reach kernel code that unprivileged users normally cannot). Classic BPF over
# struct seccomp_data {int nr; u32 arch; u64 ip; u64 args[6]}.
_CLONE_NEWUSER = 0x10000000
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000
_EPERM, _ENOSYS = 1, 38
# arch: (AUDIT_ARCH, unshare, clone, clone3, clone's flags argument index)
_SYSCALLS = {
    "x86_64": (0xC000003E, 272, 56, 435, 0),
    "aarch64": (0xC00000B7, 97, 220, 435, 0),
}


def seccomp_program() -> bytes | None:
    """A seccomp filter (for bubblewrap's --seccomp) that makes unshare/clone with CLONE_NEWUSER
    fail with EPERM and clone3 (whose flags BPF cannot read) fail with ENOSYS, so that libc
    falls back to clone; None on an architecture we have no numbers for."""
    import platform
    import struct

    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None:
        return None
    arch, unshare, clone, clone3, flags_arg = numbers
    ld_w_abs, jeq_k, jset_k, ret_k = 0x20, 0x15, 0x45, 0x06

    def op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
        return struct.pack("<HBBI", code, jt, jf, k)

    flags_offset = 16 + 8 * flags_arg  # low 32 bits of the argument (little-endian)
    prog = [
        op(ld_w_abs, 4),  # 0: arch
        op(jeq_k, arch, 1, 0),  # 1: our arch -> 3
        op(ret_k, _SECCOMP_RET_ERRNO | _EPERM),  # 2: any other ABI: refuse
        op(ld_w_abs, 0),  # 3: syscall number
        op(0x25, 0x3FFFFFFF, 0, 1),  # 4: jgt: x32 ABI numbers (x86_64) -> refuse
        op(ret_k, _SECCOMP_RET_ERRNO | _EPERM),  # 5
        op(jeq_k, clone3, 0, 1),  # 6
        op(ret_k, _SECCOMP_RET_ERRNO | _ENOSYS),  # 7
        op(jeq_k, unshare, 1, 0),  # 8: -> 10
        op(jeq_k, clone, 0, 3),  # 9: not clone -> 13 (allow)
        op(ld_w_abs, flags_offset),  # 10: flags
        op(jset_k, _CLONE_NEWUSER, 0, 1),  # 11
        op(ret_k, _SECCOMP_RET_ERRNO | _EPERM),  # 12
        op(ret_k, _SECCOMP_RET_ALLOW),  # 13
    ]
    return b"".join(prog)


def seccomp_fd() -> int | None:
    """A fresh descriptor holding seccomp_program() from its start (bubblewrap reads it to the
    end, so each launch needs its own); the caller closes it after the spawn."""
    program = seccomp_program()
    if program is None:
        return None
    fd = os.memfd_create("composite-seccomp", os.MFD_CLOEXEC)
    os.write(fd, program)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


# Runs inside the sandbox with `python -I -c` (isolated: no cwd/PYTHON* influence, so files in the
# workdir cannot shadow the modules imported here while still privileged): unblock signals (the
# launcher thread blocks SIGINT so that bubblewrap survives interrupts), lower the limits, drop to
# the kernel uid, start the host watch, then become ipykernel.
#
# The host watch: the kernel must die with the host process, even when that is SIGKILLed.
# bubblewrap's --die-with-parent (PR_SET_PDEATHSIG) does not reach the kernel: changing uid clears
# it, and a re-armed one is sent by the dying bubblewrap, which lacks the permission to signal
# another uid. Instead the kernel inherits the read end of a pipe whose only write end the host
# holds (close-on-exec); when the host dies the read returns EOF and the kernel exits (as PID 1 of
# its namespace, taking every process of the sandbox with it).
_BOOTSTRAP = """\
import json, os, resource, signal, sys
spec = json.loads(sys.argv[1])
signal.pthread_sigmask(signal.SIG_SETMASK, ())
if spec.get("supervise") and spec["watch_fd"] is not None:
    # without bubblewrap's init: stay behind as a supervisor (unlimited, and as root not the code's
    # uid, so out of its reach) that takes the kernel's whole tree down when the host dies
    kernel = os.fork()
    if kernel:
        import threading
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts are for the kernel
        def _victims():
            if spec.get("procs"):
                with open(spec["procs"]) as fh:
                    return [int(p) for p in fh.read().split()]
            found = []
            for entry in os.listdir("/proc"):
                try:
                    if entry.isdigit() and spec["uid"] is not None and os.stat("/proc/" + entry).st_uid == spec["uid"]:
                        found.append(int(entry))
                except OSError:
                    pass
            return found or [kernel]
        def _host_gone(fd=spec["watch_fd"]):
            try:
                while os.read(fd, 64):
                    pass
            except OSError:
                pass
            for _ in range(50):
                victims = [p for p in _victims() if p != os.getpid()]
                if not victims:
                    break
                for victim in victims:
                    try:
                        os.kill(victim, signal.SIGKILL)
                    except OSError:
                        pass
            os._exit(70)
        threading.Thread(target=_host_gone, daemon=True).start()
        code = os.waitstatus_to_exitcode(os.waitpid(kernel, 0)[1])
        if code < 0:
            signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
        os._exit(code & 0xFF)
    os.close(spec["watch_fd"])
    spec["watch_fd"] = None
for name, soft, hard in spec["limits"]:
    resource.setrlimit(getattr(resource, name), (soft, hard))
if spec["uid"] is not None:
    os.setgroups([])
    os.setgid(spec["uid"])
    os.setuid(spec["uid"])
if spec["watch_fd"] is not None:
    import threading
    def _exit_with_host(fd=spec["watch_fd"]):
        try:
            while os.read(fd, 64):
                pass
        except OSError:
            pass
        os._exit(70)
    threading.Thread(target=_exit_with_host, name="composite-host-watch", daemon=True).start()
if spec.get("max_chars"):
    # courtesy, not protection (the code can undo it; the host drops oversized messages): long
    # strings in outgoing messages are cut here, so that a big print still shows its beginning
    from jupyter_client.session import Session
    _send, _cap = Session.send, spec["max_chars"]
    def _cut(value):
        if isinstance(value, str) and len(value) > _cap:
            return value[:_cap] + "\\n[... %d characters not sent by the kernel]\\n" % (len(value) - _cap)
        if isinstance(value, dict):
            return {k: (v if k.startswith("image/") else _cut(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [_cut(v) for v in value]
        return value
    def _capped_send(self, stream, msg_or_type, content=None, *args, **kwargs):
        if isinstance(msg_or_type, dict) and isinstance(msg_or_type.get("content"), dict):
            msg_or_type = dict(msg_or_type, content=_cut(msg_or_type["content"]))
        return _send(self, stream, msg_or_type, _cut(content) if content is not None else None, *args, **kwargs)
    Session.send = _capped_send
os.chdir(spec["cwd"])
os.umask(0o022)
sys.argv = ["ipykernel_launcher", *spec["argv"]]
import runpy
runpy.run_module("ipykernel_launcher", run_name="__main__", alter_sys=True)
"""


def bootstrap_argv(
    python: str,
    limits: list[tuple[str, int, int]],
    uid: int | None,
    cwd: str,
    kernel_args: list[str],
    watch_fd: int | None = None,
    max_chars: int | None = None,
    supervise: bool = False,
    procs_file: str | None = None,
) -> list[str]:
    """The kernel command: the bootstrap with its spec. watch_fd: host_watch_fd(), passed to the
    kernel process (Popen pass_fds). supervise: fork a supervisor that kills the kernel's tree
    (procs_file: its cgroup's process list; else every process of uid) when the host dies."""
    spec = {
        "limits": limits,
        "uid": uid,
        "cwd": cwd,
        "argv": kernel_args,
        "watch_fd": watch_fd,
        "max_chars": max_chars,
        "supervise": supervise,
        "procs": procs_file,
    }
    return [python, "-I", "-c", _BOOTSTRAP, json.dumps(spec)]


_watch_pipe: tuple[int, int, int] | None = None  # (owner pid, read end, write end)
_watch_lock = threading.Lock()


def host_watch_fd() -> int:
    """The read end of this process's host-alive pipe (see the bootstrap); the write end stays
    open, non-inheritable, for the life of the process. Recreated in a forked child."""
    global _watch_pipe
    with _watch_lock:
        if _watch_pipe is None or _watch_pipe[0] != os.getpid():
            read_end, write_end = os.pipe()
            _watch_pipe = (os.getpid(), read_end, write_end)
        return _watch_pipe[1]


def exit_reason(returncode: int | None, via_bwrap: bool, cpu_seconds: int) -> str:
    """Explain a kernel exit status (bubblewrap reports death by signal N as exit code 128+N)."""
    if returncode is None:
        return "unknown cause"
    signum = None
    if returncode < 0:
        signum = -returncode
    elif via_bwrap and 128 < returncode < 128 + 65:
        signum = returncode - 128
    if signum is None:
        return f"exit code {returncode}"
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    hint = {
        signal.SIGKILL: f"probably out of memory, or the CPU-time limit of {cpu_seconds} s",
        signal.SIGSEGV: "segmentation fault",
        signal.SIGBUS: "bus error",
        signal.SIGABRT: "aborted",
        signal.SIGXCPU: f"CPU-time limit of {cpu_seconds} s reached",
        signal.SIGXFSZ: "file size limit exceeded",
    }.get(signum)
    return f"killed by signal {signum} ({name}{', ' + hint if hint else ''})"


class _Launcher:
    """One daemon thread that outlives its callers and spawns/signals every kernel.

    PR_SET_PDEATHSIG (bubblewrap's --die-with-parent) fires when the *thread* that spawned the
    process exits, and UI frameworks run callbacks in short-lived threads; this thread lives as
    long as the process. It also blocks SIGINT, which spawned processes inherit: bubblewrap then
    survives the SIGINT that jupyter_client sends to the whole process group to interrupt the
    kernel (the bootstrap unblocks it for the kernel itself)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="composite-sandbox-launcher", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        while True:
            fn, fut = self._queue.get()
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:  # handed to the calling thread, which re-raises it
                fut.set_exception(exc)

    def call(self, fn: Callable[[], T], timeout: float | None = None) -> T:
        if threading.current_thread() is self.thread:
            return fn()
        fut: Future[T] = Future()
        self._queue.put((fn, fut))
        try:
            return fut.result(timeout)
        except FutureTimeout:
            if fut.cancel():
                raise  # still queued: it will never run
            # already running: a spawn or a signal must not happen behind the caller's back
            return fut.result()


_launcher: _Launcher | None = None
_launcher_lock = threading.Lock()


def launcher_call(fn: Callable[[], T], timeout: float | None = None) -> T:
    """Run fn on the launcher thread (started on first use) and return its result."""
    global _launcher
    with _launcher_lock:
        if _launcher is None or not _launcher.thread.is_alive():
            _launcher = _Launcher()
        launcher = _launcher
    return launcher.call(fn, timeout)


def count_user_tasks(uid: int) -> int:
    """Tasks (threads) currently owned by uid: RLIMIT_NPROC counts them all, so in reduced mode
    without a separate uid the kernel's limit is set on top of what the user already runs."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", encoding="ascii", errors="replace") as fh:
                status = fh.read()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        try:
            if int(fields.get("Uid", "-1").split()[0]) == uid:
                total += int(fields.get("Threads", "1").strip())
        except ValueError:
            continue
    return total
