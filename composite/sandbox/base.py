"""The executor interface the agent, the pages and the CLI are typed against (`Executor`), its
status (`ExecutorStatus`), and what is written against the interface only (`run_exec_cli`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

from composite.errors import ConfigError, SandboxError
from composite.sandbox.files import WorkFile
from composite.sandbox.outputs import ExecutionResult, Output

__all__ = ["Executor", "ExecutorStatus", "ISOLATION_LEVELS", "SandboxStartError", "run_exec_cli"]


class SandboxStartError(SandboxError):
    """The sandboxed kernel could not be started (or restarted)."""

#: "full": bubblewrap namespaces + cgroup limits on this host; "reduced": some protections missing
#: here (the note says which); "remote": isolation is the remote gateway's, not ours
ISOLATION_LEVELS = ("full", "reduced", "remote")


@dataclass(frozen=True)
class ExecutorStatus:
    """What protects an executor's code and what state it is in, for people and for tests."""

    isolation: str  # one of ISOLATION_LEVELS
    isolation_note: str  # one line for the UI, e.g. "sandbox: full (...)"
    detail: str = ""  # why the level is what it is (missing bubblewrap, no cgroup access...)
    ready: bool = False  # a kernel is started and answering
    workdir: str | None = None  # the host directory of the files, when there is one
    kind: str = "local"  # "local" | "gateway" | "fake"
    files_available: bool = True  # upload/list/read work for this executor


@runtime_checkable
class Executor(Protocol):
    """Runs code in a kernel of its own and returns ordered outputs (`ExecutionResult`).

    Implementations: the local bubblewrap kernel (`composite.sandbox.kernel.Sandbox`), a gateway
    kernel, and test fakes. Only `execute` may block for long; `interrupt` may be called from
    another thread while it runs. Errors are `SandboxError`s with a message for people."""

    isolation: str
    isolation_note: str

    def start(self) -> None:
        """Start the kernel and wait until it answers (idempotent)."""

    def execute(
        self,
        code: str,
        timeout: float | None = None,
        on_output: Callable[[Output], None] | None = None,
    ) -> ExecutionResult:
        """Run code (timeout: seconds, None = the executor's default); call on_output with each
        Output as it arrives, in order; return everything, in order, and how it ended."""
        ...

    def interrupt(self) -> None:
        """Interrupt the running code (KeyboardInterrupt in the kernel); a no-op when idle."""

    def restart(self) -> None:
        """A fresh kernel: variables are lost, files are kept."""

    def upload(self, name: str, data: bytes) -> Any:
        """Save data under a plain file name in the kernel's working directory; returns an object
        with a `.name` (the local kernel: the host Path)."""
        ...

    def list_files(self) -> list[WorkFile]:
        """The regular files of the working directory, by relative path, bounded in number."""
        ...

    def read_file(self, name: str | Path, max_bytes: int = ...) -> bytes:
        """One file of the working directory by relative path, never following links; an error
        when it is larger than max_bytes."""
        ...

    def shutdown(self) -> None:
        """Stop the kernel and release everything it holds; idempotent."""

    def close(self) -> None:
        """Same as shutdown()."""

    def status(self) -> ExecutorStatus:
        """The isolation level with its note, and the state."""
        ...


def run_exec_cli(
    code: str,
    timeout: float | None,
    workdir: str | None,
    out: IO[str],
    executor_factory: Callable[[], Executor] | None = None,
) -> int:
    """`python -m composite exec`: run code once in a fresh executor (default: a local Sandbox in
    workdir), print each output as a JSON line ({"kind", "text", "filename", ...}) as it arrives,
    flushed, then {"status", "message", "isolation", ...}. Exit code: 0 ok, 1 the code raised,
    2 timeout/kernel death, 3 no sandbox."""

    def emit(item: dict[str, Any]) -> None:
        out.write(json.dumps(item, ensure_ascii=False) + "\n")
        out.flush()

    try:
        if executor_factory is None:
            from composite.sandbox.kernel import Sandbox

            executor: Executor = Sandbox(workdir)
        else:
            executor = executor_factory()
    except (SandboxError, ConfigError, OSError) as exc:
        emit({"status": "sandbox_error", "message": str(exc), "isolation": None})
        return 3
    status = executor.status()
    try:
        result = executor.execute(code, timeout, on_output=lambda output: emit(output.to_json()))
        emit(
            {
                "status": result.status,
                "message": result.message,
                "isolation": status.isolation,
                "isolation_note": status.isolation_note,
                "duration": round(result.duration, 3),
                "workdir": status.workdir if workdir else None,
            }
        )
        return {"ok": 0, "error": 1, "no_code": 0}.get(result.status, 2)
    except SandboxError as exc:
        emit(
            {
                "status": "sandbox_error",
                "message": str(exc),
                "isolation": status.isolation,
                "isolation_note": status.isolation_note,
            }
        )
        return 3
    finally:
        executor.shutdown()
