"""Real HTTP servers on 127.0.0.1 for tests: a subprocess (`composite serve`, `transformers serve`) or a
small ASGI app on a uvicorn thread. Both are stopped by their context manager; nothing is left running.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
API_KEY = "test-key-123"  # the key of the shared `embedded_server` (tests/conftest.py)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(**extra: str) -> dict[str, str]:
    """The environment a server under test runs in: offline, no developer model path, one thread."""
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL_PATH", "OPENAI_API_KEY", "COMPOSITE_API_KEY")}
    env.update(HF_HUB_OFFLINE="1", COMPOSITE_WEATHER_URL="http://127.0.0.1:9", PYTHONPATH=str(REPO))
    env.update(extra)
    return env


class ServerProcess:
    """A server subprocess, ready once `ready_path` answers over HTTP (any status), stopped on exit."""

    def __init__(self, args: list[str], port: int, ready_path: str = "/v1/models", env: dict[str, str] | None = None,
                 startup_seconds: float = 300.0, log: Path | None = None):
        self.args, self.port, self.ready_path = args, port, ready_path
        self.env = env or server_env()
        self.startup_seconds = startup_seconds
        self.log = log
        self.process: subprocess.Popen | None = None
        self.base_url = f"http://127.0.0.1:{port}/v1"

    def __enter__(self) -> "ServerProcess":
        out = open(self.log, "wb") if self.log else subprocess.DEVNULL
        self.process = subprocess.Popen(self.args, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-3000:] if self.log else ""
                raise RuntimeError(f"{self.args[:4]} exited with {self.process.returncode} before serving:\n{tail}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}{self.ready_path}", timeout=2)
                return self
            except urllib.error.HTTPError:
                return self  # it answers (401 without a key is an answer)
            except (urllib.error.URLError, OSError):
                time.sleep(0.3)
        self.__exit__(None, None, None)
        raise RuntimeError(f"{self.args[:4]} did not serve within {self.startup_seconds:.0f} s")

    def __exit__(self, *exc: Any) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def composite_serve(port: int, *extra: str, log: Path | None = None) -> ServerProcess:
    return ServerProcess([sys.executable, "-m", "composite", "serve", "--port", str(port), *extra], port, log=log)


class ThreadServer:
    """An ASGI app served by uvicorn on a background thread (for small fake engines in tests)."""

    def __init__(self, app: Any):
        import uvicorn

        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="critical", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "ThreadServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
