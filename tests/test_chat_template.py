"""Any chat-template model: a tiny random Qwen2 with a tokenizer and Hermes-style template built here."""

from __future__ import annotations

import json

import pytest

from composite.agent import Agent
from composite.dialect_hf import ChatTemplateDialect, parse_template_turn
from composite.errors import ModelLoadError
from composite.events import Observation, ToolCall
from composite.messages import Message, SamplingParams
from composite.runtime import load_model
from tools import build_registry

TEMPLATE = (
    "{%- if tools %}<|im_start|>system\n{{ messages[0]['content'] if messages[0]['role'] == 'system' else '' }}"
    "\n# Tools\n<tools>{% for t in tools %}\n{{ t | tojson }}{% endfor %}\n</tools>\n"
    "Call a tool with <tool_call>{\"name\": ..., \"arguments\": ...}</tool_call><|im_end|>\n"
    "{%- elif messages[0]['role'] == 'system' %}<|im_start|>system\n{{ messages[0]['content'] }}<|im_end|>\n{%- endif %}"
    "{%- for m in messages %}"
    "{%- if m['role'] == 'system' %}"
    "{%- elif m['role'] == 'assistant' and m.get('tool_calls') %}<|im_start|>assistant\n"
    "{%- for c in m['tool_calls'] %}<tool_call>\n{\"name\": \"{{ c['function']['name'] }}\", \"arguments\": "
    "{{ c['function']['arguments'] | tojson }}}\n</tool_call>{% endfor %}<|im_end|>\n"
    "{%- elif m['role'] == 'tool' %}<|im_start|>user\n<tool_response>\n{{ m['content'] }}\n</tool_response><|im_end|>\n"
    "{%- else %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{%- endif %}"
    "{%- endfor %}{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    folder = tmp_path_factory.mktemp("tiny-qwen")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["hello world", "tool_call arguments name", "print(1 + 2)", "天气 weather"] * 50, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = TEMPLATE
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=fast.vocab_size + 8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         eos_token_id=fast.convert_tokens_to_ids("<|im_end|>"))
    Qwen2ForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def qwen(qwen_dir):
    return load_model(qwen_dir, device="cpu")


def test_loads_with_the_chat_template_dialect(qwen):
    assert qwen.info.dialect == "chat-template" and qwen.info.context_length == 1024
    im_end = qwen.dialect.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end in qwen.dialect.stop_ids()


def test_chat_generation_streams_a_turn(qwen):
    events = list(qwen.stream_turn([Message("user", "hello")], None, SamplingParams(max_new_tokens=5, temperature=0)))
    assert events[-1].completion_tokens <= 5


def test_tools_and_history_render_through_the_template(qwen):
    registry, _ = build_registry()
    history = [
        Message("system", "sys"),
        Message("user", "weather?"),
        Message("assistant", '```python\ntool_call(city_name="Oslo")\n```', "get_weather"),
        Message("observation", '{"temp_C": 3}'),
    ]
    text = qwen.dialect.tokenizer.decode(qwen.dialect.render(history, registry.chatglm3_tools(["get_weather"])))
    assert '"name": "get_weather"' in text and "<tools>" in text
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city_name": "Oslo"}}\n</tool_call>' in text
    assert "<tool_response>\n{\"temp_C\": 3}\n</tool_response>" in text
    assert text.endswith("<|im_start|>assistant\n")


def test_hermes_tool_call_is_parsed_with_structured_arguments():
    turn = parse_template_turn('<tool_call>\n{"name": "calculator", "arguments": {"expression": "2+2"}}\n</tool_call>')
    assert (turn.kind, turn.tool_name, turn.arguments) == ("tool_call", "calculator", {"expression": "2+2"})
    code = parse_template_turn('<tool_call>{"name": "python", "arguments": {"code": "print(3)"}}</tool_call>')
    assert (code.kind, code.code) == ("code", "print(3)")
    broken = parse_template_turn('<tool_call>{"name": "calculator", "arguments": {oops}</tool_call>')
    assert broken.kind == "tool_call" and broken.arguments is None
    assert parse_template_turn("just words").kind == "text"


class _OneCall:
    """A backend whose model emits one Hermes call, then answers."""

    def __init__(self, dialect, texts):
        self.dialect, self.texts = dialect, list(texts)

    def stream_turn(self, messages, tools, params, stop=None):
        from composite.events import TurnEnd

        yield TurnEnd([parse_template_turn(self.texts.pop(0))], "stop")


def test_tool_loop_with_structured_calls(qwen):
    registry, _ = build_registry()
    backend = _OneCall(qwen.dialect, ['<tool_call>{"name": "calculator", "arguments": {"expression": "6*7"}}</tool_call>',
                                      "It is 42."])
    history = [Message("user", "6*7?")]
    events = list(Agent(backend, "tool", registry).run(history, SamplingParams(temperature=0)))
    assert next(e for e in events if isinstance(e, ToolCall)).arguments == {"expression": "6*7"}
    assert next(e for e in events if isinstance(e, Observation)).message.content == "42"
    # the stored call replays through the template with its arguments
    text = qwen.dialect.tokenizer.decode(qwen.dialect.render(history))
    assert json.dumps({"expression": "6*7"}) in text


def test_code_mode_offers_a_python_tool(qwen):
    assert qwen.dialect.code_tools()[0]["name"] == "python"


def test_folder_without_chat_template_is_a_clear_error(qwen_dir, tmp_path):
    import shutil

    for item in qwen_dir.iterdir():
        shutil.copy(item, tmp_path / item.name)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    (tmp_path / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(ModelLoadError, match="no chat template"):
        load_model(tmp_path, device="cpu")


def test_original_chatglm3_checkpoint_loads_through_load_model(tmp_path):
    from pathlib import Path

    runtime = load_model(Path(__file__).parent / "data" / "chatglm3", device="cpu")
    assert runtime.info.dialect == "chatglm3" and runtime.info.dtype == "float32"
    events = list(runtime.stream_turn([Message("user", "hi")], None, SamplingParams(max_new_tokens=4, temperature=0)))
    assert events[-1].completion_tokens <= 4


# -- several calls in one turn ---------------------------------------------------------------------------
TWO_CALLS = ('<tool_call>\n{"name": "left", "arguments": {"x": 2}}\n</tool_call>\n'
             '<tool_call>\n{"name": "right", "arguments": {"x": 3}}\n</tool_call>')


def test_the_dialect_parses_every_call_of_a_generated_turn(qwen):
    ids = qwen.dialect.tokenizer.encode(TWO_CALLS + "<|im_end|>", add_special_tokens=False)
    (turn,) = qwen.dialect.parse(ids)
    assert [(c.name, c.arguments, c.error) for c in turn.calls] == [("left", {"x": 2}, ""), ("right", {"x": 3}, "")]
    bad = parse_template_turn(TWO_CALLS.replace('{"x": 3}', "{x: 3}"))
    assert bad.calls[0].arguments == {"x": 2} and bad.calls[1].arguments is None and "not valid JSON" in bad.calls[1].error


class _Scripted:
    """A backend double: replays generated texts through the real dialect's parse of token ids."""

    def __init__(self, dialect, texts):
        self.dialect, self.texts, self.seen = dialect, list(texts), []

    def stream_turn(self, messages, tools, params, stop=None):
        from composite.events import TurnEnd

        self.seen.append(list(messages))
        ids = self.dialect.tokenizer.encode(self.texts.pop(0) + "<|im_end|>", add_special_tokens=False)
        yield TurnEnd(self.dialect.parse(ids), "stop")


def _parallel_registry():
    """Two tools that each wait for the other: they only both finish when they run at the same time."""
    import threading

    from tools import ToolRegistry

    barrier = threading.Barrier(2, timeout=20)
    registry = ToolRegistry()

    @registry.register
    def left(x: int) -> str:
        """Left half."""
        barrier.wait()
        return f"left {x}"

    @registry.register
    def right(x: int) -> str:
        """Right half."""
        barrier.wait()
        return f"right {x}"

    return registry


def test_several_calls_run_in_parallel_and_answer_in_order(qwen):
    backend = _Scripted(qwen.dialect, [TWO_CALLS, "Both done."])
    history = [Message("user", "both?")]
    events = list(Agent(backend, "tool", _parallel_registry(), tool_timeout=30).run(history, SamplingParams()))
    observations = [e for e in events if isinstance(e, Observation)]
    assert [o.message.content for o in observations] == ["left 2", "right 3"] and all(o.ok for o in observations)
    assert [m.role for m in history] == ["user", "assistant", "assistant", "observation", "observation", "assistant"]
    calls, answers = history[1:3], history[3:5]
    assert [m.metadata for m in calls] == ["left", "right"]
    assert [m.extra["call_id"] for m in calls] == [m.extra["call_id"] for m in answers]
    assert calls[0].extra["call_id"] != calls[1].extra["call_id"]
    # the model sees both calls in one assistant turn, then one tool response per call
    text = qwen.dialect.tokenizer.decode(qwen.dialect.render(backend.seen[1]))
    assistant_turn = text.split("<|im_start|>assistant")[1].split("<|im_end|>")[0]
    assert assistant_turn.count("<tool_call>") == 2 and '"left"' in assistant_turn and '"right"' in assistant_turn
    assert text.index("left 2") < text.index("right 3")


def test_a_malformed_call_among_several_is_answered_with_its_error_and_the_others_run(qwen):
    from tools import build_registry

    registry, _ = build_registry()
    text = ('<tool_call>{"name": "calculator", "arguments": {"expression": "6*7"}}</tool_call>'
            '<tool_call>{"name": "calculator", "arguments": {"expression": 6*7}}</tool_call>')
    backend = _Scripted(qwen.dialect, [text, "ok"])
    events = list(Agent(backend, "tool", registry).run([Message("user", "?")], SamplingParams()))
    first, second = [e for e in events if isinstance(e, Observation)]
    assert first.ok and first.message.content == "42"
    assert not second.ok and "not valid JSON" in second.message.content


def test_approval_covers_every_pending_call_and_resumes_all_of_them(qwen):
    from composite.agent import Decision, pending_calls
    from composite.events import ApprovalNeeded

    backend = _Scripted(qwen.dialect, [TWO_CALLS, "done"])
    history = [Message("user", "both?")]
    agent = Agent(backend, "tool", _parallel_registry(), policy="ask")
    events = list(agent.run(history, SamplingParams()))
    approval = next(e for e in events if isinstance(e, ApprovalNeeded))
    assert [c.name for c in approval.calls] == ["left", "right"] and len(pending_calls(history)) == 2
    list(agent.run(history, SamplingParams(), decision=Decision("run")))
    assert [m.content for m in history if m.role == "observation"] == ["left 2", "right 3"]


def test_manual_mode_takes_one_observation_per_call(qwen):
    from composite.agent import Decision

    backend = _Scripted(qwen.dialect, [TWO_CALLS, "done"])
    history = [Message("user", "both?")]
    agent = Agent(backend, "tool", _parallel_registry(), policy="manual")
    list(agent.run(history, SamplingParams()))
    list(agent.run(history, SamplingParams(), decision=Decision("observe", texts=["L", "R"])))
    assert [m.content for m in history if m.role == "observation"] == ["L", "R"]


def test_a_resumed_history_finds_the_calls_still_without_observations():
    from composite.agent import pending_calls

    call = lambda name, call_id: Message("assistant", "{}", name, extra={"call_id": call_id, "arguments": {}})  # noqa: E731
    history = [Message("user", "q"), call("a", "1"), call("b", "2"), call("c", "3"),
               Message("observation", "A", extra={"call_id": "1"})]
    assert [m.metadata for m in pending_calls(history)] == ["b", "c"]
    history.append(Message("observation", "C", extra={"call_id": "3"}))
    assert [m.metadata for m in pending_calls(history)] == ["b"]
    # an imported history without ids pairs observations by position
    plain = [Message("user", "q"), Message("assistant", "x", "a"), Message("assistant", "y", "b"), Message("observation", "A")]
    assert [m.metadata for m in pending_calls(plain)] == ["b"]
