"""The sandbox's bubblewrap command line (composite.sandbox.isolation.bwrap_argv), checked by what a process
started with it can see and do: one real bubblewrap run per layout, each protection asserted from inside."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from composite.sandbox.isolation import bwrap_argv


def _bwrap_runs() -> bool:
    # checked with a minimal command line of our own, not the code under test (a broken argument
    # builder must fail these tests, not skip them)
    if shutil.which("bwrap") is None:
        return False
    trial = ["bwrap", "--unshare-net", "--unshare-pid", "--ro-bind", "/", "/", "--proc", "/proc", "true"]
    return subprocess.run(trial, capture_output=True, timeout=60, check=False).returncode == 0


pytestmark = pytest.mark.skipif(not _bwrap_runs(), reason="bubblewrap is missing or cannot create namespaces here")
AS_ROOT = os.geteuid() == 0
KERNEL_UID = 1_900_000_123  # an unprivileged uid, as allocate_uid hands out (root only: it switches to it)
MiB = 2**20


def _run(argv: list[str], script: str, as_uid: int | None = None) -> dict[str, str]:
    """Run `sh -c script` in the sandbox (optionally after switching to as_uid, as the bootstrap does);
    the script prints `key=value` lines."""
    command = ["sh", "-c", script]
    if as_uid is not None:
        command = ["setpriv", f"--reuid={as_uid}", f"--regid={as_uid}", "--clear-groups", *command]
    proc = subprocess.run([*argv, "--", *command], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "JPY_PARENT_PID": str(os.getpid())})
    assert proc.returncode == 0, proc.stderr
    return dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)


@pytest.fixture
def tree():
    """A directory outside /tmp (which the sandbox replaces anyway), private to root like a home directory."""
    base = Path(tempfile.mkdtemp(prefix="composite-isolation-", dir="/var/tmp"))  # mode 0700
    try:
        for name in ("data", "data/out", "work", "secret", "secretive", "other"):
            (base / name).mkdir()
        for name in ("data/f", "secret/key", "secretive/key", "other/file"):
            (base / name).write_text(name)
        (base / "data").chmod(0o755)
        (base / "data" / "f").chmod(0o644)
        yield base
    finally:
        shutil.rmtree(base)


STATE = (
    'echo host=$(cat /proc/sys/kernel/hostname); echo pid=$$; echo jpy=${JPY_PARENT_PID-unset}; '
    'echo net=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " " | tr "\\n" ,); '
    'echo caps=$(grep CapEff /proc/self/status | cut -f2); '
    'echo tmp=$(ls -A /tmp | wc -l),$(stat -f -c %b,%S /tmp),$(stat -c %a /tmp); '
    'echo shm=$(stat -f -c %b,%S /dev/shm),$(stat -c %a /dev/shm); '
    'touch /usr/composite-probe 2>/dev/null && echo root_fs=writable || echo root_fs=read-only; '
)


def test_namespaces_tmp_environment_and_capabilities(tree):
    marker = Path("/tmp") / f"composite-host-only-{os.getpid()}"
    marker.write_text("host")
    try:
        argv = bwrap_argv("bwrap", ro_paths=[], rw_paths=[], hide=[], tmp_bytes=2 * MiB, drop_to_uid=False)
        state = _run(argv, STATE)
    finally:
        marker.unlink()
    assert state["host"] == "sandbox"  # own UTS namespace, fixed name
    assert state["net"] == "lo,"  # own network namespace: loopback only
    assert int(state["pid"]) < 10  # own PID namespace
    assert state["jpy"] == "unset"  # the kernel does not watch our pid
    assert state["tmp"] == f"0,{2 * MiB // 4096},4096,1777"  # a fresh, size-limited, sticky /tmp
    assert state["shm"] == f"{2 * MiB // 4096},4096,1777"  # /dev/shm is no way around the /tmp limit
    assert state["root_fs"] == "read-only"
    if AS_ROOT:
        assert int(state["caps"], 16) == 0  # no uid switch: nothing kept
    argv = bwrap_argv("bwrap", ro_paths=[], rw_paths=[], hide=[], tmp_bytes=256 * MiB, drop_to_uid=True)
    state = _run(argv, STATE)
    assert state["shm"] == f"{64 * MiB // 4096},4096,1777"  # /dev/shm at most 64 MiB
    if AS_ROOT:
        assert int(state["caps"], 16) == (1 << 6) | (1 << 7)  # only CAP_SETGID and CAP_SETUID, to switch uid


def test_read_only_writable_and_hidden_paths(tree):
    data, out, work = tree / "data", tree / "data" / "out", tree / "work"
    argv = bwrap_argv("bwrap", ro_paths=[str(data)], rw_paths=[str(work), str(out)], hide=[str(tree / "secret")],
                      tmp_bytes=MiB, drop_to_uid=False)
    state = _run(argv, (
        f'echo data=$(cat {data}/f); touch {data}/x 2>/dev/null && echo ro=writable || echo ro=read-only; '
        f'touch {work}/x && echo work=writable; touch {out}/x && echo out=writable; '
        f'echo secret=$(ls -A {tree}/secret | wc -l),$(stat -f -c %b,%S {tree}/secret); '
        f'echo secretive=$(ls -A {tree}/secretive | wc -l); echo other=$(cat {tree}/other/file)'))
    assert state == {"data": "data/f", "ro": "read-only", "work": "writable", "out": "writable",
                     "secret": "0,256,4096", "secretive": "1", "other": "other/file"}  # hidden: an empty 1 MiB tmpfs
    assert (work / "x").exists() and (out / "x").exists()  # written through to the host


def test_an_unprivileged_kernel_uid_reaches_its_paths_through_a_private_parent(tree):
    """The tree is 0700 root: for the kernel uid it is replaced by an empty 0755 tmpfs in which only the
    needed paths are bound back; nothing else of it (other, secret) is visible."""
    if not AS_ROOT:
        pytest.skip("needs root to switch to the kernel uid")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    work = tree / "nest" / "work"  # two private levels deep: the level between is recreated 0755
    work.mkdir(parents=True)
    os.chown(work, KERNEL_UID, KERNEL_UID)
    argv = bwrap_argv("bwrap", ro_paths=[str(tree / "data")], rw_paths=[str(work)], hide=[], tmp_bytes=MiB,
                      drop_to_uid=True)
    state = _run(argv, (
        f'echo data=$(cat {tree}/data/f); touch {work}/x && echo work=writable; '
        f'echo listing=$(ls -A {tree} | tr "\\n" ,); '
        f'cat {tree}/other/file 2>/dev/null && echo other=visible || echo other=hidden; '
        f'echo var=$(ls -A /var | wc -l)'), as_uid=KERNEL_UID)
    assert state.pop("var") == str(len(os.listdir("/var")))  # parents the uid can pass through stay as they are
    assert state == {"data": "data/f", "work": "writable", "listing": "data,nest,", "other": "hidden"}


def test_hiding_is_exact_about_path_prefixes(tree):
    """Hiding `secret` must not spare `secretive`, and a hidden directory inside another stays hidden."""
    hide = [str(tree / "secret"), str(tree / "secretive"), str(tree / "secret"), str(tree / "other" / "file")]
    argv = bwrap_argv("bwrap", ro_paths=[], rw_paths=[], hide=hide + [str(tree / "secret" / "inner")],
                      tmp_bytes=MiB, drop_to_uid=False)
    state = _run(argv, f'echo secret=$(ls -A {tree}/secret | wc -l); echo secretive=$(ls -A {tree}/secretive | wc -l); '
                       f'echo other=$(cat {tree}/other/file)')
    assert state == {"secret": "0", "secretive": "0", "other": "other/file"}  # a file is not a directory to hide


def test_paths_that_cannot_be_mounted_are_left_out_instead_of_failing_the_start(tree):
    """Hiding / would blank the sandbox, and a missing path would make bubblewrap refuse to start."""
    argv = bwrap_argv("bwrap", ro_paths=[str(tree / "missing")], rw_paths=[str(tree / "gone")],
                      hide=["/", str(tree / "absent")], tmp_bytes=MiB, drop_to_uid=False)
    assert _run(argv, "echo shell=works") == {"shell": "works"}


def test_nothing_under_tmp_is_hidden_and_a_workdir_there_is_reachable(tmp_path):
    """/tmp is already a fresh tmpfs in the sandbox; a workdir under it is bound back through 0755 parents."""
    work = tmp_path / "deep" / "work"
    work.mkdir(parents=True)
    (work / "in.txt").write_text("input")
    argv = bwrap_argv("bwrap", ro_paths=[], rw_paths=[str(work)], hide=[str(tmp_path / "deep")], tmp_bytes=MiB,
                      drop_to_uid=False)
    assert not any(a == "--tmpfs" and b.startswith(str(tmp_path)) for a, b in zip(argv, argv[1:]))
    state = _run(argv, f'echo read=$(cat {work}/in.txt); echo mode=$(stat -c %a {work.parent}),$(stat -c %a /tmp)')
    assert state == {"read": "input", "mode": "755,1777"}


def test_the_command_line_never_lets_the_code_replace_the_sandbox_init():
    argv = bwrap_argv("/usr/bin/bwrap", ro_paths=[], rw_paths=[], hide=[], tmp_bytes=MiB, drop_to_uid=True,
                      seccomp_fd=7)
    assert argv[0] == "/usr/bin/bwrap"
    assert "--as-pid-1" not in argv  # bubblewrap's init stays PID 1 and takes the tree down with it
    for flag in ("--die-with-parent", "--unshare-ipc", "--unshare-cgroup-try"):
        assert flag in argv
    assert argv[argv.index("--seccomp") + 1] == "7"
    assert "--seccomp" not in bwrap_argv("bwrap", ro_paths=[], rw_paths=[], hide=[], tmp_bytes=MiB,
                                         drop_to_uid=True)
