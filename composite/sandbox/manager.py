"""`SandboxManager`: one kernel per session id, started ahead (spares), culled when idle, all shut
down at exit."""

from __future__ import annotations

import atexit
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

from composite.errors import SandboxError
from composite.sandbox.config import SandboxConfig
from composite.sandbox.kernel import Sandbox

__all__ = ["SandboxManager"]

logger = logging.getLogger("composite.sandbox")


class SandboxManager:
    """Per-session kernels keyed by session id. Kernels idle longer than config.idle_timeout are
    shut down by a background culler; config.prestart spare kernels are kept started so a new
    session gets a ready kernel at once; everything is shut down at exit (atexit)."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        base_dir: str | Path | None = None,
        gateway: tuple[str, str] | None = None,
    ) -> None:
        self.config = config if config is not None else SandboxConfig.from_env()
        # (url, token) of a Kernel/Enterprise Gateway: each session gets a remote kernel there
        self.gateway = (gateway[0], gateway[1] or "") if gateway and gateway[0] else None
        default_base = Path(tempfile.gettempdir()) / f"composite-sandboxes-{os.geteuid()}"
        self.base_dir = Path(base_dir or self.config.base_dir or default_base).resolve()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o711)  # kernels may pass through to their own dir, not list others
        self._sessions: dict[str, Sandbox] = {}
        self._spares: list[Sandbox] = []
        self._lock = threading.Lock()
        self._closed = False
        self._stop = threading.Event()
        self._culler: threading.Thread | None = None
        atexit.register(self.shutdown_all)

    def _new_sandbox(self) -> Sandbox:
        if self.gateway is not None:
            from composite.sandbox.gateway import GatewayExecutor

            return GatewayExecutor(self.gateway[0], self.gateway[1], self.config)  # type: ignore[return-value]
        workdir = tempfile.mkdtemp(prefix="session-", dir=self.base_dir)
        return Sandbox(workdir, self.config, cleanup_workdir=True, hide=(str(self.base_dir),))

    def get(self, session_id: str) -> Sandbox:
        """The session's sandbox, created (and started in the background) on first use."""
        created = False
        with self._lock:
            if self._closed:
                raise SandboxError("the sandbox manager was shut down")
            sandbox = self._sessions.get(session_id)
            if sandbox is None or sandbox._closed:
                sandbox = self._spares.pop(0) if self._spares else self._new_sandbox()
                self._sessions[session_id] = sandbox
                created = True
            sandbox.touch()
        sandbox.start_async()
        if created:
            self._refill_spares()
        self._ensure_culler()
        return sandbox

    def _refill_spares(self) -> None:
        with self._lock:
            while not self._closed and len(self._spares) < self.config.prestart:
                spare = self._new_sandbox()
                spare.start_async()
                self._spares.append(spare)

    def prestart(self) -> None:
        """Start the spare kernels now (e.g. when the app starts)."""
        self._refill_spares()

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._sessions

    def __len__(self) -> int:
        return len(self._sessions)

    @property
    def sessions(self) -> list[str]:
        return list(self._sessions)

    def close(self, session_id: str) -> bool:
        with self._lock:
            sandbox = self._sessions.pop(session_id, None)
        if sandbox is None:
            return False
        sandbox.shutdown()
        return True

    def cull_idle(self, now: float | None = None) -> list[str]:
        """Shut down sandboxes idle longer than config.idle_timeout (and forget closed ones)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            victims = [
                sid
                for sid, sb in self._sessions.items()
                if sb._closed or (not sb.busy and now - sb.last_used > self.config.idle_timeout)
            ]
            doomed = [self._sessions.pop(sid) for sid in victims]
        for sandbox in doomed:
            sandbox.shutdown()
        return victims

    def _ensure_culler(self) -> None:
        with self._lock:
            if self._culler is not None or self._closed:
                return
            interval = min(60.0, max(0.2, self.config.idle_timeout / 4))
            self._culler = threading.Thread(
                target=self._cull_loop, args=(interval,), name="composite-sandbox-culler", daemon=True
            )
            self._culler.start()

    def _cull_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.cull_idle()
            except Exception:  # the culler must survive one bad sandbox; log and go on
                logger.exception("sandbox culling failed")

    def shutdown_all(self) -> None:
        """Shut down every session and spare kernel; the manager refuses new sessions after."""
        with self._lock:
            self._closed = True
            doomed = list(self._sessions.values()) + self._spares
            self._sessions.clear()
            self._spares = []
        self._stop.set()
        for sandbox in doomed:
            sandbox.shutdown()
