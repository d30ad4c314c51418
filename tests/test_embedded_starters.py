"""Starter prompts: each page offers clickable examples of what the built-in model can do, sent like typed text."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def chat(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("MODEL_PATH", str(tiny_model_dir))
    at = AppTest.from_file(str(ROOT / "pages" / "chat.py"), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    at.number_input(key="chat_max_new").set_value(4)
    return at.run()


def test_every_mode_has_starters_from_the_models_skills():
    from pages._shared import STARTERS

    assert set(STARTERS) == {"chat", "tool", "code"}
    assert all(len(examples) >= 3 for examples in STARTERS.values())
    assert any(any("\u4e00" <= ch <= "\u9fff" for ch in e) for e in STARTERS["tool"])  # a Chinese example too


def test_a_clicked_starter_is_sent_and_the_starters_go_away(chat):
    from pages._shared import STARTERS

    labels = [b.label for b in chat.button if b.key and b.key.startswith("chat_starter_")]
    assert labels == STARTERS["chat"]
    chat.button(key="chat_starter_1").click().run()
    assert not chat.exception, chat.exception
    history = chat.session_state["chat_history"]
    assert [m.role for m in history] == ["system", "user", "assistant"]
    assert history[1].content == STARTERS["chat"][1]
    assert not [b for b in chat.button if b.key and b.key.startswith("chat_starter_")]
