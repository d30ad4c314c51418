"""Sandbox settings: `SandboxConfig` (every limit and option in one place) and its parsing from
COMPOSITE_SANDBOX_* environment variables."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from typing import Any

from composite.errors import ConfigError
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
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"sandbox {name} must be positive, got {getattr(self, name)!r}")
        if self.prestart < 0 or self.max_images < 0:
            raise ConfigError("sandbox prestart and max_images must be 0 or more")
        if self.isolation not in ("auto", "full", "reduced"):
            raise ConfigError(
                f"sandbox isolation must be 'auto', 'full' or 'reduced', got {self.isolation!r}"
            )
        self.hide_paths = tuple(self.hide_paths)

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
