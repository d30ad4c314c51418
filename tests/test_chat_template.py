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
