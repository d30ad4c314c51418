"""The code-interpreter sandbox: a Jupyter kernel (ipykernel via jupyter_client, IPC transport)
run under bubblewrap with resource limits; ordered outputs, timeouts, restarts, per-session kernels.

Modules: base (the Executor interface), config, isolation (bubblewrap, limits, launcher), kernel
(the local kernel, `Sandbox`), gateway (a remote kernel on a Jupyter Kernel/Enterprise Gateway,
`GatewayExecutor`: what protects it is the gateway's, see its docstring), manager (per-session
kernels), outputs, files (the one safe way the host touches the workdir), cgroups (limits and
killing for a kernel's whole process tree), processes.

Who attacks: the code is model-written, and the model may follow instructions planted in a
document, a web page or a file (prompt injection): treat it as hostile. docs/SECURITY.md has the
threat model. What is protected with full isolation (`status().isolation == "full"`: bubblewrap
works AND the kernel gets a cgroup):

* network: a new network namespace with no interfaces but its own loopback; no Internet, no DNS,
  and not the host's 127.0.0.1 services;
* host filesystem: mounted read-only; /tmp and /dev/shm are private size-limited tmpfs; /run,
  /home, /root, the host user's home and the sessions directory are hidden behind empty tmpfs
  (the Python installation the kernel needs is bound back read-only); the session's working
  directory (HOME, the cwd, where uploads and plots go) is the only writable host path;
* other sessions: each kernel sees only its own workdir and its own IPC sockets; as root, each
  kernel runs as its own unprivileged uid (files and the process limit are per uid);
* processes: own PID namespace whose PID 1 is bubblewrap's init (root, outside the code's reach;
  host processes are invisible and cannot be signalled); the init dies with bubblewrap, which
  dies with the app (--die-with-parent), even by SIGKILL, and the death of a namespace's PID 1
  kills every process in it, whatever the code did to its own process (patched os._exit,
  ignored signals, daemons in new sessions); the kernel's cgroup is killed whole on restart and
  shutdown, and by the janitor after a crash; no capabilities, no_new_privs; no new user
  namespaces (a seccomp filter: unshare/clone with CLONE_NEWUSER fail, clone3 says ENOSYS);
* resources of the whole kernel tree (cgroup v2, or v1 memory/pids/cpu): memory including
  shared memory, memfd and tmpfs pages (default 2 GiB, `tree_memory_bytes`), processes and
  threads, CPU time per second (`cpu_cores`, default 1 core); per process (setrlimit before any
  user code): address space, CPU seconds, processes, file size, open files, no core dumps; host
  environment variables (API keys...) are not passed on;
* time: each execution has a timeout; then SIGINT, and a restart if the kernel does not answer
  within interrupt_grace; kernel death (segfault, os._exit, kill, out of memory) is detected,
  explained and the kernel restarted; `input()` fails fast;
* the host side (the kernel's messages and its workdir are untrusted input): a kernel message
  over `max_message_bytes` (32 MiB) is dropped by zmq before it is held, with a note; text, image
  count and image bytes kept per execution are capped; the kernel's stdout/stderr log is capped
  and rotated; every host read of the workdir (plots, downloads, listings, the history's file
  copies) goes through `files`: relative to the workdir, no link followed at any component, a
  regular file checked on the opened descriptor, size capped; listings and removal are
  iterative and bounded (any depth, any width); plots reach the page as bytes, never as paths.

What is NOT protected:

* the total disk used by many files in the workdir (only each file's size is limited);
* reading world-readable host files (e.g. /etc, /usr, the project directory) - read-only, not
  hidden; Unix sockets on the host filesystem that are world-writable remain connectable;
* kernel exploits: namespaces, a cgroup and one seccomp rule are not a VM;
* background processes the code starts live until the kernel restarts (Jupyter semantics); they
  count against the same cgroup quota;
* output sent within milliseconds after a dropped oversized message may be lost (the note says so).

What depends on the host: the cgroup needs write access to the cgroup filesystem (as root, or a
delegated cgroup); without it `status()` says "reduced" with `NO_CGROUP_NOTE` and the limits are
per process only (shared memory and tmpfs are then not counted). Bubblewrap needs user
namespaces or root; without it (`isolation == "reduced"`, `REDUCED_NOTE`, logged as a warning)
only the resource limits, the private working directory as cwd/HOME, the scrubbed environment,
the host-side bounds above and (as root, when the interpreter is readable by others) a separate
uid remain; a SIGKILLed app's kernel tree is killed by a supervisor process the bootstrap leaves
outside the code's process (out of the code's reach only when the kernel runs as its own uid).
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
from composite.sandbox.isolation import FULL_NOTE, NO_CGROUP_NOTE, REDUCED_NOTE
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
    "NO_CGROUP_NOTE",
]
