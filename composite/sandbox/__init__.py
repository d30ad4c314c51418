"""The code-interpreter sandbox: a Jupyter kernel (ipykernel via jupyter_client, IPC transport)
run under bubblewrap with resource limits; ordered outputs, timeouts, restarts, per-session kernels.

Modules: base (the Executor interface), config, isolation (bubblewrap, limits, launcher), kernel
(the local kernel, `Sandbox`), gateway (a remote kernel on a Jupyter Kernel/Enterprise Gateway,
`GatewayExecutor`: what protects it is the gateway's, see its docstring), manager (per-session
kernels), outputs, files (the one safe way the host touches the workdir), processes.

What is protected (full isolation, i.e. bubblewrap works; `Sandbox.isolation == "full"`):

* network: a new network namespace with no interfaces but its own loopback; no Internet, no DNS,
  and not the host's 127.0.0.1 services;
* host filesystem: mounted read-only; /tmp and /dev/shm are private size-limited tmpfs; /run,
  /home, /root, the host user's home and the sessions directory are hidden behind empty tmpfs
  (the Python installation the kernel needs is bound back read-only); the session's working
  directory (HOME, the cwd, where uploads and plots go) is the only writable host path;
* other sessions: each kernel sees only its own workdir and its own IPC sockets; as root, each
  kernel runs as its own unprivileged uid (files and the process limit are per uid);
* processes: own PID namespace (host processes are invisible and cannot be signalled; every
  process of the sandbox dies with its kernel), killed if the host process dies, even by SIGKILL
  (--die-with-parent for bubblewrap, a host-alive pipe for the kernel); new IPC/UTS/cgroup
  namespaces; no capabilities, no_new_privs (setuid binaries do not elevate);
* resources, per kernel process (setrlimit before any user code): address space (default 2 GiB),
  CPU seconds, number of processes/threads (fork bombs), file size (disk fill by one file),
  open files; no core dumps; host environment variables (API keys...) are not passed on;
* time: each execution has a timeout; then SIGINT, and a restart if the kernel does not answer
  within interrupt_grace;
  kernel death (segfault, os._exit, kill) is detected and the kernel restarted; `input()` fails
  fast; output kept per execution is capped.

What is NOT protected:

* the total disk used by many files in the workdir (only each file's size is limited), and the
  memory of a whole process tree (the limit is per process, times the process limit);
* CPU share: code may use every core until its timeout (no cgroup quota);
* reading world-readable host files (e.g. /etc, /usr, the project directory) - read-only, not
  hidden; Unix sockets on the host filesystem that are world-writable remain connectable;
* kernel exploits: bubblewrap gives namespaces (no seccomp filter is installed), not a VM;
* orphaned grandchildren of the kernel stay as zombies until the kernel restarts (the kernel is
  PID 1 of its namespace); they count towards the process limit.

Reduced isolation (bubblewrap missing or not permitted): `isolation == "reduced"` and
`isolation_note == "sandbox: reduced (no network/filesystem isolation)"`, logged as a warning;
only the resource limits, the private working directory as cwd/HOME, the scrubbed environment
and (as root, when the interpreter is readable by others) a separate uid remain.
"""

from composite.sandbox.base import (
    ISOLATION_LEVELS,
    Executor,
    ExecutorStatus,
    SandboxStartError,
    run_exec_cli,
)
from composite.sandbox.config import SandboxConfig
from composite.sandbox.files import WorkFile
from composite.sandbox.isolation import FULL_NOTE, REDUCED_NOTE
from composite.sandbox.kernel import Sandbox
from composite.sandbox.manager import SandboxManager
from composite.sandbox.outputs import ExecutionResult, Output
from composite.sandbox.processes import cleanup_stale_state

__all__ = [
    "Executor",
    "ExecutorStatus",
    "ISOLATION_LEVELS",
    "SandboxConfig",
    "Output",
    "ExecutionResult",
    "WorkFile",
    "Sandbox",
    "SandboxManager",
    "SandboxStartError",
    "run_exec_cli",
    "cleanup_stale_state",
    "FULL_NOTE",
    "REDUCED_NOTE",
]
