"""Control groups for a kernel's whole process tree: memory (shared memory and tmpfs included),
process count and CPU share, and killing the tree as a whole. cgroup v2 where the unified
hierarchy has the controllers, v1 (memory, pids, cpu) otherwise; `probe()` says why not."""

from __future__ import annotations

import errno
import os
import secrets
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CgroupLimits", "KernelCgroup", "probe", "kill_stale"]

_ROOT = Path("/sys/fs/cgroup")
_PREFIX = "composite-sandbox-"
_V1_CONTROLLERS = ("memory", "pids", "cpu")
_CPU_PERIOD_US = 100_000


@dataclass(frozen=True)
class CgroupLimits:
    memory_bytes: int  # the whole tree's memory, page cache, shared memory and tmpfs included
    max_processes: int  # tasks (processes and threads) of the whole tree
    cpu_cores: float  # CPU time per wall second, in cores (0: no quota)


def _own_paths() -> dict[str, str]:
    """controller (or "" for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    found: dict[str, str] = {}
    with open("/proc/self/cgroup", encoding="ascii", errors="replace") as fh:
        for line in fh:
            parts = line.rstrip("\n").split(":", 2)
            if len(parts) != 3:
                continue
            for controller in parts[1].split(",") if parts[1] else [""]:
                found[controller] = parts[2]
    return found


def _v1_mounts() -> dict[str, Path]:
    """v1 controller -> its mount point, from /proc/self/mountinfo."""
    mounts: dict[str, Path] = {}
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fields = right.split()
            if len(fields) < 3 or fields[0] != "cgroup":
                continue
            for option in fields[2].split(","):
                if option in _V1_CONTROLLERS and option not in mounts:
                    mounts[option] = Path(left.split()[4])
    return mounts


def _parents() -> tuple[int, dict[str, Path]]:
    """(version, controller -> directory in which a kernel's cgroup is made)."""
    own = _own_paths()
    unified = _ROOT / "cgroup.controllers"
    if unified.is_file() and "" in own and len(own) == 1:
        base = _ROOT / own[""].lstrip("/")
        return 2, {"": base}
    mounts = _v1_mounts()
    parents = {}
    for controller in _V1_CONTROLLERS:
        if controller in mounts and controller in own:
            parents[controller] = mounts[controller] / own[controller].lstrip("/")
    return 1, parents


def _write(path: Path, value: str) -> None:
    with open(path, "w", encoding="ascii") as fh:
        fh.write(value)


class CgroupUnavailable(OSError):
    """No usable cgroup for kernels here (the reason is the message)."""


class KernelCgroup:
    """One kernel's cgroup(s): created with limits, joined by the kernel command's first process
    (see join_argv), killed as a whole, removed."""

    def __init__(self, version: int, dirs: dict[str, Path]) -> None:
        self.version = version
        self.dirs = dirs

    @classmethod
    def create(cls, limits: CgroupLimits, name: str | None = None) -> KernelCgroup:
        version, parents = _parents()
        name = name or f"{_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        if version == 2:
            parent = parents[""]
            wanted = {"memory", "pids", "cpu"}
            try:
                available = set((parent / "cgroup.controllers").read_text().split())
                missing = wanted - available
                if missing:
                    raise CgroupUnavailable(f"cgroup v2 controllers {sorted(missing)} are not enabled for {parent}")
                enabled = set((parent / "cgroup.subtree_control").read_text().split())
                if wanted - enabled:
                    _write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in sorted(wanted - enabled)))
                path = parent / name
                path.mkdir()
            except OSError as exc:
                raise CgroupUnavailable(f"cannot create a cgroup under {parent}: {exc}") from exc
            group = cls(2, {"": path})
        else:
            missing = [c for c in _V1_CONTROLLERS if c not in parents]
            if missing:
                raise CgroupUnavailable(f"cgroup v1 controllers {missing} are not mounted")
            made: dict[str, Path] = {}
            try:
                for controller, parent in parents.items():
                    path = parent / name
                    path.mkdir()
                    made[controller] = path
            except OSError as exc:
                cls(1, made).remove()
                raise CgroupUnavailable(f"cannot create a cgroup under {parents[controller]}: {exc}") from exc
            group = cls(1, made)
        try:
            group._apply(limits)
        except OSError as exc:
            group.remove()
            raise CgroupUnavailable(f"cannot set cgroup limits: {exc}") from exc
        return group

    def _apply(self, limits: CgroupLimits) -> None:
        if self.version == 2:
            path = self.dirs[""]
            _write(path / "memory.max", str(limits.memory_bytes))
            if (path / "memory.swap.max").exists():
                _write(path / "memory.swap.max", "0")
            _write(path / "pids.max", str(limits.max_processes))
            if limits.cpu_cores > 0:
                _write(path / "cpu.max", f"{int(limits.cpu_cores * _CPU_PERIOD_US)} {_CPU_PERIOD_US}")
            return
        memory = self.dirs["memory"]
        _write(memory / "memory.limit_in_bytes", str(limits.memory_bytes))
        memsw = memory / "memory.memsw.limit_in_bytes"
        if memsw.exists():
            try:
                _write(memsw, str(limits.memory_bytes))  # no escape into swap
            except OSError:
                pass  # swap accounting off: there is no swap use to limit
        _write(self.dirs["pids"] / "pids.max", str(limits.max_processes))
        cpu = self.dirs["cpu"]
        _write(cpu / "cpu.cfs_period_us", str(_CPU_PERIOD_US))
        if limits.cpu_cores > 0:
            _write(cpu / "cpu.cfs_quota_us", str(int(limits.cpu_cores * _CPU_PERIOD_US)))

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs.values()]

    def join_argv(self, argv: list[str]) -> list[str]:
        """argv run by a shell that first moves itself into every cgroup of the kernel, so that
        everything it becomes and starts is inside before any code runs."""
        files = self.procs_files
        script = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 97; shift; n=$((n-1)); done; exec "$@"'
        return ["/bin/sh", "-c", script, "composite-cgroup-join", str(len(files)), *files, *argv]

    def pids(self) -> list[int]:
        path = next(iter(self.dirs.values())) / "cgroup.procs"
        try:
            return [int(x) for x in path.read_text().split()]
        except (OSError, ValueError):
            return []

    def memory_bytes(self) -> int | None:
        """Current memory use of the whole tree."""
        name = "memory.current" if self.version == 2 else "memory.usage_in_bytes"
        path = self.dirs.get("" if self.version == 2 else "memory")
        try:
            return int((path / name).read_text()) if path is not None else None
        except (OSError, ValueError):
            return None

    def memory_events(self) -> int:
        """How often the tree hit its memory limit (v1 failcnt, v2 "max" events)."""
        try:
            if self.version == 2:
                for line in (self.dirs[""] / "memory.events").read_text().splitlines():
                    if line.startswith("oom_kill "):
                        return int(line.split()[1])
                return 0
            return int((self.dirs["memory"] / "memory.failcnt").read_text())
        except (OSError, ValueError, KeyError):
            return 0

    def kill_all(self, timeout: float = 5.0) -> bool:
        """SIGKILL every process of the tree (v2: cgroup.kill; v1: repeatedly, so that a process
        forked meanwhile is caught too); True when none is left."""
        until = time.monotonic() + timeout
        if self.version == 2:
            try:
                _write(self.dirs[""] / "cgroup.kill", "1")
            except OSError:
                pass
        while True:
            pids = self.pids()
            if not pids:
                return True
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            if time.monotonic() > until:
                return False
            time.sleep(0.01)

    def remove(self) -> bool:
        """Remove the (emptied) cgroup directories; a dying process may hold one for a moment."""
        ok = True
        for path in self.dirs.values():
            for _ in range(100):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        ok = False
                        break
                    time.sleep(0.02)
            else:
                ok = False
        return ok

    def to_lines(self) -> str:
        """How the janitor finds it again (one directory per line)."""
        return "".join(f"{d}\n" for d in self.dirs.values())


def kill_stale(lines: str) -> None:
    """Kill and remove a cgroup recorded by to_lines() (a dead host's kernel)."""
    dirs = {}
    for line in lines.splitlines():
        path = Path(line.strip())
        # only our own cgroups, only under the cgroup filesystem
        if path.name.startswith(_PREFIX) and _ROOT in path.parents:
            dirs[str(len(dirs))] = path
    if dirs:
        group = KernelCgroup(2 if len(dirs) == 1 else 1, dirs)
        group.kill_all()
        group.remove()


_probe_lock = threading.Lock()
_probe_result: tuple[bool, str] | None = None


def probe() -> tuple[bool, str]:
    """Whether kernels can get a cgroup here (tried once): (works, reason-if-not)."""
    global _probe_result
    with _probe_lock:
        if _probe_result is None:
            try:
                group = KernelCgroup.create(CgroupLimits(2**30, 64, 1.0))
            except (CgroupUnavailable, OSError) as exc:
                _probe_result = (False, str(exc))
            else:
                group.remove()
                _probe_result = (True, "")
        return _probe_result
