"""ChatGLM3 dialect: token layout, rendering, parsing and round trips (pure functions)."""

from __future__ import annotations

import json

import pytest

from composite.dialect import ChatGLM3Dialect, extract_code_block, parse_chatglm3_turn
from composite.dialects.chatglm3 import tools_text
from composite.errors import ConfigError, DialectError
from composite.messages import AssistantTurn, Message
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


# --- pinned by mutation testing (benchmarks/mutation.py chatglm3-dialect) ----------------------------

TOOLS_CN = [{"name": "天气", "description": "查询城市天气 — °C", "parameters": {"type": "object"}}]


def test_tools_json_keeps_non_ascii_and_four_space_indent_by_default(tok):
    """ChatGLM3 was trained on the tools' JSON with indent 4 and raw (not \\u-escaped) non-ASCII text."""
    assert tools_text(TOOLS_CN) == json.dumps(TOOLS_CN, indent=4, ensure_ascii=False)
    assert "查询城市天气 — °C" in tools_text(TOOLS_CN) and "\\u" not in tools_text(TOOLS_CN)
    compact = tools_text(TOOLS_CN, indent=None)
    assert compact == '[{"name":"天气","description":"查询城市天气 — °C","parameters":{"type":"object"}}]'
    default = ChatGLM3Dialect(tok)  # the dialect's default is the same indent-4 layout
    assert default.with_tools([Message("user", "q")], TOOLS_CN)[0].content == tools_text(TOOLS_CN, indent=4)


def test_with_tools_adds_a_system_message_or_extends_the_first_one(dialect):
    tools = [{"name": "f", "parameters": {"type": "object"}}]
    suffix = tools_text(tools, 4)
    user = Message("user", "q")
    assert dialect.with_tools([user], tools) == [Message("system", suffix), user]
    system = Message("system", "be brief", "meta")
    assert dialect.with_tools([system, user], tools) == [Message("system", f"be brief\n{suffix}", "meta"), user]
    # a later system message is not the one that gets the tools
    later = [user, Message("system", "late")]
    assert dialect.with_tools(later, tools) == [Message("system", suffix)] + later
    assert dialect.with_tools([system, user], None) == [system, user]


def test_turn_without_any_newline_is_text():
    """A model that skips the metadata line entirely ("42") gives a text turn, never a tool call."""
    for raw in ("42", "Paris"):
        turn = parse_chatglm3_turn(raw)
        assert (turn.kind, turn.text, turn.metadata, turn.content, turn.calls) == ("text", raw, "", raw, [])


def test_parsed_turns_keep_the_raw_text():
    """The agent falls back to the raw generated text (turn.text); every kind keeps it verbatim."""
    for raw in ("\n  Hi there  \n", "interpreter\n```python\nprint(1)\n```", 'f\n```python\ntool_call(a=1)\n```'):
        assert parse_chatglm3_turn(raw).text == raw


def test_tool_call_turn_carries_its_parsed_call():
    turn = parse_chatglm3_turn('get_weather\n```python\ntool_call(city_name="Oslo", days=2)\n```')
    assert turn.arguments == {"city_name": "Oslo", "days": 2}
    assert [(c.name, c.arguments, c.error) for c in turn.calls] == [("get_weather", {"city_name": "Oslo", "days": 2}, "")]
    broken = parse_chatglm3_turn("get_weather\n```python\ntool_call(city_name=)\n```")
    assert broken.kind == "tool_call" and broken.arguments is None
    assert broken.calls[0].name == "get_weather" and broken.calls[0].error


def test_turn_without_a_code_block_has_no_invented_code():
    unfenced = parse_chatglm3_turn("f\ntool_call(a=1)")  # the model dropped the fences: the call still works
    assert (unfenced.kind, unfenced.code, unfenced.arguments) == ("tool_call", "", {"a": 1})
    prose = parse_chatglm3_turn("interpreter\nI would compute it.")
    assert (prose.kind, prose.code, prose.content) == ("code", "", "I would compute it.")


def test_turn_content_keeps_spaces_and_tabs_only_blank_lines_go():
    """Only the newlines around the content are dropped; indentation and a trailing space stay, so the
    replayed history matches what the model generated."""
    turn = parse_chatglm3_turn("f\n\n  tool_call(a=1)\t \n\n")
    assert turn.content == "  tool_call(a=1)\t "
    code = parse_chatglm3_turn("interpreter\nX = 1\nprint(X)\n")
    assert code.content == "X = 1\nprint(X)"


def test_generation_that_stops_at_once_is_one_empty_text_turn(dialect, tok):
    empty = AssistantTurn(kind="text", text="", content="")
    assert dialect.parse([]) == [empty]
    assert dialect.parse([tok["<|user|>"], *tok.encode("ignored")]) == [empty]
