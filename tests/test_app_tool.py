"""The Tool page through AppTest: tool list, approval (approve / reject), manual mode and user tool errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from composite.messages import Message
from composite.prompts import system_prompt

ROOT = Path(__file__).resolve().parent.parent
CALL = Message("assistant", '```python\ntool_call(expression="6*7")\n```', "calculator")


@pytest.fixture
def tool_page(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("MODEL_PATH", str(tiny_model_dir))
    at = AppTest.from_file(str(ROOT / "pages" / "tool.py"), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    at.number_input(key="tool_max_new").set_value(4)
    at.slider(key="tool_temperature").set_value(0.0)
    at.run()
    yield at
    at.session_state["tool_history"] = [Message("system", system_prompt("tool"))]


def _pending(at):
    at.session_state["tool_history"] = [Message("system", system_prompt("tool")), Message("user", "6*7?"), CALL]


def test_tools_are_listed_with_toggles(tool_page):
    labels = [t.label for t in tool_page.sidebar.toggle]
    for name in ("calculator", "get_weather", "current_time", "random_number_generator"):
        assert name in labels


def test_ask_before_running_then_approve_runs_the_tool(tool_page):
    tool_page.toggle(key="tool_ask").set_value(True).run()
    _pending(tool_page)
    tool_page.run()
    tool_page.button(key="tool_approve").click().run()
    assert not tool_page.exception
    history = tool_page.session_state["tool_history"]
    assert history[3].role == "observation" and history[3].content == "42"
    assert not [c.value for c in tool_page.caption if c.value.startswith("running")]  # answered: no "running …" left


def test_reject_sends_a_declined_observation(tool_page):
    tool_page.toggle(key="tool_ask").set_value(True).run()
    _pending(tool_page)
    tool_page.run()
    tool_page.button(key="tool_reject").click().run()
    history = tool_page.session_state["tool_history"]
    assert history[3].role == "observation" and "declined" in history[3].content


def test_manual_mode_sends_the_typed_observation(tool_page):
    tool_page.toggle(key="tool_manual").set_value(True).run()
    _pending(tool_page)
    tool_page.run()
    tool_page.text_area(key="tool_manual_text").set_value("forty-two")
    form_button = [b for b in tool_page.button if b.label == "Send observation"][0]
    form_button.click().run()
    history = tool_page.session_state["tool_history"]
    assert history[3].role == "observation" and history[3].content == "forty-two"
    assert history[3].extra.get("manual")


def test_disabled_tool_is_refused_when_called(tool_page):
    tool_page.toggle(key="tool_on_calculator").set_value(False).run()
    tool_page.toggle(key="tool_ask").set_value(True).run()
    _pending(tool_page)
    tool_page.run()
    tool_page.button(key="tool_approve").click().run()
    history = tool_page.session_state["tool_history"]
    assert history[3].role == "observation" and "not available" in history[3].content
    assert not tool_page.exception


def test_broken_user_tool_file_is_reported_by_name(tiny_model_dir, tmp_path, monkeypatch):
    (tmp_path / "bad_tool.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.setenv("TOOLS_PATH", str(tmp_path))
    monkeypatch.setenv("MODEL_PATH", str(tiny_model_dir))
    at = AppTest.from_file(str(ROOT / "pages" / "tool.py"), default_timeout=60)
    at.run()
    if not any("bad_tool.py" in e.value for e in at.sidebar.error):
        at.button(key="tool_reload").click().run()  # the registry is cached per process
    assert any("bad_tool.py" in e.value and "boom at import" in e.value for e in at.sidebar.error)
    assert not at.exception


def test_mcp_servers_are_shown_by_name_and_tool_images_rendered(tiny_model_dir, tmp_path, monkeypatch):
    import base64
    import json
    import sys

    from tests.mcp_server import PNG

    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {
        "dead": {"command": sys.executable, "args": [str(ROOT / "tests" / "mcp_server.py"), "exit"]}}}))
    monkeypatch.setenv("COMPOSITE_MCP_CONFIG", str(config))
    monkeypatch.setenv("MODEL_PATH", str(tiny_model_dir))
    at = AppTest.from_file(str(ROOT / "pages" / "tool.py"), default_timeout=60)
    image = {"mime_type": "image/png", "data": base64.b64encode(PNG).decode()}
    at.session_state["tool_history"] = [
        Message("system", system_prompt("tool")), Message("user", "draw"),
        Message("assistant", '{"name": "red_pixel", "arguments": {}}', "red_pixel", extra={"arguments": {}}),
        Message("observation", "[image 1: image/png, 70 bytes, shown to the user]",
                extra={"tool": "red_pixel", "image_data": [image]}),
    ]
    at.run()
    if not any("MCP server 'dead'" in e.value for e in at.sidebar.error):
        at.button(key="tool_reload").click().run()  # AppTest may hand back an earlier test's cached registry
    assert not at.exception
    assert any("MCP server 'dead' (stdio): failed" in e.value and "refusing to start" in e.value
               for e in at.sidebar.error)
    assert len(at.get("image")) == 1  # the tool's image, shown from the observation's data


def test_manual_mode_asks_one_observation_per_pending_call(tool_page):
    tool_page.toggle(key="tool_manual").set_value(True).run()
    calls = [Message("assistant", '{"name": "calculator", "arguments": {"expression": "1+1"}}', "calculator",
                     extra={"call_id": "c1", "arguments": {"expression": "1+1"}}),
             Message("assistant", '{"name": "current_time", "arguments": {}}', "current_time",
                     extra={"call_id": "c2", "arguments": {}})]
    tool_page.session_state["tool_history"] = [Message("system", system_prompt("tool")), Message("user", "both"), *calls]
    tool_page.run()
    tool_page.text_area(key="tool_manual_text").set_value("two")
    tool_page.text_area(key="tool_manual_text_1").set_value("noon")
    [b for b in tool_page.button if b.label == "Send observation"][0].click().run()
    history = tool_page.session_state["tool_history"]
    assert [(m.content, m.extra.get("call_id")) for m in history[4:6]] == [("two", "c1"), ("noon", "c2")]
    assert not tool_page.exception
