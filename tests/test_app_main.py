"""The app through its entry point: AppTest of main.py runs the navigation, starts turns and switches pages."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.helpers import short_greedy

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def app(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("MODEL_PATH", str(tiny_model_dir))
    monkeypatch.setenv("COMPOSITE_DATA_DIR", str(tiny_model_dir.parent / "app-main-data"))
    at = AppTest.from_file(str(ROOT / "main.py"), default_timeout=90).run()
    assert not at.exception, at.exception
    return at


def _roles(at, mode):
    return [m.role for m in at.session_state[f"{mode}_history"]]


def test_main_opens_chat_with_a_welcome_and_a_turn_starts(app):
    assert app.title[0].value.endswith("Chat")
    assert any("Model:" in c.value and "tiny-random" in c.value for c in app.caption)  # the welcome names the model
    short_greedy(app, "chat", 8)
    app.chat_input(key="chat_input").set_value("hello there").run()
    assert not app.exception, app.exception
    assert _roles(app, "chat") == ["system", "user", "assistant"]  # the input was not dropped by a rerun
    assert app.session_state["chat_history"][1].content == "hello there"


def test_main_switches_to_the_tool_page_and_keeps_the_chat_history(app):
    short_greedy(app, "chat", 8)
    app.chat_input(key="chat_input").set_value("first").run()
    app.query_params.clear()  # the stored-history link (?c=) names the chat conversation
    app.switch_page("pages/tool.py").run()
    assert not app.exception, app.exception
    assert app.title[0].value.endswith("Tool")
    short_greedy(app, "tool", 8)
    app.chat_input(key="tool_input").set_value("second").run()
    assert _roles(app, "tool")[:2] == ["system", "user"] and app.session_state["tool_history"][1].content == "second"
    assert _roles(app, "chat") == ["system", "user", "assistant"]
