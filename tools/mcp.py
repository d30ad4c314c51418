"""MCP servers as a tool source: read the `mcpServers` config, start stdio servers as child processes or
reach streamable-HTTP servers by URL, and list and call their tools through the official `mcp` SDK.

The SDK is async: every server lives in one task on a dedicated event-loop thread, and the registry calls
it through sync wrappers with timeouts. A server that fails to start, crashes or stops answering is
reported by name and its tools become unavailable; the other servers keep working. `close()` (also run
at interpreter exit) stops every child process this manager started.
"""
from __future__ import annotations

import asyncio
import atexit
import base64
import json
import os
import re
import tempfile
import threading
import weakref
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable
from typing import Any

from composite.errors import ConfigError, McpError, ToolTimeoutError

from .calling import ImageData, ToolOutput
from .registry import Tool
from .schema import RESERVED_NAMES, valid_tool_name

__all__ = [
    "CONFIG_ENV",
    "SEPARATOR",
    "ServerConfig",
    "ServerStatus",
    "McpManager",
    "config_path",
    "load_config",
    "tool_name",
    "registry_names",
]

CONFIG_ENV = "COMPOSITE_MCP_CONFIG"
DEFAULT_CONFIG = "mcp.json"
SEPARATOR = "__"  # registry name of an MCP tool: <server>__<tool>
STARTUP_TIMEOUT = 30.0  # seconds a server has to answer the handshake; $COMPOSITE_MCP_STARTUP_TIMEOUT overrides
_SERVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
_STDERR_TAIL = 600


@dataclass
class ServerConfig:
    """One entry of `mcpServers`: a stdio command (command, args, env, cwd) or a URL (url, headers)."""

    name: str
    command: str = ""
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def transport(self) -> str:
        return "http" if self.url else "stdio"

    def target(self) -> str:
        """What the server is, for people: the command line or the URL (never the headers: they hold tokens)."""
        return self.url if self.url else " ".join([self.command, *self.args])


@dataclass
class ServerStatus:
    """Where a server stands: starting, running, failed (to start), crashed, unresponsive or stopped."""

    name: str
    transport: str
    target: str
    state: str = "starting"
    error: str = ""
    tools: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # tools skipped at registration (name clashes)

    @property
    def available(self) -> bool:
        return self.state == "running"

    def describe(self) -> str:
        text = f"MCP server {self.name!r} ({self.transport}): {self.state}"
        if self.state == "running":
            text += f", {len(self.tools)} tool(s)"
        if self.error:
            text += f": {self.error}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"server": self.name, "transport": self.transport, "target": self.target, "state": self.state,
                "error": self.error, "tools": list(self.tools), "problems": list(self.problems)}


# ---------------------------------------------------------------------------------------------------
# configuration


def config_path(explicit: str | Path | None = None) -> Path | None:
    """The MCP config file: `explicit` (--mcp-config), else $COMPOSITE_MCP_CONFIG, else ./mcp.json if it exists."""
    if explicit:
        return Path(explicit).expanduser()
    configured = os.environ.get(CONFIG_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    default = Path(DEFAULT_CONFIG)
    return default if default.is_file() else None


def _strings(value: Any, what: str, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"MCP server {name!r}: {what} must be a list of strings, got {json.dumps(value)[:80]}")
    return list(value)


def _string_map(value: Any, what: str, name: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigError(f"MCP server {name!r}: {what} must be an object of strings")
    return dict(value)


def parse_config(data: Any, source: str = "the MCP config") -> list[ServerConfig]:
    """`{"mcpServers": {name: {...}}}` to ServerConfigs; ConfigError naming the entry and what was expected."""
    expected = 'expected {"mcpServers": {"name": {"command": ..., "args": [...]} or {"url": "http://..."}}}'
    if not isinstance(data, dict) or not isinstance(data.get("mcpServers"), dict):
        raise ConfigError(f"{source}: no \"mcpServers\" object; {expected}")
    servers = []
    for name, entry in data["mcpServers"].items():
        if not _SERVER_NAME.match(name) or SEPARATOR in name:
            raise ConfigError(
                f"{source}: server name {name!r} must be 1-32 letters, digits, '_' or '-' (no '{SEPARATOR}'), "
                "since it prefixes its tools' names"
            )
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: server {name!r} must be an object; {expected}")
        command, url = entry.get("command"), entry.get("url")
        if bool(command) == bool(url):
            raise ConfigError(f"{source}: server {name!r} needs exactly one of \"command\" (stdio) or \"url\" (HTTP)")
        if command is not None and not isinstance(command, str):
            raise ConfigError(f"{source}: server {name!r}: command must be a string")
        if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
            raise ConfigError(f"{source}: server {name!r}: url must start with http:// or https://, got {url!r}")
        cwd = entry.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            raise ConfigError(f"{source}: server {name!r}: cwd must be a string")
        servers.append(ServerConfig(
            name=name,
            command=command or "",
            args=_strings(entry.get("args", []), "args", name),
            env=_string_map(entry.get("env", {}), "env", name),
            cwd=cwd,
            url=url or "",
            headers=_string_map(entry.get("headers", {}), "headers", name),
        ))
    return servers


def load_config(path: str | Path) -> list[ServerConfig]:
    """Read and check an MCP config file."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the MCP config {str(file)!r}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"the MCP config {str(file)!r} is not valid JSON: {exc}") from exc
    return parse_config(data, f"MCP config {str(file)!r}")


def _clean(tool: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", tool)[:64] or "_"


def tool_name(server: str, tool: str) -> str:
    """The prefixed registry name of an MCP tool: `<server>__<tool>` (used when the bare name is taken).

    Characters a prompt's metadata line cannot hold become '_', and the name is cut to 64 characters.
    """
    return f"{server}{SEPARATOR}{_clean(tool)}"[:64]


def registry_names(listed: dict[str, list[str]], taken: set[str]) -> dict[tuple[str, str], str]:
    """The naming rule: an MCP tool keeps its bare name when it is unique among every registered tool and
    every server's tools; otherwise each tool sharing that name is `<server>__<tool>`."""
    counts: dict[str, int] = {}
    for tools in listed.values():
        for tool in tools:
            counts[_clean(tool)] = counts.get(_clean(tool), 0) + 1
    names = {}
    for server, tools in listed.items():
        for tool in tools:
            bare = _clean(tool)
            unique = counts[bare] == 1 and bare not in taken and bare not in RESERVED_NAMES and valid_tool_name(bare)
            names[(server, tool)] = bare if unique else tool_name(server, tool)
    return names


# ---------------------------------------------------------------------------------------------------
# results


def _output_of(result: Any) -> ToolOutput:
    """An MCP CallToolResult as text (text blocks, then JSON of structured content or resources) and images."""
    texts: list[str] = []
    images: list[ImageData] = []
    for block in getattr(result, "content", None) or []:
        kind = getattr(block, "type", "")
        if kind == "text":
            texts.append(block.text)
        elif kind == "image":
            try:
                images.append(ImageData(block.mime_type, base64.b64decode(block.data, validate=True)))
            except ValueError:
                texts.append(f"[an image ({block.mime_type}) that is not valid base64 was dropped]")
        elif kind == "resource":
            resource = block.resource
            text = getattr(resource, "text", None)
            texts.append(text if text is not None else f"[resource {resource.uri} ({getattr(resource, 'mime_type', '')})]")
        elif kind == "resource_link":
            texts.append(f"[resource {getattr(block, 'uri', '')}]")
        else:
            texts.append(f"[{kind or 'unknown'} content]")
    structured = getattr(result, "structured_content", None)
    if not texts and structured is not None:
        texts.append(json.dumps(structured, ensure_ascii=False, separators=(",", ":")))
    return ToolOutput("\n".join(texts), images)


# ---------------------------------------------------------------------------------------------------
# the manager


class _Server:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.status = ServerStatus(config.name, config.transport, config.target())
        self.client: Any = None
        self.listed: list[Any] = []
        self.ready = threading.Event()
        self.stop: asyncio.Event | None = None
        self.task: asyncio.Task | None = None
        self.stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace", prefix="mcp-stderr-")

    def stderr_tail(self) -> str:
        try:
            self.stderr.flush()
            self.stderr.seek(0, os.SEEK_END)
            size = self.stderr.tell()
            self.stderr.seek(max(0, size - 4 * _STDERR_TAIL))
            lines = [line.strip() for line in self.stderr.read().splitlines() if line.strip()]
        except (OSError, ValueError):
            return ""
        tail = " | ".join(lines[-3:])
        return tail[-_STDERR_TAIL:]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        leaves = exc.exceptions
        return "; ".join(dict.fromkeys(_describe(sub) for sub in leaves))
    if isinstance(exc, FileNotFoundError):
        return f"command not found ({exc.filename or exc})"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _startup_timeout() -> float:
    raw = os.environ.get("COMPOSITE_MCP_STARTUP_TIMEOUT", "").strip()
    if not raw:
        return STARTUP_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ConfigError(f"COMPOSITE_MCP_STARTUP_TIMEOUT must be a positive number of seconds, got {raw!r}")
    return value


class McpManager:
    """The MCP servers of one app or CLI session: started together, closed together (children included)."""

    def __init__(self, servers: list[ServerConfig], startup_timeout: float | None = None) -> None:
        self._servers = {config.name: _Server(config) for config in servers}
        self.startup_timeout = startup_timeout if startup_timeout is not None else _startup_timeout()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, path: str | Path | None = None, startup_timeout: float | None = None) -> "McpManager | None":
        """A started manager for the config found at path / $COMPOSITE_MCP_CONFIG / ./mcp.json (None when
        there is no config or it lists no server)."""
        found = config_path(path)
        if found is None:
            return None
        servers = load_config(found)
        return cls(servers, startup_timeout).start() if servers else None

    # lifecycle -----------------------------------------------------------------------------------

    def start(self) -> "McpManager":
        """Start every server at once and wait (at most startup_timeout) until each runs or fails."""
        if self._loop is not None:
            return self
        # import the SDK here, not in the loop thread, where a slow import would stall every server's start
        import mcp  # noqa: F401
        import mcp.client.stdio  # noqa: F401
        import mcp.client.streamable_http  # noqa: F401

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mcp-event-loop", daemon=True)
        self._thread.start()
        _live_managers.add(self)
        for server in self._servers.values():
            asyncio.run_coroutine_threadsafe(self._launch(server), self._loop).result(60)
        for server in self._servers.values():
            if not server.ready.wait(self.startup_timeout):
                self._fail(server, "failed", f"did not answer within {self.startup_timeout:g} s of starting")
                self._loop.call_soon_threadsafe(self._cancel, server)
        return self

    async def _launch(self, server: _Server) -> None:
        server.stop = asyncio.Event()
        server.task = asyncio.get_running_loop().create_task(self._serve(server), name=f"mcp:{server.config.name}")

    @staticmethod
    def _cancel(server: _Server) -> None:
        if server.task is not None and not server.task.done():
            server.task.cancel()

    async def _serve(self, server: _Server) -> None:
        """Connect, list the tools, then hold the connection open until close() (one task per server)."""
        from contextlib import AsyncExitStack

        from mcp import Client

        config = server.config
        try:
            async with AsyncExitStack() as stack:
                if config.transport == "stdio":
                    from mcp import StdioServerParameters
                    from mcp.client.stdio import stdio_client

                    params = StdioServerParameters(command=config.command, args=config.args, env=config.env or None,
                                                   cwd=config.cwd)
                    transport: Any = stdio_client(params, errlog=server.stderr)
                else:
                    import httpx2
                    from mcp.client.streamable_http import streamable_http_client

                    http = await stack.enter_async_context(
                        httpx2.AsyncClient(headers=config.headers, timeout=httpx2.Timeout(30.0, read=300.0)))
                    transport = streamable_http_client(config.url, http_client=http)
                client = await stack.enter_async_context(Client(transport, mode="legacy"))
                listed, cursor = [], None
                while True:
                    page = await client.list_tools(cursor=cursor)
                    listed.extend(page.tools)
                    cursor = page.next_cursor
                    if not cursor:
                        break
                server.client, server.listed = client, listed
                server.status.tools = [tool.name for tool in listed]  # renamed by tools() when registered
                server.status.state, server.status.error = "running", ""
                server.ready.set()
                assert server.stop is not None
                await server.stop.wait()
        except asyncio.CancelledError:
            if server.status.state in ("starting", "running"):
                server.status.state = "stopped"
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of a user's server must be reported by name, never crash the app
            if server.status.state == "starting":
                detail = _describe(exc)
                if "connection closed" in detail.lower():
                    detail = "the server closed the connection before answering the handshake (did it exit?)"
                tail = server.stderr_tail()
                self._fail(server, "failed", f"could not start: {detail}" + (f" (stderr: {tail})" if tail else ""))
            elif server.status.state == "running":
                self._fail(server, "crashed", _describe(exc))
        finally:
            server.client = None
            server.ready.set()
            if server.status.state == "running":
                server.status.state = "stopped"

    def _fail(self, server: _Server, state: str, error: str) -> None:
        if server.status.state in ("starting", "running"):
            server.status.state, server.status.error = state, error

    def close(self) -> None:
        """Stop every server and its child process; wait for them to end. Safe to call more than once."""
        with self._lock:
            if self._closed or self._loop is None:
                self._closed = True
                return
            self._closed = True
        loop = self._loop

        async def stop_all() -> None:
            tasks = []
            for server in self._servers.values():
                if server.stop is not None:
                    server.stop.set()
                if server.task is not None:
                    tasks.append(server.task)
            if tasks:
                done, pending = await asyncio.wait(tasks, timeout=10)
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.wait(pending, timeout=5)

        try:
            asyncio.run_coroutine_threadsafe(stop_all(), loop).result(20)
        except (FutureTimeout, RuntimeError):
            pass  # the loop is gone or stuck: the children got their stdin closed and exit on EOF
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        if not loop.is_running():
            loop.close()
        for server in self._servers.values():
            if server.status.state in ("starting", "running"):
                server.status.state = "stopped"
            server.stderr.close()
        _live_managers.discard(self)

    def __enter__(self) -> "McpManager":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # what the registry needs ---------------------------------------------------------------------

    def statuses(self) -> list[ServerStatus]:
        return [server.status for server in self._servers.values()]

    def status(self, name: str) -> ServerStatus:
        return self._servers[name].status

    def note_problem(self, server: str, problem: str) -> None:
        if server in self._servers:
            self._servers[server].status.problems.append(problem)

    def tools(self, taken: Iterable[str] = ()) -> list[Tool]:
        """Registry tools for every listed MCP tool, schemas as the servers gave them, named by
        `registry_names` against the names already `taken` in the registry."""
        listed = {name: [tool.name for tool in server.listed] for name, server in self._servers.items()}
        names = registry_names(listed, set(taken))
        tools = []
        for name, server in self._servers.items():
            server.status.tools = []
            for item in server.listed:
                registered = names[(name, item.name)]
                if not valid_tool_name(registered) or registered in RESERVED_NAMES:
                    server.status.problems.append(f"tool {item.name!r} skipped: its name cannot be used")
                    continue
                schema = dict(item.input_schema or {"type": "object", "properties": {}})
                func, invoke = self._callers(name, item.name, registered)
                tools.append(Tool(
                    name=registered,
                    description=(item.description or item.title or item.name).strip(),
                    func=func,
                    model=None,
                    schema=schema,
                    source=f"mcp:{name}",
                    status=self._status_of(name),
                    invoke=invoke,
                ))
                server.status.tools.append(registered)
        return tools

    def _status_of(self, name: str):
        def status() -> str:
            current = self._servers[name].status
            return "" if current.available else f"MCP server {name!r} is {current.state}" + (
                f" ({current.error})" if current.error else "")

        return status

    def _callers(self, server: str, tool: str, registered: str):
        """(func, invoke): func(**arguments) for people, invoke(arguments, timeout) for the registry, which
        hands its timeout to the MCP request so that a timed-out request is cancelled on the wire too."""

        def func(**arguments: Any) -> ToolOutput:
            return self.call(server, tool, arguments)

        def invoke(arguments: dict[str, Any], timeout: float | None) -> ToolOutput:
            return self.call(server, tool, arguments, timeout)

        func.__name__ = func.__qualname__ = registered
        return func, invoke

    def call(self, server_name: str, tool: str, arguments: dict[str, Any], timeout: float | None = 30.0) -> ToolOutput:
        """Call one tool; McpError for a server that is down or answers with an error, ToolTimeoutError."""
        server = self._servers.get(server_name)
        if server is None:
            raise McpError(f"no MCP server named {server_name!r}")
        if not server.status.available or server.client is None or self._loop is None:
            raise McpError(f"MCP server {server_name!r} is {server.status.state}"
                           + (f" ({server.status.error})" if server.status.error else ""))
        future = asyncio.run_coroutine_threadsafe(
            server.client.call_tool(tool, arguments, read_timeout_seconds=timeout), self._loop)
        try:
            result = future.result(None if timeout is None else timeout + 5)
        except FutureTimeout:
            future.cancel()
            raise ToolTimeoutError(f"MCP tool {tool!r} on server {server_name!r} timed out after {timeout:g} s") from None
        except Exception as exc:  # noqa: BLE001 - the SDK raises MCPError, anyio and transport errors alike
            raise self._call_failed(server, tool, exc, timeout) from exc
        if getattr(result, "is_error", False):
            output = _output_of(result)
            raise McpError(f"MCP tool {tool!r} on server {server_name!r} failed: {output.text or 'no details'}")
        return _output_of(result)

    def _call_failed(self, server: _Server, tool: str, exc: BaseException, timeout: float | None) -> Exception:
        text = _describe(exc)
        if "timed out" in text.lower():
            self._check_alive(server)
            return ToolTimeoutError(f"MCP tool {tool!r} on server {server.config.name!r} timed out after {timeout:g} s")
        if "connection closed" in text.lower() or server.task is None or server.task.done():
            tail = server.stderr_tail() if server.config.transport == "stdio" else ""
            self._fail(server, "crashed", f"the connection closed during a call to {tool!r}"
                       + (f" (stderr: {tail})" if tail else ""))
            return McpError(f"MCP server {server.config.name!r} crashed during the call to {tool!r}; "
                            "its tools are unavailable until it is restarted")
        return McpError(f"MCP tool {tool!r} on server {server.config.name!r} failed: {text}")

    def _check_alive(self, server: _Server, timeout: float = 3.0) -> None:
        """After a call timed out: a server that no longer answers a ping is marked unresponsive."""
        client = server.client
        if client is None or self._loop is None:
            return
        import warnings

        with warnings.catch_warnings():  # ping is deprecated for 2026 servers; we connect in legacy mode
            warnings.simplefilter("ignore")
            ping = client.send_ping()
        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(ping, timeout), self._loop)
        try:
            future.result(timeout + 2)
        except Exception as exc:  # noqa: BLE001 - whatever the ping raises, the server is not answering
            self._fail(server, "unresponsive", f"no answer to a ping after a call timed out ({_describe(exc)})")


_live_managers: "weakref.WeakSet[McpManager]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """Children stop with the app even when nobody called close()."""
    for manager in list(_live_managers):
        manager.close()
