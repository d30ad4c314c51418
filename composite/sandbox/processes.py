"""Process helpers of the local kernel: process identity (pid + start time), killing and reaping
a bubblewrap'd kernel, and the janitor that removes what host processes killed by SIGKILL left."""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from composite.sandbox.cgroups import kill_stale
from composite.sandbox.files import remove_tree

__all__ = ["LogPump", "STATE_PREFIX", "process_identity", "cleanup_stale_state", "kill_process", "only_child", "wait_gone"]

logger = logging.getLogger("composite.sandbox")

STATE_PREFIX = "composite-sandbox-"


def process_identity(pid: int) -> str | None:
    """pid plus its start time: survives pid reuse."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            start = fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
    return f"{pid} {start}"


def _owned_by_us(path: Path, kind: Any) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return bool(kind(st.st_mode)) and st.st_uid == os.geteuid()


def cleanup_stale_state(runtime_dir: str | None = None) -> int:
    """Remove sandbox state directories (and their own workdirs) left behind by host processes
    that died without shutting down (e.g. SIGKILL); returns how many were removed."""
    parent = Path(runtime_dir or tempfile.gettempdir())
    removed = 0
    try:
        candidates = [p for p in parent.iterdir() if p.name.startswith(STATE_PREFIX)]
    except OSError:
        return 0
    for state in candidates:
        # trust only what this user created: anyone can make a directory in /tmp
        if not _owned_by_us(state, stat.S_ISDIR):
            continue
        try:
            if not _owned_by_us(state / "owner", stat.S_ISREG):
                continue
            owner = (state / "owner").read_text(encoding="ascii").strip()
            pid = int(owner.split()[0])
        except (OSError, ValueError, IndexError):
            continue  # not ours, or still being set up
        if process_identity(pid) != owner:
            # first whatever still runs in the dead host's kernel cgroups (background processes)
            for note in state.glob("cgroup-*"):
                if _owned_by_us(note, stat.S_ISREG):
                    try:
                        kill_stale(note.read_text(encoding="utf-8"))
                    except OSError:
                        continue
            workdir = ""
            if _owned_by_us(state / "remove-workdir", stat.S_ISREG):
                workdir = (state / "remove-workdir").read_text(encoding="utf-8").strip()
            if workdir and not remove_tree(workdir):
                continue  # keep the marker: the next janitor tries again
            # the owner marker goes last: a removal cut short is retried by the next janitor
            if not remove_tree(state, keep_last="owner"):
                continue
            removed += 1
    return removed


def kill_process(proc: Any, inner: int | None) -> None:
    """SIGKILL a kernel and wait for it. The sandboxed kernel goes first so that bubblewrap reaps
    it; killing both at once (as jupyter_client's process-group kill does) leaves the kernel a
    zombie for the host's init. Then the whole process group, for whatever is left."""
    if proc is None or proc.poll() is not None:
        return
    if inner is not None:
        try:
            os.kill(inner, signal.SIGKILL)
            proc.wait(3)
            return
        except (OSError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        logger.warning("kernel process %s did not exit after SIGKILL", proc.pid)


def only_child(pid: int) -> int | None:
    """The pid of the single child of pid (bubblewrap's sandboxed process), if known."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as fh:
            children = fh.read().split()
    except OSError:
        return None
    return int(children[0]) if len(children) == 1 else None


def wait_gone(pid: int, timeout: float) -> None:
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
                state = fh.read().rsplit(")", 1)[-1].split()[0]
        except OSError:
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.01)


class LogPump:
    """Copies a kernel's stdout/stderr pipe into its log file, keeping at most max_bytes (then one
    note with the count of what was dropped); the pipe is always drained, so a flood of output on
    fd 2 neither blocks the kernel nor fills the host's disk."""

    def __init__(self, read_fd: int, path: Path, max_bytes: int) -> None:
        self.read_fd, self.path, self.max_bytes = read_fd, path, max_bytes
        self.dropped = 0

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="composite-sandbox-log", daemon=True)
        thread.start()
        return thread

    def _run(self) -> None:
        written = 0
        try:
            with open(self.path, "wb") as log:
                while chunk := os.read(self.read_fd, 65536):
                    room = self.max_bytes - written
                    if room > 0:
                        log.write(chunk[:room])
                        log.flush()
                        written += min(room, len(chunk))
                    self.dropped += max(0, len(chunk) - max(room, 0))
                if self.dropped:
                    log.write(f"\n[log cut: {self.dropped} more bytes were not kept]\n".encode())
        except OSError as exc:
            logger.debug("kernel log %s: %s", self.path, exc)
        finally:
            os.close(self.read_fd)
