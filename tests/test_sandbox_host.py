"""Adversarial tests of the sandbox's host side (issue 10): code written to attack the app, not
the kernel. Each attacks through the Sandbox/SandboxManager API a session uses and ends with an
assertion about the host: nothing read, nothing left running, memory bounded, files removed."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import composite
from composite.errors import SandboxError
from composite.sandbox import Sandbox, SandboxConfig, SandboxManager, cleanup_stale_state
from composite.sandbox.cgroups import probe as cgroup_probe
from composite.sandbox.isolation import probe_bwrap

BWRAP_OK, BWRAP_WHY = probe_bwrap("bwrap")
CGROUP_OK, CGROUP_WHY = cgroup_probe()
needs_full = pytest.mark.skipif(
    not (BWRAP_OK and CGROUP_OK), reason=f"full isolation unavailable: {BWRAP_WHY or CGROUP_WHY}"
)
PROJECT_DIR = Path(composite.__file__).resolve().parents[1]
MiB = 2**20


def cfg(**overrides) -> SandboxConfig:
    base = dict(prestart=0, timeout=30.0, interrupt_grace=3.0, startup_timeout=60.0, max_processes=64)
    base.update(overrides)
    return SandboxConfig(**base)


@pytest.fixture(scope="module")
def sb():
    sandbox = Sandbox(config=cfg())
    sandbox.start()
    yield sandbox
    sandbox.shutdown()


def processes_of_uid(uid: int | None) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    found.append(int(entry))
            except OSError:
                continue
    return found


def peak_rss_reset() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM, the peak resident size


def peak_rss() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


# ------------------------------------------------------------------ class 2: outliving the app
_ATTACK = """
import os, signal, subprocess, sys, time
os._exit = lambda *a: None  # the old host watch looked os._exit up when it fired
for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGPIPE):
    signal.signal(s, signal.SIG_IGN)
daemon = "import signal, time\\nfor s in (1, 2, 13, 15): signal.signal(s, signal.SIG_IGN)\\ntime.sleep(600)"
subprocess.Popen([sys.executable, "-c", daemon], start_new_session=True)  # a daemon of its own
time.sleep(0.5)
print("armed")
"""

_HOST_SCRIPT = """
import os, signal, sys
from composite.sandbox import Sandbox, SandboxConfig
sandbox = Sandbox(config=SandboxConfig(prestart=0, startup_timeout=60, isolation=sys.argv[2]))
result = sandbox.execute(sys.argv[1])
assert "armed" in result.text(), result
pids = open(sandbox._cgroup.procs_files[0]).read().split()  # every process of the kernel's tree
print(sandbox.status().workdir, *pids, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def alive(pids: list[int]) -> list[int]:
    left = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                    left.append(pid)
        except OSError:
            continue
    return left


@pytest.mark.skipif(not CGROUP_OK, reason=f"no cgroup to list the kernel's processes: {CGROUP_WHY}")
@pytest.mark.parametrize("isolation", ["full", "reduced"])
def test_a_killed_app_leaves_no_sandbox_process_even_if_the_code_patches_os_exit(isolation):
    if isolation == "full" and not BWRAP_OK:
        pytest.skip(f"bubblewrap cannot run here: {BWRAP_WHY}")
    env = {**os.environ, "PYTHONPATH": str(PROJECT_DIR)}
    proc = subprocess.run(
        [sys.executable, "-c", _HOST_SCRIPT, _ATTACK, isolation],
        capture_output=True, text=True, env=env, timeout=180,
    )
    assert proc.returncode == -9, proc.stderr
    workdir, *pid_texts = proc.stdout.split()
    pids = [int(p) for p in pid_texts]
    assert len(pids) >= 2  # at least the kernel and the daemon it started
    deadline = time.monotonic() + 10
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = alive(pids)
    for pid in left:  # do not leave them behind, then fail
        os.kill(pid, 9)
    assert not left, "sandbox processes outlived the killed app"
    # the janitor removes what the dead app left on disk, cgroups included
    assert cleanup_stale_state() >= 1
    assert not Path(workdir).exists()


# ------------------------------------------------------------------ class 3: memory beyond limit
@needs_full
def test_shared_memory_and_user_namespaces_cannot_pass_the_tree_limit():
    limit = 256 * MiB
    sandbox = Sandbox(config=cfg(tree_memory_bytes=limit))
    peak: list[int] = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            used = sandbox.tree_memory_bytes()
            if used:
                peak[0] = max(peak[0], used)
            time.sleep(0.01)

    try:
        sandbox.start()
        assert sandbox.status().isolation == "full"
        # a user namespace would let the code mount a tmpfs of its own: refused
        userns = sandbox.execute(
            "import ctypes, subprocess\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "print(libc.unshare(0x10000000), ctypes.get_errno())\n"
            "print(subprocess.run(['unshare', '-Urm', 'true']).returncode)\n"
        )
        assert userns.text(("stdout",)).split() == ["-1", "1", "1"], userns.outputs
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        # memfd memory is not address space (RLIMIT_AS does not see it): 600 MiB of it
        result = sandbox.execute(
            "import os\n"
            "fd = os.memfd_create('hold')\n"
            "chunk = b'x' * (16 << 20)\n"
            "for _ in range(600 // 16):\n"
            "    os.write(fd, chunk)\n"
            "print('held 600 MiB')\n",
            timeout=60,
        )
        stop.set()
        watcher.join()
        assert result.status == "died" and "held" not in result.text(), (result.status, result.message)
        assert "memory" in result.message
        assert 0 < peak[0] <= limit  # the host-side view: the whole tree never got past the limit
        assert sandbox.execute("print(1 + 1)").text() == "2\n"  # restarted and usable
    finally:
        stop.set()
        sandbox.shutdown()


def test_without_cgroups_the_status_says_reduced(monkeypatch):
    monkeypatch.setattr("composite.sandbox.kernel.cgroup_probe", lambda: (False, "test: no cgroup access"))
    sandbox = Sandbox(config=cfg())
    try:
        status = sandbox.status()
        if BWRAP_OK:
            assert status.isolation == "reduced"
            assert "no cgroup" in status.isolation_note and "test: no cgroup access" in status.detail
    finally:
        sandbox.shutdown()
    with pytest.raises(SandboxError, match="no cgroup|bubblewrap"):
        Sandbox(config=cfg(isolation="full"))


# ------------------------------------------------------------------ class 4: holding what is sent
def test_the_host_holds_only_bounded_messages_outputs_and_images():
    sandbox = Sandbox(config=cfg(max_message_bytes=8 * MiB, max_total_image_bytes=4 * MiB, max_images=50))
    try:
        sandbox.start()
        peak_rss_reset()
        before = peak_rss()
        # a 60 MB display_data and a 60 MB exception, sent past the kernel's own courtesy cut
        huge = sandbox.execute(
            "from jupyter_client.session import Session\n"
            "Session.send = Session.send.__globals__['_send']  # undo the kernel-side courtesy cut\n"
            "from IPython.display import publish_display_data\n"
            "publish_display_data({'text/plain': 'd' * 60_000_000})\n"
            "raise ValueError('e' * 60_000_000)\n",
            timeout=120,
        )
        assert huge.status == "error"
        assert "dropped" in huge.text()  # said, not silently lost
        # fifty 1 MiB images: only 4 MiB of them are kept
        images = sandbox.execute(
            "import base64, os\n"
            "from IPython.display import display, Image\n"
            "png = b'\\x89PNG\\r\\n\\x1a\\n' + os.urandom(1 << 20)\n"
            "for _ in range(50):\n"
            "    display(Image(data=png, format='png'))\n"
        )
        assert sum(len(o.data) for o in images.images) <= 4 * MiB
        assert "images were not kept" in images.text()
        grown = peak_rss() - before
        assert grown < 100 * MiB, f"the app grew by {grown / MiB:.0f} MiB"
        assert sandbox.execute("print(1 + 1)").text() == "2\n"
    finally:
        sandbox.shutdown()


# ------------------------------------------------------------------ class 1: links, through the API
def test_flipping_a_file_and_a_link_never_lets_the_host_read_the_target(sb, tmp_path):
    secret = tmp_path / "root-only.txt"
    secret.write_text("HOST-SECRET")
    secret.chmod(0o600)
    sb.execute(
        "import os, threading\n"
        "def flip():\n"
        "    for _ in range(20000):\n"
        "        for make in (lambda: open('flip.txt', 'w').write('mine'),\n"
        f"                     lambda: os.symlink({str(secret)!r}, 'flip.txt')):\n"
        "            try:\n"
        "                os.unlink('flip.txt')\n"
        "            except FileNotFoundError:\n"
        "                pass\n"
        "            make()\n"
        "threading.Thread(target=flip, daemon=True).start()\n"
    )
    seen = set()
    for _ in range(500):
        try:
            seen.add(sb.read_file("flip.txt"))
        except SandboxError:
            seen.add("refused")
        listed = [f.path for f in sb.list_files()]
        assert all(not name.startswith("root-only") for name in listed)
    assert b"HOST-SECRET" not in seen
    assert seen & {b"mine", "refused"}  # the race ran: the host saw the file or refused the link
    sb.restart()  # stop the flipping thread


# ------------------------------------------------------------------ class 5: deep trees, janitor
def test_the_janitor_removes_a_dead_hosts_deep_tree(tmp_path):
    state = tmp_path / "composite-sandbox-dead"
    (state / "work").mkdir(parents=True)
    (state / "owner").write_text("999999999 1")  # no such process: its host died
    here = os.getcwd()
    try:
        os.chdir(state / "work")
        for _ in range(1500):  # deeper than any recursive walk survives
            os.mkdir("d")
            os.chdir("d")
        Path("bottom.txt").write_text("deep")
    finally:
        os.chdir(here)
    assert cleanup_stale_state(str(tmp_path)) == 1
    assert not state.exists()


# ------------------------------------------------------------------ class 7: kernel logs
def test_kernel_logs_are_capped_and_rotated():
    sandbox = Sandbox(config=cfg(max_log_bytes=64 * 1024, keep_logs=2))
    try:
        for _ in range(3):
            result = sandbox.execute("import os\nfor _ in range(64):\n    os.write(2, b'x' * (1 << 20))\n")
            assert result.status == "ok"
            sandbox.restart()
        logs = sandbox.log_files
        assert len(logs) == 2  # three launches before this one: only the latest two stay
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "log cut" not in logs[0].read_text(errors="replace"):
            time.sleep(0.1)
        sizes = [p.stat().st_size for p in logs]
        assert all(size < 64 * 1024 + 200 for size in sizes), sizes  # 64 MiB written: 64 KiB kept
        assert "log cut" in logs[0].read_text(errors="replace")
    finally:
        sandbox.shutdown()
