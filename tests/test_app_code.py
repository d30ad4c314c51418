"""The Code Interpreter page through AppTest: sandbox status, a code round in the real sandbox, kernel buttons."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from composite.agent import Decision
from composite.messages import Message
from composite.prompts import system_prompt

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def code_page(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("MODEL_PATH", str(tiny_model_dir))
    at = AppTest.from_file(str(ROOT / "pages" / "code.py"), default_timeout=90)
    at.run()
    assert not at.exception, at.exception
    at.number_input(key="code_max_new").set_value(4)
    at.slider(key="code_temperature").set_value(0.0)
    at.run()
    yield at
    # AppTest never ends its session, so on_release never fires: clear the caches to shut the kernels down
    st.cache_resource.clear()


def _pending(at, code):
    at.session_state["code_history"] = [
        Message("system", system_prompt("code")),
        Message("user", "compute"),
        Message("assistant", f"```python\n{code}\n```", "interpreter"),
    ]
    at.session_state["code_decision"] = Decision("run")


def test_sandbox_status_is_visible(code_page):
    texts = [s.value for s in code_page.sidebar.success] + [w.value for w in code_page.sidebar.warning]
    assert any(text.startswith("sandbox: full") for text in texts)


def test_a_code_round_runs_in_the_session_sandbox_and_keeps_state(code_page):
    _pending(code_page, "x = 6 * 7\nprint(x)")
    code_page.run()
    assert not code_page.exception
    history = code_page.session_state["code_history"]
    assert history[3].role == "observation" and history[3].content.strip() == "42"
    _pending(code_page, "print(x + 1)")  # same kernel: x survives between runs
    code_page.run()
    assert code_page.session_state["code_history"][3].content.strip() == "43"


def test_errors_are_observations_and_the_page_stays_up(code_page):
    _pending(code_page, "1/0")
    code_page.run()
    obs = code_page.session_state["code_history"][3]
    assert "ZeroDivisionError" in obs.content and obs.extra["status"] == "error"
    assert not code_page.exception


def test_restart_kernel_clears_variables(code_page):
    _pending(code_page, "y = 5")
    code_page.run()
    code_page.button(key="code_restart").click().run()
    _pending(code_page, "print(y)")
    code_page.run()
    assert "NameError" in code_page.session_state["code_history"][3].content
