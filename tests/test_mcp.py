"""MCP servers as a tool source, against a real server written with the SDK (tests/mcp_server.py), over
stdio (child processes) and streamable HTTP on 127.0.0.1: listing, schemas, calls, images, errors, a
crash mid-call, a call and a start that never answer, a start that fails, children gone after shutdown,
the agent loop, the embedded model calling an MCP tool, and `tools call` on the command line.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from composite.agent import Agent
from composite.errors import ConfigError
from composite.events import Observation, ToolCall
from composite.messages import Message, SamplingParams
from tests.helpers import ScriptedBackend
from tools import ToolRegistry, build_registry
from tools.mcp import McpManager, ServerConfig, config_path, parse_config, registry_names

SERVER = Path(__file__).with_name("mcp_server.py")
PARAMS = SamplingParams(temperature=0)
SLOW_START = "180"  # seconds for a server's handshake in these tests (not a measurement: a bound)


def _stdio(*args: str, **env: str) -> dict:
    return {"command": sys.executable, "args": [str(SERVER), *args], "env": env}


def _gone(pid: int, wait: float = 15.0) -> bool:
    """Whether the process has ended (polls: the SDK reaps its children asynchronously)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def http_url(tmp_path_factory):
    """The fixture server over streamable HTTP on 127.0.0.1 (one process for the module)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (tmp_path_factory.mktemp("mcp-http") / "server.log").open("w")
    process = subprocess.Popen([sys.executable, str(SERVER), "http", str(port)], stdout=log, stderr=log,
                               env={**os.environ, "FIXTURE_NAME": "web"})
    deadline = time.monotonic() + 90
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the MCP HTTP fixture server did not start (exit {process.poll()})")
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}/mcp"
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:  # uvicorn waits for the hung `hang` request: stop it the hard way
        process.kill()
        process.wait(10)
    log.close()


@pytest.fixture(scope="module")
def config_file(tmp_path_factory, http_url):
    path = tmp_path_factory.mktemp("mcp") / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {
        "fx": _stdio("stdio", FIXTURE_GIVEN="from-config"),
        "victim": _stdio("stdio"),
        "web": {"url": http_url, "headers": {"Authorization": "Bearer test-token"}},
        "dead": _stdio("exit"),
        "nope": {"command": "/nonexistent/mcp-server"},
    }}))
    return path


@pytest.fixture(scope="module")
def registry(config_file):
    os.environ["COMPOSITE_TEST_SECRET"] = "s3cret"  # must not reach the servers (see the env test)
    os.environ["COMPOSITE_MCP_STARTUP_TIMEOUT"] = SLOW_START  # a loaded CI machine starts Python slowly
    try:
        registry, failures = build_registry(mcp_config=config_file)
    finally:
        del os.environ["COMPOSITE_TEST_SECRET"], os.environ["COMPOSITE_MCP_STARTUP_TIMEOUT"]
    assert failures == []
    yield registry
    registry.close()


def _state(registry, name):
    return next(s for s in registry.mcp.statuses() if s.name == name)


# -- config and naming (no servers) ---------------------------------------------------------------------

@pytest.mark.parametrize("data, message", [
    ({}, 'no "mcpServers"'),
    ({"mcpServers": {"a": {"command": "x", "url": "http://h"}}}, "exactly one of"),
    ({"mcpServers": {"a": {}}}, "exactly one of"),
    ({"mcpServers": {"a": {"url": "ftp://h"}}}, "http:// or https://"),
    ({"mcpServers": {"a__b": {"command": "x"}}}, "server name"),
    ({"mcpServers": {"a": {"command": "x", "args": "--flag"}}}, "args must be a list of strings"),
    ({"mcpServers": {"a": {"url": "http://h", "headers": {"X": 1}}}}, "headers must be an object of strings"),
])
def test_bad_configs_are_clear_errors(data, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


def test_a_bad_startup_timeout_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("COMPOSITE_MCP_STARTUP_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="COMPOSITE_MCP_STARTUP_TIMEOUT must be a positive number"):
        McpManager([])


def test_a_broken_config_file_is_reported_and_the_other_tools_load(tmp_path):
    broken = tmp_path / "mcp.json"
    broken.write_text("{not json")
    registry, failures = build_registry(mcp_config=broken)
    assert "calculator" in registry and registry.mcp is None
    assert len(failures) == 1 and "not valid JSON" in str(failures[0])


def test_config_path_flag_then_environment_then_local_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COMPOSITE_MCP_CONFIG", raising=False)
    assert config_path() is None
    (tmp_path / "mcp.json").write_text("{}")
    assert config_path() == Path("mcp.json")
    monkeypatch.setenv("COMPOSITE_MCP_CONFIG", str(tmp_path / "env.json"))
    assert config_path() == tmp_path / "env.json"
    assert config_path(tmp_path / "flag.json") == tmp_path / "flag.json"


def test_naming_rule_bare_when_unique_else_prefixed():
    names = registry_names({"a": ["add", "only_a", "calculator", "odd name!"], "b": ["add"]}, taken={"calculator"})
    assert names[("a", "only_a")] == "only_a"
    assert (names[("a", "add")], names[("b", "add")]) == ("a__add", "b__add")  # two servers share it
    assert names[("a", "calculator")] == "a__calculator"  # a built-in has it
    assert names[("a", "odd name!")] == "odd_name_"


# -- listing and schemas --------------------------------------------------------------------------------

def test_servers_are_listed_by_name_with_their_state(registry):
    assert [(s.name, s.transport, s.state) for s in registry.mcp.statuses()][:3] == [
        ("fx", "stdio", "running"), ("victim", "stdio", "running"), ("web", "http", "running")]
    dead, nope = _state(registry, "dead"), _state(registry, "nope")
    assert dead.state == "failed" and "refusing to start (on purpose)" in dead.error  # its stderr is shown
    assert nope.state == "failed" and "command not found" in nope.error
    assert not dead.tools and not any(t.source == "mcp:dead" for t in registry)


def test_tools_join_the_registry_with_their_schema_as_given(registry):
    add = registry.get("fx__add")  # three servers have `add`, so each is prefixed
    assert add.source == "mcp:fx" and add.description == "Add two integers." and add.available
    assert add.schema["required"] == ["a", "b"] and add.schema["properties"]["a"]["type"] == "integer"
    assert add.schema.get("title") == "addArguments"  # as the server gave it, not rewritten
    assert registry.get("fx__calculator").source == "mcp:fx"  # the built-in keeps `calculator`
    assert registry.get("calculator").source == "function"
    listed = {tool["name"] for tool in registry.chatglm3_tools()}
    assert {"fx__add", "web__echo", "calculator"} <= listed


# -- calls -----------------------------------------------------------------------------------------------

def test_calls_over_stdio_and_http(registry):
    assert registry.call("fx__add", {"a": 2, "b": 3}).observation() == "5"
    assert registry.call("web__echo", {"text": "hi", "times": 2}).observation() == "hi hi"


def test_arguments_are_validated_against_the_schema_before_the_server_sees_them(registry):
    result = registry.call("fx__add", {"a": "two", "c": 1})
    assert not result.ok and "invalid arguments for tool 'fx__add'" in result.error
    assert "missing required argument 'b'" in result.error and "'a'" in result.error


def test_a_tool_error_becomes_an_error_observation(registry):
    result = registry.call("web__fail", {"reason": "testing"})
    assert not result.ok and "failed on purpose: testing" in result.observation()
    assert result.observation().startswith("Error: MCP tool 'fail' on server 'web' failed")


def test_an_image_result_is_kept_for_the_page_and_described_to_the_model(registry):
    result = registry.call("fx__red_pixel", {})
    (image,) = result.images
    assert result.ok and image.mime_type == "image/png" and image.data.startswith(b"\x89PNG")
    assert "image/png" in result.observation() and "shown to the user" in result.observation()


def test_a_stdio_server_gets_the_configured_environment_not_the_apps_secrets(registry):
    assert registry.call("fx__env_var", {"name": "FIXTURE_GIVEN"}).observation() == "from-config"
    assert registry.call("fx__env_var", {"name": "COMPOSITE_TEST_SECRET"}).observation() == "<unset>"
    assert registry.call("fx__env_var", {"name": "PATH"}).observation() not in ("<unset>", "")


def test_a_flood_of_output_is_cut_before_it_reaches_the_model(registry):
    result = registry.call("fx__flood", {"size": 100_000})
    assert result.ok and len(result.observation()) < 4100 and "[truncated, 96000 more characters]" in result.observation()


def test_the_model_cannot_reach_a_server_or_tool_that_is_not_registered(registry):
    for name in ("dead__add", "nope", "fx", "fx__add; rm -rf /", "../fx__add"):
        result = registry.call(name, {})
        assert not result.ok and result.error.startswith(f"unknown tool {name!r}")


def test_a_call_that_never_answers_times_out_and_the_server_keeps_working(registry):
    result = registry.call("fx__hang", {}, timeout=2)
    assert not result.ok and "timed out after 2 s" in result.error
    assert _state(registry, "fx").state == "running"  # it still answers: only that call was slow
    assert registry.call("fx__add", {"a": 1, "b": 1}).observation() == "2"


def test_a_server_that_crashes_mid_call_is_marked_and_the_others_keep_working(registry):
    pid = int(registry.call("victim__pid", {}).observation())
    result = registry.call("victim__crash", {})
    assert not result.ok and "crashed during the call to 'crash'" in result.error
    victim = _state(registry, "victim")
    assert victim.state == "crashed" and not registry.get("victim__add").available
    assert not any(t["name"].startswith("victim__") for t in registry.chatglm3_tools())  # not offered any more
    later = registry.call("victim__add", {"a": 1, "b": 2})
    assert not later.ok and "unavailable" in later.error and "crashed" in later.error
    assert registry.call("fx__add", {"a": 1, "b": 2}).observation() == "3"
    assert _gone(pid)


def test_a_server_that_never_answers_at_start_fails_by_name_and_is_stopped(tmp_path):
    pid_file = tmp_path / "mute.pid"
    config = ServerConfig("mute", command=sys.executable, args=[str(SERVER), "mute"],
                          env={"FIXTURE_PID_FILE": str(pid_file)})
    manager = McpManager([config], startup_timeout=3).start()
    try:
        (status,) = manager.statuses()
        assert status.state == "failed" and "did not answer within 3 s" in status.error and manager.tools() == []
    finally:
        manager.close()
    assert _gone(int(pid_file.read_text()))


def test_child_servers_stop_when_the_session_closes(tmp_path):
    manager = McpManager(parse_config({"mcpServers": {"one": _stdio("stdio")}}), float(SLOW_START)).start()
    registry = ToolRegistry()
    registry.add_mcp(manager)
    pid = int(registry.call("pid", {}).observation())  # the only server: bare names
    assert not _gone(pid, wait=0)
    registry.close()
    assert _gone(pid)
    assert [s.state for s in manager.statuses()] == ["stopped"]
    assert not registry.call("pid", {}).ok  # a closed session's tools are unavailable


def test_child_servers_stop_with_the_app_even_without_close(tmp_path):
    """A process that exits without closing its registry still stops its servers (atexit)."""
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"solo": _stdio("stdio")}}))
    script = ("import sys; from tools import build_registry; r, _ = build_registry(mcp_config=sys.argv[1]); "
              "print([s.describe() for s in r.mcp.statuses()], file=sys.stderr); print(r.call('pid', {}).observation())")
    done = subprocess.run([sys.executable, "-c", script, str(config)], capture_output=True, text=True, timeout=400,
                          cwd=SERVER.parent.parent, env={**os.environ, "COMPOSITE_MCP_STARTUP_TIMEOUT": SLOW_START})
    assert done.returncode == 0, done.stderr[-2000:]
    assert _gone(int(done.stdout.strip().splitlines()[-1]))


# -- through the agent loop --------------------------------------------------------------------------------

def test_the_agent_loop_calls_mcp_tools_like_any_other(registry):
    backend = ScriptedBackend(["fx__add\n```python\ntool_call(a=20, b=22)\n```",
                               "fx__red_pixel\n```python\ntool_call()\n```", "\nDone: 42 and a red pixel."])
    history = [Message("user", "add and draw")]
    events = list(Agent(backend, "tool", registry, max_rounds=3).run(history, PARAMS))
    calls = [e for e in events if isinstance(e, ToolCall)]
    first, second = [e for e in events if isinstance(e, Observation)]
    assert [(c.name, c.arguments) for c in calls] == [("fx__add", {"a": 20, "b": 22}), ("fx__red_pixel", {})]
    assert first.message.content == "42" and first.message.extra["tool"] == "fx__add"
    (image,) = second.message.extra["image_data"]  # the page shows it; the model reads the description
    assert image["mime_type"] == "image/png" and "image/png" in second.message.content
    assert history[-1].content == "Done: 42 and a red pixel."


def test_the_embedded_model_calls_an_mcp_tool(http_url):
    """The embedded model's own call path (generation, ChatGLM3 parse, registry) reaching an MCP server:
    with no built-ins registered, the server's `calculator` keeps its bare name, which the model knows."""
    from composite.backends.local import load_model

    manager = McpManager([ServerConfig("web", url=http_url)], float(SLOW_START)).start()
    registry = ToolRegistry()
    try:
        registry.add_mcp(manager)
        assert registry.get("calculator").source == "mcp:web"
        runtime = load_model(None, device="cpu")
        history = [Message("system", "Answer the question with the tools."), Message("user", "What is 317*24?")]
        agent = Agent(runtime, "tool", registry, enabled_tools=["calculator"], max_rounds=2)
        events = []
        for event in agent.run(history, SamplingParams(temperature=0, max_new_tokens=80)):
            events.append(event)
            if isinstance(event, Observation):
                break  # the call and its result are what this test is about, not the final answer
        call = next(e for e in events if isinstance(e, ToolCall))
        observation = next(e for e in events if isinstance(e, Observation))
        assert call.name == "calculator" and set(call.arguments) == {"expression"}
        assert observation.ok and observation.message.content == str(eval_product(call.arguments["expression"]))
    finally:
        registry.close()


def eval_product(expression: str) -> int:
    """The expected value of `a*b` without evaluating model text."""
    left, right = expression.replace(" ", "").split("*")
    return int(left) * int(right)


# -- the command line ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cli_config(tmp_path_factory, http_url):
    path = tmp_path_factory.mktemp("mcp-cli") / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"web": {"url": http_url}, "dead": _stdio("exit")}}))
    return path


def _cli(argv):
    from composite.cli import main

    out, err = io.StringIO(), io.StringIO()
    return main(argv, out, err), out.getvalue(), err.getvalue()


def test_cli_tools_lists_every_source_and_server_states(cli_config, monkeypatch):
    monkeypatch.setenv("COMPOSITE_MCP_STARTUP_TIMEOUT", SLOW_START)
    code, out, _ = _cli(["tools", "--json", "--mcp-config", str(cli_config)])
    lines = [json.loads(line) for line in out.splitlines()]
    tools = {line["name"]: line for line in lines if "name" in line}
    servers = {line["mcp_server"]["server"]: line["mcp_server"] for line in lines if "mcp_server" in line}
    assert code == 0 and tools["calculator"]["source"] == "function" and tools["web__calculator"]["source"] == "mcp:web"
    assert tools["add"]["parameters"]["required"] == ["a", "b"] and tools["add"]["available"]
    assert servers["web"]["state"] == "running" and "add" in servers["web"]["tools"]
    assert servers["dead"]["state"] == "failed" and "refusing to start" in servers["dead"]["error"]
    code, text, _ = _cli(["tools", "--mcp-config", str(cli_config)])
    assert "MCP server 'dead' (stdio): failed" in text and "add: Add two integers.  [mcp:web]" in text


def test_cli_tools_call_runs_one_tool_as_the_model_would(cli_config, monkeypatch):
    monkeypatch.setenv("COMPOSITE_MCP_STARTUP_TIMEOUT", SLOW_START)
    code, out, err = _cli(["tools", "call", "add", '{"a": 2, "b": 40}', "--mcp-config", str(cli_config)])
    assert (code, out) == (0, "42\n") and "MCP server 'dead'" in err  # the failed server is named
    code, out, _ = _cli(["tools", "--mcp-config", str(cli_config), "call", "add", '{"a": 2}', "--json"])
    result = json.loads(out)
    assert code == 1 and not result["ok"] and "missing required argument 'b'" in result["observation"]
    code, out, _ = _cli(["tools", "call", "calculator", '{"expression": "6*7"}', "--mcp-config", str(cli_config)])
    assert (code, out) == (0, "42\n")
    code, out, _ = _cli(["tools", "call", "hang", '{"seconds": 60}', "--timeout", "1", "--mcp-config", str(cli_config)])
    assert code == 1 and "timed out after 1 s" in out
    code, _, err = _cli(["tools", "call", "add", "[1, 2]"])
    assert code == 2 and "must be a JSON object" in err
