"""ChatGLM3 dialect: token layout, rendering, parsing and round trips (pure functions)."""

from __future__ import annotations

import json

import pytest

from composite.dialect import ChatGLM3Dialect, extract_code_block, parse_chatglm3_turn
from composite.errors import ConfigError, DialectError
from composite.messages import Message
from composite.tokenizer import SPECIAL_TOKENS, ChatGLMTokenizer


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return ChatGLMTokenizer(tiny_model_dir / "tokenizer.model")


@pytest.fixture(scope="module")
def dialect(tok):
    return ChatGLM3Dialect(tok, tools_indent=4)


def test_special_ids_follow_sentencepiece_vocab_in_chatglm3_order(tok):
    n = tok.sp.vocab_size()
    assert [tok[name] for name in SPECIAL_TOKENS] == list(range(n, n + 9))
    assert tok.vocab_size == n + 9


def test_user_typed_special_token_text_stays_plain_text(tok):
    ids = tok.encode("<|user|> hi <|assistant|>[gMASK]sop")
    assert not set(ids) & set(tok.special.values())
    assert tok.decode(ids) == "<|user|> hi <|assistant|>[gMASK]sop"


def test_render_layout_matches_chatglm3(dialect, tok):
    messages = [Message("system", "sys"), Message("user", "hi"), Message("assistant", "yo", "meta")]
    ids = dialect.render(messages)
    expected = [tok["[gMASK]"], tok["sop"]]
    expected += [tok["<|system|>"]] + tok.encode("\n") + tok.encode("sys")
    expected += [tok["<|user|>"]] + tok.encode("\n") + tok.encode("hi")
    expected += [tok["<|assistant|>"]] + tok.encode("meta\n") + tok.encode("yo")
    expected += [tok["<|assistant|>"]]
    assert ids == expected


def test_tools_json_appended_to_system_message(dialect, tok):
    tools = [{"name": "f", "description": "d", "parameters": {"type": "object"}}]
    ids = dialect.render([Message("system", "sys"), Message("user", "q")], tools)
    text = tok.decode(ids)
    assert "sys\n" + json.dumps(tools, indent=4, ensure_ascii=False) in text
    compact = ChatGLM3Dialect(tok, tools_indent=None).render([Message("user", "q")], tools)
    assert json.dumps(tools, separators=(",", ":")) in tok.decode(compact)
    assert compact[2] == tok["<|system|>"]  # a system message was added for the tools


def test_render_rejects_empty_conversation(dialect):
    with pytest.raises(DialectError, match="empty conversation"):
        dialect.render([])


def test_unknown_role_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown message role 'bot'"):
        Message("bot", "x")


def test_stop_ids_are_eos_user_and_observation(dialect, tok):
    assert dialect.stop_ids() == {2, tok["<|user|>"], tok["<|observation|>"]}


@pytest.mark.parametrize(
    "message",
    [
        Message("assistant", "Hello there!\nSecond line."),
        Message("assistant", '```python\ntool_call(city_name="Oslo", days=[1, 2])\n```', "get_weather"),
        Message("assistant", "```python\nimport math\nprint(math.pi)\n```", "interpreter"),
        Message("assistant", "你好 <|user|> 👋\ttabs  and   spaces"),
    ],
)
def test_round_trip_render_generate_parse(dialect, tok, message):
    """What the model would generate for a turn parses back to the same message, metadata included."""
    generated = tok.encode(message.metadata + "\n") + tok.encode(message.content) + [tok["<|observation|>"]]
    (turn,) = dialect.parse(generated)
    assert turn.to_message() == Message("assistant", message.content, message.metadata)
    # replaying the parsed turn renders exactly the tokens that were generated
    assert dialect.render_message(turn.to_message()) == [tok["<|assistant|>"]] + generated[:-1]


def test_second_tool_call_keeps_metadata_when_replayed(dialect, tok):
    """ChatGLM3 issue #408: history lost the tool name, so every second call broke."""
    call = Message("assistant", "```python\ntool_call(a=1)\n```", "f")
    history = [Message("user", "q"), call, Message("observation", "1"), Message("user", "again")]
    text = tok.decode(dialect.render(history), keep_special=True)
    assert "<|assistant|>f\n```python\ntool_call(a=1)\n```<|observation|>" in text


def test_parse_classifies_turns():
    assert parse_chatglm3_turn("\nHi").kind == "text"
    tool = parse_chatglm3_turn('get_weather\n```python\ntool_call(city_name="Oslo")\n```')
    assert (tool.kind, tool.tool_name, tool.code) == ("tool_call", "get_weather", 'tool_call(city_name="Oslo")')
    code = parse_chatglm3_turn("interpreter\n```python\nprint(1)\n```")
    assert (code.kind, code.code) == ("code", "print(1)")


def test_prose_first_line_is_not_mistaken_for_a_tool_name():
    turn = parse_chatglm3_turn("Sure, here it is\nline two")
    assert turn.kind == "text" and turn.content == "Sure, here it is\nline two"


def test_generation_split_at_assistant_token(dialect, tok):
    ids = tok.encode("\nLet me check.") + [tok["<|assistant|>"]] + tok.encode("f\n```python\ntool_call()\n```")
    turns = dialect.parse(ids + [tok["<|observation|>"]])
    assert [t.kind for t in turns] == ["text", "tool_call"]


def test_extract_code_block_takes_last_and_tolerates_unterminated():
    assert extract_code_block("```python\na\n```\ntext\n```py\nb\n```") == "b"
    assert extract_code_block("```python\nprint(2)") == "print(2)"
    assert extract_code_block("no code") is None
