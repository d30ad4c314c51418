"""Remote kernels through a Jupyter Kernel Gateway or Enterprise Gateway: `GatewayExecutor` runs code
in a kernel the gateway starts (REST + websocket through jupyter_server's gateway client), with the
same ordered outputs, timeouts, interrupt and restart as the local sandbox.

What protects a gateway kernel is the gateway's business (a Kubernetes pod, a Docker container, or
nothing at all for a plain Kernel Gateway on one host): the status says "remote: isolation is the
gateway's (URL)", never "full". What this module does protect: the host environment is not sent
(only KERNEL_* variables, as jupyter_server's client does), output kept per execution is capped,
file names for the contents API are reduced to plain names, and every gateway failure (unreachable,
401/403, kernel start refused, websocket dropped) is a `GatewayError` with what went wrong.

Not protected here: the kernel's network, filesystem, memory and CPU (the gateway's job); one huge
output message is received whole by the websocket client before it is capped (the local kernel
decodes only what it keeps); the token travels in clear text unless the URL is https://.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import queue
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, urlsplit

from composite.errors import ConfigError, GatewayError
from composite.sandbox.base import ExecutorStatus
from composite.sandbox.config import SandboxConfig
from composite.sandbox.files import WorkFile, remove_tree, restore_parts, safe_name
from composite.sandbox.outputs import STDIN_NOTE, ExecutionResult, Output, OutputCollector, cut_middle

__all__ = ["GatewayExecutor", "FILES_UNAVAILABLE", "gateway_from_env"]

logger = logging.getLogger(__name__)

FILES_UNAVAILABLE = "file transfer is unavailable for this executor (the gateway offers no contents API)"
REMOTE_STARTUP_TIMEOUT = 180.0  # seconds a gateway kernel gets to answer at least
ENV_URL = "COMPOSITE_KERNEL_GATEWAY"
ENV_TOKEN = "COMPOSITE_GATEWAY_TOKEN"
_MiB = 2**20


def gateway_from_env(environ: dict[str, str] | None = None) -> tuple[str, str]:
    """(url, token) from COMPOSITE_KERNEL_GATEWAY / COMPOSITE_GATEWAY_TOKEN; url "" = local kernels."""
    import os

    env = os.environ if environ is None else environ
    return env.get(ENV_URL, "").strip(), env.get(ENV_TOKEN, "").strip()


def check_url(url: str) -> str:
    """The gateway's base URL without a trailing slash; ConfigError for anything but http(s)://host."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"kernel gateway URL must look like http://host:port, got {url!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"kernel gateway URL must not carry a query or fragment, got {url!r}")
    return url.strip().rstrip("/")


# -- one event loop thread for the gateway client's coroutines --------------------------------------
_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _run(coro: Any, timeout: float) -> Any:
    """Run a coroutine of jupyter_server's gateway client on the shared loop thread and wait for it."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="composite-gateway-loop", daemon=True).start()
        loop = _loop
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result(timeout)
    except TimeoutError:
        future.cancel()
        raise


# -- GatewayClient is a process-wide singleton: one (url, token) configuration at a time ------------
_config = threading.Condition()
_config_key: tuple[str, str] | None = None
_config_users = 0


@contextlib.contextmanager
def _gateway(url: str, token: str, connect_timeout: float) -> Iterator[Any]:
    """Configure jupyter_server's GatewayClient singleton for this gateway while a request runs.
    Requests to the same gateway run side by side; one to another gateway waits for them."""
    global _config_key, _config_users
    from jupyter_server.gateway.gateway_client import GatewayClient

    key = (url, token)
    with _config:
        while _config_users and _config_key != key:
            _config.wait()
        if _config_key != key:
            GatewayClient.clear_instance()
            GatewayClient.instance(
                url=url, auth_token=token, headers="{}", connect_timeout=float(connect_timeout),
                # a kernel start (an EG pod) may take minutes; EG also reads it as KERNEL_LAUNCH_TIMEOUT
                request_timeout=REMOTE_STARTUP_TIMEOUT,
            )
            _config_key = key
        _config_users += 1
    try:
        yield GatewayClient.instance()
    finally:
        with _config:
            _config_users -= 1
            _config.notify_all()


@functools.lru_cache(maxsize=1)
def _client_class() -> type:
    """jupyter_server's GatewayKernelClient, whose websocket also carries the auth header (its own
    start_channels sends none, so a gateway with a token answers 401)."""
    import websocket
    from jupyter_core.utils import ensure_async
    from jupyter_server.gateway.managers import GatewayKernelClient
    from jupyter_server.utils import url_path_join
    from tornado.escape import url_escape

    class AuthGatewayKernelClient(GatewayKernelClient):
        gateway_headers: dict[str, str] = {}
        # the gateway answers the websocket handshake once the kernel is up: a startup, not a connect
        handshake_timeout: float = 180.0

        async def start_channels(self, shell=True, iopub=True, stdin=False, hb=False, control=True):
            from jupyter_server.gateway.gateway_client import GatewayClient

            gateway = GatewayClient.instance()
            ws_url = url_path_join(gateway.ws_url or "", gateway.kernels_endpoint, url_escape(self.kernel_id), "channels")
            self.channel_socket = websocket.create_connection(
                ws_url,
                timeout=self.handshake_timeout,
                enable_multithread=True,
                header=[f"{k}: {v}" for k, v in self.gateway_headers.items()],
            )
            self.channel_socket.settimeout(None)  # the router thread blocks on recv until closed
            await ensure_async(
                super(GatewayKernelClient, self).start_channels(
                    shell=shell, iopub=iopub, stdin=stdin, hb=hb, control=control
                )
            )
            self.response_router = threading.Thread(
                target=self._route_responses, name="composite-gateway-ws", daemon=True
            )
            self.response_router.start()

    return AuthGatewayKernelClient


def _describe(exc: BaseException, url: str, action: str) -> GatewayError:
    """One clear error for whatever the gateway client raised."""
    from tornado import web

    code = getattr(exc, "status_code", None) or getattr(exc, "code", None)
    if isinstance(exc, web.HTTPError):
        detail = exc.log_message % exc.args if exc.log_message and exc.args else (exc.log_message or "")
        if code in (401, 403) and action == "connect":
            return GatewayError(
                f"the kernel gateway at {url} refused the token ({code} "
                f"{'Unauthorized' if code == 401 else 'Forbidden'}); check --gateway-token / {ENV_TOKEN}"
            )
        if code in (503, 599) or "ConnectionError" in detail or "doesn't appear to be valid" in detail:
            return GatewayError(f"the kernel gateway at {url} is unreachable ({exc.__cause__ or detail})")
        if action == "start kernel":
            return GatewayError(f"the kernel gateway at {url} refused to start a kernel ({code}: {cut_middle(detail, 300)})")
        return GatewayError(f"the kernel gateway at {url} failed to {action} ({code}: {cut_middle(detail, 300)})")
    status = getattr(exc, "status_code", None)
    if "Timeout" in type(exc).__name__:
        return GatewayError(f"the kernel gateway at {url} did not answer in time while trying to {action} ({exc})")
    if status in (401, 403):  # websocket handshake
        return GatewayError(f"the kernel gateway at {url} refused the token on the kernel's websocket ({status})")
    if isinstance(exc, (OSError, TimeoutError)) or type(exc).__module__.startswith("websocket"):
        return GatewayError(f"the kernel gateway at {url} is unreachable ({type(exc).__name__}: {exc})")
    return GatewayError(f"the kernel gateway at {url} failed to {action} ({type(exc).__name__}: {exc})")


class GatewayExecutor:
    """A kernel on a Jupyter Kernel/Enterprise Gateway behind the same interface as the local
    `Sandbox`: start, execute (ordered outputs, timeout → interrupt → restart), interrupt, restart,
    upload / list_files / read_file (through the gateway's contents API when it has one), close.

    Images are saved into a local folder (`workdir`) so the renderers can show them; the kernel's
    own files live on the gateway's side."""

    kind = "gateway"

    def __init__(
        self,
        url: str,
        token: str = "",
        config: SandboxConfig | None = None,
        kernel_name: str = "",
        connect_timeout: float = 10.0,
    ) -> None:
        self.url = check_url(url)
        self.token = token or ""
        self.config = config if config is not None else SandboxConfig.from_env()
        self.kernel_name = kernel_name or "python3"
        # a remote kernel may be a pod whose image is still being pulled: minutes, not the local 30 s
        self.startup_timeout = max(self.config.startup_timeout, REMOTE_STARTUP_TIMEOUT)
        self.connect_timeout = connect_timeout
        self.isolation = "remote"
        self.isolation_note = f"remote: isolation is the gateway's ({self.url})"
        self.workdir = Path(tempfile.mkdtemp(prefix="composite-gateway-"))
        self.last_used = time.monotonic()
        self.last_result: ExecutionResult | None = None
        self.kernel_id: str | None = None
        self.start_error: GatewayError | None = None
        self._km: Any = None
        self._kc: Any = None
        self._lock = threading.RLock()  # one execution (or start/restart) at a time
        self._busy = False
        self._gateway_restarted = False  # set when the gateway restarted a dead kernel: wait for it to answer
        self._closed = False
        self._starting: threading.Thread | None = None
        self._images = 0
        self._files: bool | None = None  # whether the gateway has a contents API (probed once)
        self._folder = f"composite-{secrets.token_hex(6)}"  # this session's folder in the contents API
        self._folder_made = False
        self.files_reason = FILES_UNAVAILABLE

    # ------------------------------------------------------------------------------ status
    @property
    def busy(self) -> bool:
        return self._busy

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def ready(self) -> bool:
        return self._kc is not None and not self._router_finished()

    alive = ready

    def status(self) -> ExecutorStatus:
        detail = "the kernel runs on the gateway; what confines it (pod, container, nothing) is set up there"
        if self.start_error is not None:
            detail = str(self.start_error)
        return ExecutorStatus(
            self.isolation, self.isolation_note, detail, self.ready, None, "gateway", self.files_available
        )

    def touch(self) -> None:
        self.last_used = time.monotonic()

    def __repr__(self) -> str:
        return f"GatewayExecutor({self.url!r}, kernel={self.kernel_id!r})"

    def __enter__(self) -> GatewayExecutor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # ------------------------------------------------------------------------------ lifecycle
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"} if self.token else {}

    def start(self) -> None:
        """Start the remote kernel and open its websocket (no-op when connected). GatewayError says
        why not: unreachable, token refused, kernel start refused."""
        with self._lock:
            self._ensure_connected()

    def start_async(self) -> None:
        """Start in a background thread (the page renders meanwhile); a failure is kept in
        start_error and raised again by the next execute()."""
        if self._closed or self._kc is not None or (self._starting and self._starting.is_alive()):
            return

        def starter() -> None:
            try:
                self.start()
            except GatewayError as exc:  # kept for the page and the next execute
                self.start_error = exc

        self._starting = threading.Thread(target=starter, name="composite-gateway-start", daemon=True)
        self._starting.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        if self._starting is not None:
            self._starting.join(timeout)
        return self.ready

    def _router_finished(self) -> bool:
        kc = self._kc
        if kc is None:
            return True
        channel = getattr(kc, "_iopub_channel", None)
        return bool(channel is not None and channel.response_router_finished)

    def _ensure_connected(self) -> str:
        """Connect if needed; returns a note when a new kernel replaced a lost one."""
        if self._closed:
            raise GatewayError("this gateway executor was shut down")
        if self._kc is not None and not self._router_finished():
            return ""
        note = ""
        lost = self.kernel_id
        self._drop_channels()
        try:
            self._connect(reuse=lost)
        except GatewayError as exc:
            self.start_error = exc
            raise
        self.start_error = None
        if lost is not None and self.kernel_id != lost:
            note = "the connection to the gateway kernel was lost; a new kernel was started and variables were lost"
        return note

    def _connect(self, reuse: str | None) -> None:
        from jupyter_server.gateway.managers import GatewayKernelManager

        client_class = _client_class()
        with _gateway(self.url, self.token, self.connect_timeout) as gateway:
            try:
                self._probe(gateway)
                km = GatewayKernelManager()
                km.client_factory = client_class
                started = False
                if reuse is not None:
                    try:
                        _run(km.start_kernel(kernel_id=reuse), self.connect_timeout + 5)
                        started = km.kernel is not None
                    except Exception:  # the old kernel is gone or unreadable: start a new one below
                        started = False
                if not started:
                    try:
                        _run(km.start_kernel(kernel_name=self.kernel_name), self.startup_timeout + 30)
                    except Exception as exc:  # every failure of the client becomes one GatewayError
                        raise _describe(exc, self.url, "start kernel") from exc
                kc = km.client()
                kc.gateway_headers = self._headers()
                kc.handshake_timeout = self.startup_timeout
                try:
                    _run(kc.start_channels(), self.startup_timeout + 5)
                except Exception as exc:  # handshake refused, connection reset...
                    self._shutdown_kernel(km)
                    raise _describe(exc, self.url, "open the kernel's websocket") from exc
            except GatewayError:
                raise
            except Exception as exc:  # the gateway client raises tornado/websocket/OS errors alike
                raise _describe(exc, self.url, "connect") from exc
        self._km, self._kc, self.kernel_id = km, kc, km.kernel_id
        if self._closed:  # shut down while this start was under way: leave no kernel behind on the gateway
            self._drop_channels()
            self._shutdown_kernel(km)
            raise GatewayError("this gateway executor was shut down")
        self._wait_kernel_ready()
        self._enter_folder()

    def _probe(self, gateway: Any) -> None:
        """GET the kernelspecs: tells an unreachable gateway and a refused token apart before a
        kernel is asked for."""
        from jupyter_server.gateway.gateway_client import gateway_request
        from jupyter_server.utils import url_path_join

        try:
            _run(gateway_request(url_path_join(self.url, gateway.kernelspecs_endpoint), method="GET"),
                 self.connect_timeout * 3 + 5)
        except Exception as exc:  # classified by _describe
            raise _describe(exc, self.url, "connect") from exc

    def _wait_kernel_ready(self) -> None:
        """kernel_info until the kernel answers on shell and its IOPub status for one of our requests arrives
        (a fresh remote kernel may take a while; after the gateway restarts a kernel, IOPub can come back later
        than shell, and a run started before it would lose its output and wait for its timeout)."""
        deadline = time.monotonic() + self.startup_timeout
        sent: set[str] = set()
        shell_ok = iopub_ok = False
        kc = self._kc  # shutdown() from another thread drops self._kc while this waits
        while time.monotonic() < deadline:
            self._raise_if_closed()
            sent.add(kc.kernel_info())
            until = min(deadline, time.monotonic() + 2.0)
            while time.monotonic() < until:
                self._raise_if_closed()
                reply = self._get(kc.shell_channel, 0.05)
                if reply is not None and reply["parent_header"].get("msg_id") in sent:
                    shell_ok = True
                while (note := self._get(kc.iopub_channel, 0.05)) is not None:
                    if note["parent_header"].get("msg_id") in sent:
                        iopub_ok = True
                if shell_ok and iopub_ok:
                    self._drain(kc.iopub_channel)
                    return
                if self._router_finished():
                    raise GatewayError(f"the kernel gateway at {self.url} closed the kernel's websocket while it started")
        raise GatewayError(
            f"the gateway kernel did not answer within {self.startup_timeout:g} s (startup_timeout)"
        )

    def _raise_if_closed(self) -> None:
        if self._closed:  # shut down (its kernel stopped, its channels dropped) while this start waited
            raise GatewayError("this gateway executor was shut down while its kernel started")

    @staticmethod
    def _get(channel: Any, timeout: float) -> dict[str, Any] | None:
        # the channel is a queue fed by the client's websocket thread; a blocking get instead of
        # the client's get_msg, which polls with asyncio.sleep(0) and burns a core while waiting
        try:
            msg = channel.get(timeout=timeout)
        except queue.Empty:
            return None
        channel.task_done()
        return msg

    @staticmethod
    def _drain(channel: Any) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                channel.get_nowait()
                channel.task_done()

    def _drop_channels(self) -> None:
        kc, self._kc = self._kc, None
        if kc is not None:
            try:
                kc.stop_channels()
            except Exception:  # closing a dead websocket may raise anything; the socket is gone either way
                logger.debug("closing the gateway websocket failed", exc_info=True)

    def _shutdown_kernel(self, km: Any) -> None:
        try:
            with _gateway(self.url, self.token, self.connect_timeout):
                _run(km.shutdown_kernel(), self.connect_timeout + 5)
        except Exception:  # the gateway is gone or the kernel already is: nothing left to stop
            logger.debug("gateway kernel shutdown failed", exc_info=True)

    def _rest(self, action: str, method: str) -> None:
        km = self._km
        if km is None or km.kernel_id is None:
            return
        try:
            with _gateway(self.url, self.token, self.connect_timeout):
                _run(getattr(km, method)(), self.connect_timeout + 30)
        except Exception as exc:  # classified for the caller
            raise _describe(exc, self.url, action) from exc

    def interrupt(self) -> None:
        """Interrupt the running code (KeyboardInterrupt in the kernel), through the gateway."""
        self._rest("interrupt the kernel", "interrupt_kernel")

    def restart(self) -> None:
        """Restart the remote kernel: variables are lost (files in the contents API stay)."""
        if self._km is None:
            self.start()
            return
        self._rest("restart the kernel", "restart_kernel")
        with self._lock:
            if self._kc is not None and not self._router_finished():
                self._wait_kernel_ready()
                self._enter_folder()

    def shutdown(self) -> None:
        """Stop the remote kernel and forget it; idempotent."""
        if self._closed:
            return
        self._closed = True
        km = self._km
        self._drop_channels()
        if km is not None and km.kernel_id is not None:
            self._shutdown_kernel(km)
        self._km = None
        remove_tree(self.workdir)

    close = shutdown

    # ------------------------------------------------------------------------------ execution
    def execute(
        self, code: str, timeout: float | None = None, on_output: Callable[[Output], None] | None = None
    ) -> ExecutionResult:
        """Run code; on_output gets each Output as it arrives. Raises GatewayError when no kernel
        can be reached; a websocket lost mid-run ends the run with status "disconnected"."""
        timeout = self.config.timeout if timeout is None else float(timeout)
        if not code or not code.strip():
            result = ExecutionResult([], "no_code", "there was no code to run", 0.0)
            self.last_result = result
            return result
        with self._lock:
            self._busy = True
            try:
                note = self._ensure_connected()
                if self._gateway_restarted:
                    # the gateway restarts a dead kernel by itself: a request sent before the new kernel
                    # answers is lost (the run would wait for its timeout and show nothing)
                    self._wait_kernel_ready()
                    self._gateway_restarted = False
                result = self._execute(code, timeout, on_output)
            finally:
                self._busy = False
                self.last_used = time.monotonic()
        if note:
            result.message = f"{result.message}; {note}" if result.message else note
        self.last_result = result
        return result

    def _save_image(self, ext: str, raw: bytes) -> str:
        self._images += 1
        name = f"plot_{self._images}.{ext}"
        (self.workdir / name).write_bytes(raw)
        return name

    def _execute(self, code: str, timeout: float, on_output: Callable[[Output], None] | None) -> ExecutionResult:
        kc = self._kc
        self._drain(kc.iopub_channel)
        self._drain(kc.shell_channel)
        collector = OutputCollector(self.config.max_output_chars, self.config.max_images, self._save_image)
        outputs: list[Output] = []
        started = time.monotonic()
        msg_id = kc.execute(code, silent=False, store_history=True, allow_stdin=False, stop_on_error=False)
        deadline = started + timeout
        grace = self.config.interrupt_grace
        interrupted_at: float | None = None
        reply: dict[str, Any] | None = None
        idle = saw_error = False
        status, message = "ok", ""
        finished = False

        def emit(out: Output | None) -> None:
            if out is None:
                return
            outputs.append(out)
            if on_output is not None:
                on_output(out)

        try:
            while not (reply is not None and idle):
                now = time.monotonic()
                if interrupted_at is None and now >= deadline:
                    interrupted_at = now
                    with contextlib.suppress(GatewayError):
                        self.interrupt()
                elif interrupted_at is not None and now >= interrupted_at + grace:
                    status = "timeout"
                    message = (
                        f"timed out after {timeout:g} s; the kernel did not answer the interrupt within "
                        f"{grace:g} s and was restarted (variables lost)"
                    )
                    try:
                        self.restart()
                    except GatewayError as exc:
                        message = message.replace("was restarted", f"could not be restarted ({exc})")
                    break
                msg = self._get(kc.iopub_channel, 0.1)
                while (shell := self._get(kc.shell_channel, 0)) is not None:
                    if shell["parent_header"].get("msg_id") == msg_id and shell["msg_type"] == "execute_reply":
                        reply = shell["content"]
                if msg is None:
                    if self._router_finished():
                        status = "disconnected"
                        message = (
                            f"the connection to the kernel gateway at {self.url} was lost while the code ran; "
                            "run it again to reconnect (variables may be lost)"
                        )
                        break
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "status" and content.get("execution_state") in ("restarting", "dead"):
                    # the gateway's own notice (no parent): the kernel process died and is restarted
                    status = "died"
                    message = "the kernel died on the gateway; the gateway restarted it and variables were lost"
                    self._gateway_restarted = True
                    break
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue  # an earlier request's late output
                if kind == "stream":
                    emit(collector.stream(content.get("name", "stdout"), content.get("text", "")))
                elif kind in ("execute_result", "display_data", "update_display_data"):
                    emit(collector.rich("result" if kind == "execute_result" else "display",
                                        content.get("data") or {}, content.get("metadata") or {}))
                elif kind == "error":
                    saw_error = True
                    emit(collector.error(content.get("ename", ""), content.get("evalue", ""),
                                         content.get("traceback") or []))
                elif kind == "status":
                    state = content.get("execution_state")
                    if state == "idle":
                        idle = True
                        if reply is None:  # the reply may trail the idle status a little
                            shell = self._get(kc.shell_channel, 2.0)
                            if shell is not None and shell["parent_header"].get("msg_id") == msg_id:
                                reply = shell["content"]
                            elif shell is None:
                                reply = {"status": "ok"} if not saw_error else {"status": "error"}
            finished = True
        finally:
            if not finished and interrupted_at is None:
                # the caller gave up (an exception in on_output, a closed generator): do not leave
                # the code running behind its back
                with contextlib.suppress(GatewayError):
                    self.interrupt()
        if status == "ok":
            status, message = self._ending(reply or {}, interrupted_at is not None, timeout)
            if status == "error" and not saw_error and (reply or {}).get("ename"):
                emit(collector.error(reply.get("ename", ""), reply.get("evalue", ""), reply.get("traceback") or []))
        emit(collector.cut_marker())
        return ExecutionResult(_merge_streams(outputs), status, message, time.monotonic() - started)

    @staticmethod
    def _ending(reply: dict[str, Any], interrupted: bool, timeout: float) -> tuple[str, str]:
        if interrupted:
            return "timeout", f"timed out after {timeout:g} s; interrupted"
        state = reply.get("status", "error")
        if state == "ok":
            return "ok", ""
        if state == "aborted":
            return "aborted", "the kernel skipped this code (aborted after an earlier error or interrupt)"
        if reply.get("ename") == "KeyboardInterrupt":
            return "interrupted", "interrupted (KeyboardInterrupt)"
        if reply.get("ename") == "StdinNotImplementedError":
            return "error", STDIN_NOTE
        summary = f"{reply.get('ename', 'Error')}: {reply.get('evalue', '')}".rstrip(": ")
        return "error", cut_middle(summary, 500)

    # ------------------------------------------------------------------------------ files
    @property
    def files_available(self) -> bool:
        """Whether upload/list/read work: the gateway offers Jupyter's contents API."""
        if self._files is None:
            try:
                response = self._http("GET", "", params={"content": "0"}, timeout=self.connect_timeout)
            except GatewayError:
                return False  # unreachable now: ask again next time
            if response.status_code in (401, 403):
                return False  # the token is refused: ask again once it is fixed
            self._files = response.status_code == 200
        return self._files

    @property
    def files_note(self) -> str:
        return "" if self.files_available else self.files_reason

    def _http(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        url = f"{self.url}/api/contents/{quote(path)}" if path else f"{self.url}/api/contents"
        try:
            kwargs.setdefault("timeout", self.connect_timeout + 20)
            return httpx.request(method, url, headers=self._headers(), **kwargs)
        except httpx.HTTPError as exc:
            raise GatewayError(f"the kernel gateway at {self.url} is unreachable ({type(exc).__name__}: {exc})") from exc

    def _require_files(self) -> None:
        if not self.files_available:
            raise GatewayError(self.files_reason)

    def _enter_folder(self) -> None:
        """With a contents API, the kernel works in this session's own folder of it."""
        if not self.files_available:
            return
        if not self._folder_made:
            response = self._http("PUT", self._folder, json={"type": "directory"})
            if response.status_code not in (200, 201):
                raise GatewayError(f"could not create {self._folder!r} through the contents API ({response.status_code})")
            self._folder_made = True
        msg_id = self._kc.execute(f"import os as _o; _o.chdir({self._folder!r}); del _o", silent=True,
                                  store_history=False)
        until = time.monotonic() + self.startup_timeout
        reply = None
        while time.monotonic() < until and reply is None:
            msg = self._get(self._kc.shell_channel, 0.2)
            if msg is not None and msg["parent_header"].get("msg_id") == msg_id:
                reply = msg["content"]
        self._drain(self._kc.iopub_channel)
        if reply is None or reply.get("status") != "ok":
            # the kernel does not start in the contents API's root (a server whose cwd is not its
            # root_dir): what we upload would not be where the code looks, so offer no files
            self._files = False
            self.files_reason = (
                "file transfer is unavailable for this executor (the gateway's contents API does not "
                "serve the kernel's working directory)"
            )

    def upload(self, name: str, data: bytes) -> PurePosixPath:
        """Save data as <name> in the kernel's folder, through the contents API."""
        self._require_files()
        safe = safe_name(name)
        if len(data) > self.config.max_file_bytes:
            raise GatewayError(f"{safe!r} is {len(data)} bytes; the file size limit is {self.config.max_file_bytes} bytes")
        if not self._folder_made:
            self.start()
        body = {"type": "file", "format": "base64", "content": base64.b64encode(bytes(data)).decode("ascii")}
        response = self._http("PUT", f"{self._folder}/{safe}", json=body)
        if response.status_code not in (200, 201):
            raise GatewayError(f"could not upload {safe!r} through the contents API ({response.status_code})")
        return PurePosixPath(safe)

    def restore_file(self, path: str, data: bytes) -> str:
        """Write a kept file back to its relative path in the kernel's folder, its folders made first,
        through the contents API; the path is checked like the local kernel's (files.restore_parts)."""
        self._require_files()
        parts = restore_parts(path)
        if len(data) > self.config.max_file_bytes:
            raise GatewayError(f"{path[:200]!r} is {len(data)} bytes; the file size limit is {self.config.max_file_bytes} bytes")
        if not self._folder_made:
            self.start()
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            response = self._http("PUT", f"{self._folder}/{folder}", json={"type": "directory"})
            if response.status_code not in (200, 201):
                raise GatewayError(f"could not make the folder {folder!r} through the contents API ({response.status_code})")
        relative = "/".join(parts)
        body = {"type": "file", "format": "base64", "content": base64.b64encode(bytes(data)).decode("ascii")}
        response = self._http("PUT", f"{self._folder}/{relative}", json=body)
        if response.status_code not in (200, 201):
            raise GatewayError(f"could not restore {relative!r} through the contents API ({response.status_code})")
        return relative

    def list_files(self) -> list[WorkFile]:
        """Files of the kernel's folder (names relative to it); [] without a contents API."""
        if not self.files_available or not self._folder_made:
            return []
        response = self._http("GET", self._folder, params={"content": "1"})
        if response.status_code != 200:
            return []
        entries = response.json().get("content") or []
        files = [WorkFile(e["name"], int(e.get("size") or 0)) for e in entries
                 if e.get("type") != "directory" and not e["name"].startswith(".")]
        return sorted(files, key=lambda f: f.path)[:1000]

    def read_file(self, name: str | PurePosixPath, max_bytes: int = 100 * _MiB) -> bytes:
        """The bytes of a file of the kernel's folder, through the contents API."""
        self._require_files()
        safe = safe_name(str(name))
        response = self._http("GET", f"{self._folder}/{safe}", params={"content": "1", "format": "base64", "type": "file"})
        if response.status_code != 200:
            raise GatewayError(f"cannot read {safe!r} through the contents API ({response.status_code})")
        data = base64.b64decode(response.json().get("content") or "")
        if len(data) > max_bytes:
            raise GatewayError(f"{safe!r} is larger than {max_bytes} bytes")
        return data


def _merge_streams(outputs: list[Output]) -> list[Output]:
    merged: list[Output] = []
    for out in outputs:
        if merged and out.kind in ("stdout", "stderr") and merged[-1].kind == out.kind:
            merged[-1] = Output(kind=out.kind, text=merged[-1].text + out.text)
        else:
            merged.append(out)
    return merged
