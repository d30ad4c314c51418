"""Start and stop `streamlit run main.py` and a headless Debian Chromium for the browser tests and the soak.

The server gets its own process group, isolated user paths (data dir, tools, weather service) and
is stopped by its handle; anything still alive in its group afterwards (sandbox kernels) is killed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("COMPOSITE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
]


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started it dies (a killed test run leaves no server)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:  # not glibc Linux: the normal stop() path still applies
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StreamlitServer:
    """One `streamlit run main.py` on 127.0.0.1:<free port>; `url`, `pid`, `stop()`."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None, start_timeout: float = 180.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "streamlit.log"
        child_env = dict(os.environ)
        child_env.pop("MODEL_PATH", None)
        child_env.pop("COMPOSITE_DATABASE_URL", None)
        child_env.update({
            "COMPOSITE_DATA_DIR": str(self.workdir / "data"),
            "TOOLS_PATH": str(self.workdir / "no-user-tools"),
            "COMPOSITE_WEATHER_URL": "http://127.0.0.1:9",  # a closed port: the weather tool fails fast, offline
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        })
        child_env.update(env or {})
        cmd = [
            sys.executable, "-m", "streamlit", "run", "main.py",
            "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(self.port),
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
        ]
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(cmd, cwd=ROOT, env=child_env, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True, preexec_fn=_die_with_parent)
        try:
            self._wait_healthy(start_timeout)
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"streamlit was not healthy after {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (Streamlit shuts its sessions and kernels down), then SIGKILL whatever is left in its group."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # leftovers of this server only (its own session)
        except ProcessLookupError:
            pass
        self._log.close()


def launch_chromium(playwright):
    """Debian's Chromium through Playwright (never `playwright install`: it downloads a browser)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
