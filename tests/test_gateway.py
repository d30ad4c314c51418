"""Gateway kernels against a real `jupyter kernelgateway` on 127.0.0.1 with a token: ordered outputs
that stream while the code runs, timeouts, interrupt, restart, per-session kernels with idle culling,
the remote status, files, one test per gateway error, and the CLI `exec`."""

from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path

import httpx
import pytest

from composite.errors import ConfigError, GatewayError, SandboxError
from composite.sandbox import SandboxConfig, SandboxManager
from composite.sandbox.gateway import FILES_UNAVAILABLE, GatewayExecutor
from tests.kernel_gateway import DroppableProxy, free_port, start_jupyter_server, start_kernel_gateway

ROOT = Path(__file__).resolve().parent.parent
CONFIG = SandboxConfig(interrupt_grace=3.0, prestart=0)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    kg = start_kernel_gateway(tmp_path_factory.mktemp("kg"))
    yield kg
    kg.stop()


@pytest.fixture(scope="module")
def executor(gateway):
    ex = GatewayExecutor(gateway.url, gateway.token, CONFIG)
    ex.start()
    yield ex
    ex.shutdown()


def _released_program(go: Path) -> str:
    """Prints, then waits until the renderer creates `go` (30 s at most), then prints whether it did:
    'released' proves the first line reached the renderer while the program was still running."""
    return (
        "import os, time\n"
        "print('first', flush=True)\n"
        f"deadline = time.time() + 30\n"
        f"while not os.path.exists({str(go)!r}) and time.time() < deadline:\n"
        "    time.sleep(0.05)\n"
        f"print('released' if os.path.exists({str(go)!r}) else 'not released')\n"
    )


def test_status_is_remote_with_the_gateway_url_never_full(executor, gateway):
    status = executor.status()
    assert status.isolation == "remote" and status.kind == "gateway" and status.ready
    assert status.isolation_note == f"remote: isolation is the gateway's ({gateway.url})"


def test_outputs_stream_in_order_while_the_code_runs(executor, tmp_path):
    go = tmp_path / "go"
    seen: list[str] = []

    def on_output(out):
        seen.append(out.text)
        if out.text.startswith("first"):
            go.touch()  # the program waits for this: it is still running when the line arrives

    result = executor.execute(_released_program(go) + "21 * 2", on_output=on_output)
    assert result.status == "ok"
    assert seen == ["first\n", "released\n", "42"]
    assert [(o.kind, o.text) for o in result.outputs] == [("stdout", "first\nreleased\n"), ("result", "42")]


def test_errors_images_and_state_between_runs(executor):
    assert executor.execute("value = 6 * 7").status == "ok"
    assert executor.execute("print(value)").text().strip() == "42"
    result = executor.execute("1/0")
    assert result.status == "error" and "ZeroDivisionError" in result.observation()
    plot = executor.execute("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()")
    image = plot.images[0]
    assert image.mime == "image/png" and (executor.workdir / image.filename).read_bytes() == image.data


def test_timeout_interrupts_and_keeps_variables(executor):
    executor.execute("kept = 'yes'")
    result = executor.execute("while True:\n    pass", timeout=1)
    assert result.status == "timeout" and "interrupted" in result.message
    assert executor.execute("print(kept)").text().strip() == "yes"


def test_code_ignoring_the_interrupt_is_restarted_after_the_grace(executor):
    executor.execute("lost = 1")
    code = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.1)"
    result = executor.execute(code, timeout=1)
    assert result.status == "timeout" and "restarted" in result.message
    assert "NameError" in executor.execute("print(lost)").observation()


def test_interrupt_from_another_thread_stops_the_running_code(executor):
    started = threading.Event()
    timer = threading.Thread(target=lambda: (started.wait(30), executor.interrupt()))
    timer.start()
    result = executor.execute("import time\nprint('go', flush=True)\ntime.sleep(60)",
                              on_output=lambda out: started.set())
    timer.join()
    assert result.status == "interrupted"


def test_kernel_death_is_reported_and_the_next_run_works(executor):
    result = executor.execute("import os\nos._exit(1)", timeout=30)
    assert result.status == "died" and "variables were lost" in result.message
    assert executor.execute("print('alive')").text().strip() == "alive"


def test_file_transfer_is_unavailable_without_a_contents_api(executor):
    assert executor.status().files_available is False
    assert executor.list_files() == []
    with pytest.raises(GatewayError, match="file transfer is unavailable for this executor"):
        executor.upload("data.csv", b"a,b\n")
    assert FILES_UNAVAILABLE.startswith("file transfer is unavailable for this executor")


def test_files_go_through_the_contents_api_when_the_server_offers_one(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    server = start_jupyter_server(root)
    alice, bob = (GatewayExecutor(server.url, server.token, CONFIG) for _ in range(2))
    try:
        assert alice.status().files_available
        assert alice.upload("../../data.csv", b"a,b\n1,2\n").name == "data.csv"  # a plain name, never a path
        result = alice.execute("print(open('data.csv').read().strip())\nopen('out.txt', 'w').write('made here')")
        assert result.text("stdout") == "a,b\n1,2\n"
        assert [f.path for f in alice.list_files()] == ["data.csv", "out.txt"]
        assert alice.read_file("out.txt") == b"made here"
        # a reopened conversation's kept file goes back into its sub-folder; a path out of the folder is refused
        assert alice.restore_file("kept/sub/k.txt", b"kept") == "kept/sub/k.txt"
        assert alice.execute("print(open('kept/sub/k.txt').read())").text("stdout") == "kept\n"
        with pytest.raises(SandboxError, match="invalid workdir path"):
            alice.restore_file("../../escape.txt", b"no")
        bob.start()  # another session: its own folder, it sees none of alice's files
        assert bob.list_files() == [] and "FileNotFoundError" in bob.execute("open('data.csv')").observation()
        assert not (root / "data.csv").exists()  # each session's files are in a folder of its own
    finally:
        alice.shutdown()
        bob.shutdown()
        server.stop()


def test_manager_gives_each_session_its_own_kernel_and_culls_idle_ones(gateway):
    manager = SandboxManager(CONFIG, gateway=(gateway.url, gateway.token))
    try:
        alice, bob = manager.get("alice"), manager.get("bob")
        first = alice.execute("secret = 'alice'")
        # a lost first request would wait out the 60 s timeout and still pass the NameError check below
        assert first.status == "ok", first.message
        assert "NameError" in bob.execute("print(secret)").observation()
        assert alice.kernel_id != bob.kernel_id
        kernel_url = f"{gateway.url}/api/kernels/{alice.kernel_id}"
        headers = {"Authorization": f"token {gateway.token}"}
        assert httpx.get(kernel_url, headers=headers).status_code == 200
        culled = manager.cull_idle(now=time.monotonic() + CONFIG.idle_timeout + 1)
        assert sorted(culled) == ["alice", "bob"]
        assert httpx.get(kernel_url, headers=headers).status_code == 404  # the remote kernel is gone
    finally:
        manager.shutdown_all()


# -- one test per gateway error: each is a GatewayError with a clear message, and a retry works -----
def test_unreachable_gateway():
    ex = GatewayExecutor(f"http://127.0.0.1:{free_port()}", "token", CONFIG)
    with pytest.raises(GatewayError, match=r"is unreachable"):
        ex.execute("print(1)")
    assert "unreachable" in str(ex.start_error)
    ex.shutdown()


def test_wrong_token_is_refused(gateway):
    ex = GatewayExecutor(gateway.url, "not-the-token", CONFIG)
    with pytest.raises(GatewayError, match=r"refused the token \(401 Unauthorized\)"):
        ex.start()
    ex.token = gateway.token  # the session can retry with the right token
    assert ex.execute("print(2)").text().strip() == "2"
    ex.shutdown()


def test_kernel_start_refused(gateway):
    ex = GatewayExecutor(gateway.url, gateway.token, CONFIG, kernel_name="no-such-kernel")
    with pytest.raises(GatewayError, match="refused to start a kernel"):
        ex.start()
    ex.shutdown()


class _ShutDownDuringKernelInfo:
    """A kernel client whose first kernel_info request crosses a shutdown() from another thread (the page
    closing while the background start waits for the kernel)."""

    def __init__(self, executor: GatewayExecutor):
        self.executor = executor
        self.shell_channel, self.iopub_channel = queue.Queue(), queue.Queue()

    def kernel_info(self) -> str:
        self.executor.shutdown()
        return "kernel-info-1"

    def stop_channels(self) -> None:
        pass


def test_a_shutdown_while_the_kernel_starts_is_a_gateway_error():
    # the start thread must end with a GatewayError (kept in start_error), not an AttributeError on the
    # channels shutdown() dropped
    ex = GatewayExecutor(f"http://127.0.0.1:{free_port()}", "token", CONFIG)
    ex._kc = _ShutDownDuringKernelInfo(ex)
    with pytest.raises(GatewayError, match="shut down while its kernel started"):
        ex._wait_kernel_ready()


def test_websocket_dropped_mid_execution_then_retry(gateway):
    proxy = DroppableProxy(gateway.port)  # the network between the app and the gateway
    ex = GatewayExecutor(proxy.url, gateway.token, CONFIG)
    try:
        ex.execute("kept = 7")

        def on_output(out):
            if out.text.startswith("running"):
                proxy.drop()

        result = ex.execute("import time\nprint('running', flush=True)\ntime.sleep(3)\nprint('late')",
                            on_output=on_output)
        assert result.status == "disconnected" and "was lost while the code ran" in result.message
        assert result.text() == "running\n"  # what arrived before the drop is kept
        with pytest.raises(GatewayError, match="unreachable"):  # still down: one clear error
            ex.execute("print(kept)")
        proxy.resume()
        assert ex.execute("print(kept)").text().strip() == "7"  # the retry reconnects to the same kernel
    finally:
        ex.shutdown()
        proxy.close()


def test_bad_url_is_a_config_error():
    with pytest.raises(ConfigError, match="http://host:port"):
        GatewayExecutor("ftp://example.org")


# -- the CLI `exec`: one JSON line per output, written and flushed while the code runs ----------
class _Terminal:
    """stdout for `main()`: records each flushed line; calls on_line with it as it arrives."""

    def __init__(self, on_line=None):
        self.buffer, self.lines, self.on_line = "", [], on_line

    def write(self, text):
        self.buffer += text

    def flush(self):
        while "\n" in self.buffer:
            line, self.buffer = self.buffer.split("\n", 1)
            self.lines.append(json.loads(line))
            if self.on_line is not None:
                self.on_line(self.lines[-1])


def _exec(gateway, code, token=None, on_line=None):
    import io

    from composite.cli import main

    out = _Terminal(on_line)
    status = main(["exec", "--kernel-gateway", gateway.url, "--gateway-token", token or gateway.token],
                  out=out, err=io.StringIO(), stdin=io.StringIO(code))
    return status, out.lines


def test_cli_exec_prints_each_line_as_it_arrives(gateway, tmp_path):
    go = tmp_path / "go"
    status, lines = _exec(gateway, _released_program(go),
                          on_line=lambda line: line.get("text") == "first\n" and go.touch())
    assert status == 0
    assert lines[0] == {"kind": "stdout", "text": "first\n", "filename": ""}
    assert lines[1]["text"] == "released\n"  # the first line was out (flushed) before the program went on
    assert lines[-1]["status"] == "ok" and lines[-1]["isolation"] == "remote"


def test_cli_exec_reports_a_refused_token(gateway):
    status, lines = _exec(gateway, "print(1)", token="wrong")
    assert status == 3 and lines[-1]["status"] == "sandbox_error" and "401" in lines[-1]["message"]


def test_cli_rejects_a_gateway_token_without_a_gateway(capsys):
    from composite.cli import main

    assert main(["exec", "--gateway-token", "t"]) == 2
    assert "--gateway-token needs --kernel-gateway URL" in capsys.readouterr().err


# -- the agent: live output events while the code runs, the whole result as the observation ------
def _agent_history(code: str):
    from composite.messages import Message
    from composite.prompts import system_prompt

    return [Message("system", system_prompt("code")), Message("user", "run it"),
            Message("assistant", f"```python\n{code}\n```", "interpreter")]


def test_agent_yields_output_events_while_the_code_runs(executor, tmp_path):
    from composite.agent import Agent
    from composite.events import Observation, OutputDelta
    from composite.messages import SamplingParams
    from tests.helpers import ScriptedBackend

    go = tmp_path / "go"
    agent = Agent(ScriptedBackend(["\nDone."]), "code", sandbox=executor)
    history = _agent_history(_released_program(go))
    order = []
    for event in agent.run(history, SamplingParams(max_new_tokens=8)):
        if isinstance(event, OutputDelta):
            order.append(event.output.text)
            if event.output.text == "first\n":
                go.touch()  # the renderer got the first line: only now may the program go on
        elif isinstance(event, Observation):
            order.append("observation")
            assert event.message.content == "first\nreleased"  # the model sees the whole ordered result
    assert order == ["first\n", "released\n", "observation"]


def test_agent_code_review_edit_and_reject(executor):
    from composite.agent import Agent, Decision
    from composite.events import ApprovalNeeded, Done
    from composite.messages import SamplingParams
    from tests.helpers import ScriptedBackend

    params = SamplingParams(max_new_tokens=8)
    agent = Agent(ScriptedBackend(["\nOk.", "\nOk."]), "code", sandbox=executor, policy="ask")
    history = _agent_history("print('model')")
    events = list(agent.run(history, params))
    assert isinstance(events[-2], ApprovalNeeded) and events[-1] == Done("awaiting_approval")
    assert len(history) == 3  # nothing ran
    list(agent.run(history, params, decision=Decision("edit", code="print('user')")))
    assert history[2].content == "```python\nprint('user')\n```"  # the model sees the code that ran
    assert history[2].extra["edited"] and history[2].extra["original_code"] == "print('model')"
    assert history[3].content == "user"
    rejected = _agent_history("print('model')")
    list(agent.run(rejected, params, decision=Decision("reject")))
    assert rejected[3].role == "observation" and "declined" in rejected[3].content


# -- the Code page (AppTest) on the gateway ------------------------------------------------------
@pytest.fixture
def code_page(gateway, tiny_model_dir, monkeypatch):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MODEL_PATH", str(tiny_model_dir))
    monkeypatch.setenv("COMPOSITE_KERNEL_GATEWAY", gateway.url)
    monkeypatch.setenv("COMPOSITE_GATEWAY_TOKEN", gateway.token)
    monkeypatch.setenv("COMPOSITE_SANDBOX_PRESTART", "0")
    at = AppTest.from_file(str(ROOT / "pages" / "code.py"), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    at.number_input(key="code_max_new").set_value(4)
    at.slider(key="code_temperature").set_value(0.0)
    at.run()
    yield at
    st.cache_resource.clear()  # AppTest never ends its session: this shuts the kernels down


def _pending(at, code, decision=None):
    at.session_state["code_history"] = _agent_history(code)
    if decision is not None:
        at.session_state["code_decision"] = decision


def test_code_page_runs_on_the_gateway_with_live_output_and_review(code_page, gateway):
    from composite.agent import Decision

    at = code_page
    warnings = [w.value for w in at.sidebar.warning]
    assert f"remote: isolation is the gateway's ({gateway.url})" in warnings
    assert any("file transfer is unavailable for this executor" in i.value for i in at.sidebar.info)
    assert "code_uploads" not in [u.key for u in at.sidebar.get("file_uploader")]  # no upload box without files
    _pending(at, "print(6 * 7)", Decision("run"))
    at.run()
    assert not at.exception
    assert at.session_state["code_history"][3].content == "42"
    # ask before running: off by default, its state visible; then each choice
    assert at.toggle(key="code_ask").value is False
    assert any("Asking before each run: off" in c.value for c in at.sidebar.caption)
    at.toggle(key="code_ask").set_value(True).run()
    assert any("Asking before each run: **on**" in c.value for c in at.sidebar.caption)
    for choice in ("run", "edited", "reject"):
        _pending(at, "print('from the model')")
        at.run()
        assert len(at.session_state["code_history"]) == 3  # nothing ran before the user chose
        box = next(t for t in at.text_area if t.key.startswith("code_edit_code_"))
        assert box.value == "print('from the model')"
        if choice == "run":
            at.button(key="code_approve_run").click().run()
        elif choice == "edited":
            box.set_value("print('from the user')")
            at.button(key="code_approve_edited").click().run()
        else:
            at.button(key="code_reject_code").click().run()
        assert not at.exception
        history = at.session_state["code_history"]
        expected = {"run": "from the model", "edited": "from the user"}.get(choice)
        assert history[3].content == expected if expected else "declined" in history[3].content
        assert bool(history[2].extra.get("edited")) == (choice == "edited")
        if choice == "edited":
            assert history[2].content == "```python\nprint('from the user')\n```"


def test_code_page_reports_a_refused_token_and_stays_up(code_page):
    from composite.agent import Decision

    code_page.text_input(key="code_gateway_token").set_value("wrong").run()
    _pending(code_page, "print(1)", Decision("run"))
    code_page.run()
    assert not code_page.exception
    observation = code_page.session_state["code_history"][3]
    assert observation.role == "observation" and "refused the token (401" in observation.content


# -- the CLI `code` with the embedded model, on the gateway --------------------------------------
def _cli_code(gateway, *extra, stdin=""):
    import io

    from composite.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = main(["code", "Compute 1234+4321 with Python.", "--kernel-gateway", gateway.url, "--gateway-token",
                 gateway.token, "--temperature", "0", "--max-new-tokens", "200", "--json", *extra],
                out=out, err=err, stdin=io.StringIO(stdin))
    messages = [json.loads(line) for line in out.getvalue().splitlines()]
    return code, messages, err.getvalue()


@pytest.mark.parametrize("answer,expected", [("r\n", "5555"), ("e\nprint(2 + 2)\n.\n", "4"), ("n\n", "declined")])
def test_cli_code_ask_with_the_embedded_model_on_the_gateway(gateway, answer, expected):
    code, messages, err = _cli_code(gateway, "--ask", stdin=answer)
    assert code == 0, err
    assert f"sandbox: remote: isolation is the gateway's ({gateway.url})" in err
    assert "The model wants to run this code:\nprint(1234+4321)" in err
    observation = next(m for m in messages if m["role"] == "observation")
    assert expected in observation["content"]
    if answer.startswith("r"):
        assert "5555" in messages[-1]["content"]  # the model states the result
    if answer.startswith("e"):
        call = next(m for m in messages if m["role"] == "assistant" and m["metadata"] == "interpreter")
        assert "print(2 + 2)" in call["content"]  # the history holds the code that ran


def test_agent_end_to_end_with_the_embedded_model_on_the_gateway(executor):
    from composite.agent import Agent
    from composite.events import Done, Observation, OutputDelta
    from composite.messages import Message, SamplingParams
    from composite.prompts import system_prompt
    from composite.runtime import load_model

    history = [Message("system", system_prompt("code")), Message("user", "Compute 1234+4321 with Python.")]
    events = list(Agent(load_model(None, device="cpu"), "code", sandbox=executor).run(
        history, SamplingParams(temperature=0, max_new_tokens=200)))
    assert [e.output.text for e in events if isinstance(e, OutputDelta)] == ["5555\n"]
    assert next(e for e in events if isinstance(e, Observation)).message.content == "5555"
    assert "5555" in history[-1].content and events[-1] == Done("answered")
