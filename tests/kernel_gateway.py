"""A real `jupyter kernelgateway` on 127.0.0.1 with a token, started and stopped by tests."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class KernelGateway:
    url: str
    token: str
    port: int
    process: subprocess.Popen
    log: Path

    def stop(self) -> None:
        """Stop the gateway and the kernels it started (they are in its process group)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # kernels left behind by a killed gateway
        except OSError:
            pass

    def kill(self) -> None:
        """SIGKILL the gateway alone (its kernels are cleaned up by stop())."""
        self.process.kill()
        self.process.wait(10)


def start_kernel_gateway(log_dir: Path, token: str | None = None, port: int | None = None,
                         timeout: float = 90.0) -> KernelGateway:
    """Start `jupyter kernelgateway` and wait until its REST API answers with the token."""
    import httpx

    token = token or secrets.token_hex(16)
    port = port or free_port()
    log = log_dir / f"kernelgateway-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KG_", "JUPYTER_GATEWAY"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "kernel_gateway",
         "--KernelGatewayApp.ip=127.0.0.1", f"--KernelGatewayApp.port={port}",
         "--KernelGatewayApp.port_retries=0", f"--KernelGatewayApp.auth_token={token}"],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env, start_new_session=True,
        cwd=str(log_dir),
    )
    gateway = KernelGateway(f"http://127.0.0.1:{port}", token, port, process, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"kernel gateway exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            reply = httpx.get(f"{gateway.url}/api/kernelspecs", headers={"Authorization": f"token {token}"},
                              timeout=2)
            if reply.status_code == 200:
                return gateway
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    gateway.stop()
    raise RuntimeError(f"kernel gateway did not answer within {timeout} s: {log.read_text(errors='replace')[-2000:]}")


class DroppableProxy:
    """A TCP proxy on 127.0.0.1 in front of the gateway: drop() cuts every open connection (a network
    failure between the app and the gateway, mid-execution) and refuses new ones until resume()."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._open = threading.Event()
        self._open.set()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._server.accept()
            except OSError:
                continue
            if not self._open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def drop(self) -> None:
        self._open.clear()
        with self._lock:
            conns, self._conns = self._conns, []
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass

    def resume(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._stopped = True
        self.drop()
        self._server.close()
        self._thread.join(2)


def start_jupyter_server(root: Path, token: str | None = None, timeout: float = 90.0) -> KernelGateway:
    """A Jupyter Server as the gateway: the same kernels API plus the contents API (files). Its cwd is
    its root_dir, so its kernels start where the contents API reads and writes."""
    import httpx

    token = token or secrets.token_hex(16)
    port = free_port()
    log = root.parent / f"jupyter-server-{port}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", "--ServerApp.open_browser=False",
         f"--ServerApp.root_dir={root}", "--allow-root"],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True, cwd=str(root),
    )
    server = KernelGateway(f"http://127.0.0.1:{port}", token, port, process, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter server exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"{server.url}/api/kernelspecs", headers={"Authorization": f"token {token}"},
                         timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"jupyter server did not answer within {timeout} s")
