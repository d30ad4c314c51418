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
    at.slider(key="chat_temperature").set_value(0.0)  # greedy: a sampled answer can be empty now and then
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


# what the embedded model must write for each starter (tool: exact call; code: fragments of the program;
# chat: a plain answer): the first thing a new user clicks has to work
STARTER_EXPECT = {
    "What's the weather in Berlin?": ("get_weather", {"city_name": "Berlin"}),
    "What time is it in Tokyo?": ("current_time", {"timezone": "Tokyo"}),
    "What is 23 * 19?": ("calculator", {"expression": "23 * 19"}),
    "上海现在几点？": ("current_time", {"timezone": "上海"}),
    "Plot sin(x) from 0 to 10.": ("interpreter", ["np.linspace(0, 10", "np.sin(x)", "plt.show()"]),
    "What is the median of 3, 9, 4, 7, 1?": ("interpreter", ["[3, 9, 4, 7, 1]", "statistics.median(data)"]),
    "Reverse the string 'starter'": ("interpreter", ['"starter"[::-1]']),
    "Compute 1234+4321 with Python.": ("interpreter", ["print(1234+4321)"]),
}


def test_the_embedded_model_gets_every_starter_right():
    from composite.backends.local import load_model
    from composite.embedded.data import tool_schemas
    from composite.messages import Message, SamplingParams
    from composite.prompts import system_prompt
    from pages._shared import STARTERS

    runtime = load_model(None)
    params = SamplingParams(temperature=0, max_new_tokens=200)
    for mode, examples in STARTERS.items():
        for prompt in examples:
            messages = [Message("system", system_prompt(mode)), Message("user", prompt)]
            ids, _ = runtime.prompt_ids(messages, tool_schemas() if mode == "tool" else None, params)
            guard = runtime.guard_for(messages)  # as the app decodes
            turn = runtime.dialect.parse(list(runtime.generate_ids(ids, params, runtime.dialect.stop_ids(), guard=guard)))[0]
            if mode == "chat":
                assert turn.kind == "text" and turn.content.strip(), (prompt, turn.text)
                continue
            assert prompt in STARTER_EXPECT, f"new starter {prompt!r}: add what the model must write for it"
            name, want = STARTER_EXPECT[prompt]
            if mode == "tool":
                assert turn.kind == "tool_call" and turn.tool_name == name, (prompt, turn.text)
                assert turn.arguments == want, (prompt, turn.text)
            else:
                assert turn.kind == "code" and turn.metadata == name, (prompt, turn.text)
                assert all(fragment in turn.code for fragment in want), (prompt, turn.code)
