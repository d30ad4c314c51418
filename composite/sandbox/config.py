"""Sandbox settings: `SandboxConfig` (every limit and option in one place) and its parsing from
COMPOSITE_SANDBOX_* environment variables."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from typing import Any

from composite.errors import ConfigError
from composite.sandbox.cgroups import CgroupLimits
from composite.sandbox.isolation import Limits

__all__ = ["SandboxConfig", "ENV_PREFIX"]

ENV_PREFIX = "COMPOSITE_SANDBOX_"
_GiB = 2**30
_MiB = 2**20


@dataclass
class SandboxConfig:
    """Every sandbox setting in one place. `SandboxConfig()` is the defaults;
    `SandboxConfig.from_env(**overrides)` reads COMPOSITE_SANDBOX_<FIELD> (e.g.
    COMPOSITE_SANDBOX_MEMORY_BYTES=4G) and then applies the keyword overrides."""

    timeout: float = 60.0  # default seconds per execution
    interrupt_grace: float = 5.0  # seconds the kernel gets to answer SIGINT before a restart
    startup_timeout: float = 30.0
    memory_bytes: int = 2 * _GiB  # RLIMIT_AS per kernel process
    cpu_seconds: int = 3600  # RLIMIT_CPU per kernel process (its whole life)
    max_processes: int = 256  # RLIMIT_NPROC: processes + threads of the kernel's uid
    max_file_bytes: int = 1 * _GiB  # RLIMIT_FSIZE
    max_open_files: int = 1024  # RLIMIT_NOFILE
    tmp_bytes: int = 512 * _MiB  # size of the private /tmp
    max_output_chars: int = 200_000  # text kept per execution
    max_images: int = 50  # images kept per execution
    idle_timeout: float = 1800.0  # SandboxManager culls kernels idle this long
    prestart: int = 1  # SandboxManager keeps this many started spare kernels
    isolation: str = "auto"  # "auto" | "full" (fail without bubblewrap) | "reduced"
    bwrap: str = "bwrap"
    python: str = ""  # kernel interpreter; "" = this one (it needs ipykernel)
    kernel_uid: int | None = None  # as root: the kernel's uid; None = a fresh one per kernel
    base_dir: str = ""  # SandboxManager's sessions directory; "" = <tmp>/composite-sandboxes-<uid>
    runtime_dir: str = ""  # where kernel state (IPC sockets, logs) goes; "" = the system temp dir
    hide_paths: tuple[str, ...] = ()  # extra host directories to hide from the kernel
    # the whole kernel tree (cgroup): memory incl. shared memory and tmpfs (0: memory_bytes), CPU
    # time per second in cores (0: no quota); processes use max_processes
    tree_memory_bytes: int = 0
    cpu_cores: float = 1.0
    cgroup: str = "auto"  # "auto" (use one when we can) | "off"
    max_message_bytes: int = 32 * _MiB  # bigger kernel messages are dropped before they are held
    max_image_bytes: int = 20 * _MiB  # one image
    max_total_image_bytes: int = 64 * _MiB  # all images of one execution
    max_log_bytes: int = 1 * _MiB  # kernel log kept per launch (stdout/stderr of the process)
    keep_logs: int = 2  # kernel logs kept (the latest launches)

    def __post_init__(self) -> None:
        positive = (
            "timeout",
            "interrupt_grace",
            "startup_timeout",
            "memory_bytes",
            "cpu_seconds",
            "max_processes",
            "max_file_bytes",
            "max_open_files",
            "tmp_bytes",
            "max_output_chars",
            "idle_timeout",
            "max_message_bytes",
            "max_image_bytes",
            "max_total_image_bytes",
            "max_log_bytes",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"sandbox {name} must be positive, got {getattr(self, name)!r}")
        if self.prestart < 0 or self.max_images < 0 or self.tree_memory_bytes < 0 or self.cpu_cores < 0:
            raise ConfigError("sandbox prestart, max_images, tree_memory_bytes and cpu_cores must be 0 or more")
        if self.keep_logs < 1:
            raise ConfigError(f"sandbox keep_logs must be 1 or more, got {self.keep_logs!r}")
        if self.cgroup not in ("auto", "off"):
            raise ConfigError(f"sandbox cgroup must be 'auto' or 'off', got {self.cgroup!r}")
        if self.isolation not in ("auto", "full", "reduced"):
            raise ConfigError(
                f"sandbox isolation must be 'auto', 'full' or 'reduced', got {self.isolation!r}"
            )
        self.hide_paths = tuple(self.hide_paths)

    @property
    def cgroup_limits(self) -> CgroupLimits:
        return CgroupLimits(
            self.tree_memory_bytes or self.memory_bytes,
            self.max_processes + 8,  # bubblewrap, its init and the joining shell
            self.cpu_cores,
        )

    @property
    def limits(self) -> Limits:
        return Limits(
            self.memory_bytes, self.cpu_seconds, self.max_processes, self.max_file_bytes, self.max_open_files
        )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> SandboxConfig:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = ENV_PREFIX + f.name.upper()
            if f.name in overrides or key not in env:
                continue
            values[f.name] = _parse_env_value(f.name, cls.__dataclass_fields__[f.name].default, env[key], key)
        values.update(overrides)
        return cls(**values)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.I)


def _parse_env_value(name: str, default: Any, raw: str, key: str) -> Any:
    try:
        if name == "kernel_uid":
            return int(raw) if raw.strip() else None
        if name == "hide_paths":
            return tuple(p for p in raw.split(os.pathsep) if p)
        if isinstance(default, bool):
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            match = _SIZE.match(raw)
            if not match:
                raise ValueError(raw)
            scale = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}[match.group(2).lower()]
            return int(float(match.group(1)) * scale)
        if isinstance(default, float):
            return float(raw)
        return raw
    except ValueError:
        raise ConfigError(
            f"{key}={raw!r} is not a valid {type(default).__name__} (expected e.g. {default!r})"
        ) from None
