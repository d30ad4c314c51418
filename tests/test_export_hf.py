"""`python -m composite export-hf`: the folder is a standard Hugging Face model (tokenizer without remote
code, ids equal to ours, chat template equal to the ChatGLM3 dialect, ChatGLM3's stop ids), and a real
third-party engine — `transformers serve` — serves it to the app's OpenAI backend in Tool and Code modes.
"""

import json
import random
import shutil
from pathlib import Path

import pytest

from composite.agent import Agent
from composite.events import Done, Observation, ToolCall
from composite.messages import Message, SamplingParams
from composite.prompts import system_prompt
from tests.http_servers import ServerProcess, free_port, server_env

pytest.importorskip("transformers")
GREEDY = SamplingParams(temperature=0, max_new_tokens=80)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from composite.backends.hf_export import export_hf

    from composite.embedded.data import tokenizer_check_texts

    return export_hf(None, tmp_path_factory.mktemp("export") / "glm", check_texts=tokenizer_check_texts())


@pytest.fixture(scope="module")
def embedded():
    from composite.backends.local import load_model

    return load_model(None, device="cpu")


@pytest.fixture(scope="module")
def hf_tokenizer(exported):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(exported, trust_remote_code=False, local_files_only=True)


def test_the_folder_is_a_standard_hf_model_with_native_weights(exported, embedded):
    import torch
    from transformers import AutoModelForCausalLM

    assert not (exported / "composite.json").exists() and (exported / "tokenizer.json").is_file()
    model = AutoModelForCausalLM.from_pretrained(exported, local_files_only=True, dtype=torch.float32)
    ids = torch.tensor([embedded.dialect.render([Message("user", "Hello!")])])
    with torch.inference_mode():
        assert torch.allclose(model(ids).logits, embedded.model(ids).logits, atol=1e-5)


def test_tokenizer_loads_without_remote_code_and_encodes_like_ours(exported, hf_tokenizer, embedded):
    from composite.backends.hf_export import GENERIC_CHECK_TEXTS, check_tokenizer
    from composite.embedded.data import tokenizer_check_texts
    from composite.tokenizer import SPECIAL_TOKENS

    ours = embedded.dialect.tokenizer
    rng = random.Random(5)
    alphabet = "abc XYZ\n\t0123😀中文().,\"'[]{}_-=`<>|ñ"
    texts = tokenizer_check_texts() + GENERIC_CHECK_TEXTS + ["", " ", "a\n\nb", "\n", "tabs\tand\r\nCRLF", "emoji 😀", "x" * 500]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80))) for _ in range(400)]
    assert len(texts) > 900
    assert check_tokenizer(hf_tokenizer, ours, texts) == []
    assert [hf_tokenizer.convert_tokens_to_ids(name) for name in SPECIAL_TOKENS] == [ours[n] for n in SPECIAL_TOKENS]
    assert hf_tokenizer.decode(ours.encode("round trip ✓ 中文")) == "round trip ✓ 中文"


def _as_transformers_serve_does(messages):
    """transformers serve parses tool-call arguments to dicts before it applies the chat template."""
    for message in messages:
        for call in message.get("tool_calls") or []:
            call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    return messages


def test_chat_template_renders_exactly_the_dialects_ids(hf_tokenizer, embedded):
    from composite.backends.openai import PYTHON_TOOL, to_openai_messages, to_openai_tools
    from composite.embedded.data import sample_conversation

    rng = random.Random(11)
    checked = {"chat": 0, "tool": 0, "code": 0}
    for _ in range(150):
        conversation = sample_conversation(rng)
        if conversation.mode not in checked:
            continue
        history = conversation.messages()
        expected = embedded.dialect.render(history, conversation.tools)
        # what the app's OpenAI backend sends: code mode offers the interpreter as a `python` tool
        tools = [PYTHON_TOOL] if conversation.mode == "code" else conversation.tools
        got = hf_tokenizer.apply_chat_template(_as_transformers_serve_does(to_openai_messages(history)),
                                               tools=to_openai_tools(tools), add_generation_prompt=True,
                                               tokenize=True, return_dict=False)
        assert list(got) == expected, embedded.dialect.tokenizer.decode(expected, keep_special=True)[:300]
        checked[conversation.mode] += 1
    assert all(count > 5 for count in checked.values())


def test_generation_config_stops_where_chatglm3_does(exported, embedded):
    generation = json.loads((exported / "generation_config.json").read_text())
    assert sorted(generation["eos_token_id"]) == sorted(embedded.dialect.stop_ids())


def test_export_refuses_a_non_empty_folder_and_a_folder_without_a_model(tmp_path, exported):
    from composite.backends.hf_export import export_hf
    from composite.errors import ModelLoadError

    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(ModelLoadError, match="not empty"):
        export_hf(None, tmp_path / "busy")
    with pytest.raises(ModelLoadError, match="no config.json"):
        export_hf(tmp_path / "busy", tmp_path / "out")
    # a BPE sentencepiece tokenizer (the ChatGLM3 test checkpoint's) is refused before any weights are written
    with pytest.raises(ModelLoadError, match="only unigram"):
        export_hf(Path(__file__).parent / "data" / "chatglm3", tmp_path / "glm3")
    assert not (tmp_path / "glm3").exists()


# -- a real third-party engine serves the export -------------------------------------------------------
@pytest.fixture(scope="module")
def transformers_server(exported, tmp_path_factory):
    if shutil.which("transformers") is None:
        pytest.skip("the `transformers` CLI is not installed")
    port = free_port()
    cache = tmp_path_factory.mktemp("hf-cache")
    env = server_env(HF_HUB_CACHE=str(cache), HF_HOME=str(cache))
    args = [shutil.which("transformers"), "serve", str(exported), "--host", "127.0.0.1", "--port", str(port)]
    log = tmp_path_factory.mktemp("tserve") / "log"
    with ServerProcess(args, port, ready_path="/health", env=env, log=log) as server:
        yield server


@pytest.fixture(scope="module")
def remote(transformers_server, exported):
    from composite.backends.openai import OpenAIBackend

    return OpenAIBackend(transformers_server.base_url, str(exported))


def _run(agent, mode, question):
    history = [Message("system", system_prompt(mode)), Message("user", question)]
    return history, list(agent.run(history, GREEDY))


def test_tool_mode_end_to_end_through_transformers_serve(remote):
    from tools.builtin import calculator

    history, events = _run(Agent(remote, "tool"), "tool", "What is 317*24?")
    call = next(e for e in events if isinstance(e, ToolCall))
    observation = next(e for e in events if isinstance(e, Observation))
    assert call.name == "calculator" and call.arguments == {"expression": "317*24"}  # parsed on our side
    assert observation.ok and observation.message.content == str(calculator(**call.arguments))
    assert "7608" in history[-1].content and events[-1] == Done("answered")


def test_code_mode_end_to_end_through_transformers_serve(remote):
    from composite.sandbox import Sandbox

    with Sandbox() as sandbox:
        history, events = _run(Agent(remote, "code", sandbox=sandbox), "code", "Compute 1234+4321 with Python.")
    call = next(e for e in events if isinstance(e, ToolCall))
    observation = next(e for e in events if isinstance(e, Observation))
    assert call.kind == "code" and "1234" in call.code
    assert observation.ok and observation.message.content.strip() == "5555"
    assert "5555" in history[-1].content and events[-1] == Done("answered")
