"""Shared fixtures: a tiny random GLM checkpoint with a trained sentencepiece tokenizer, and isolated user paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CORPUS = [
    "Hello! How can I help you today?",
    "The weather in Oslo is 12 degrees and cloudy.",
    "def add(a, b):\n    return a + b\n",
    "print(sum([1, 2, 3]))",
    "你好，我是一个助手。今天天气很好。",
    "tool_call(city_name=\"Paris\")",
    "```python\nimport math\nprint(math.sqrt(16))\n```",
    "0123456789 +-*/=()[]{}<>|:;,.!?'\"",
]


def build_tiny_model(folder: Path, vocab_size: int = 420, layers: int = 2, max_length: int = 512) -> Path:
    """Train a small sentencepiece model and save a random GlmForCausalLM in the embedded layout."""
    import sentencepiece as spm
    import torch
    from transformers import GlmConfig, GlmForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(CORPUS * 20), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(folder / "tokenizer"),
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        split_digits=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,
        character_coverage=1.0,
        bos_id=-1,
        eos_id=2,
        unk_id=0,
        pad_id=-1,
        minloglevel=2,
    )
    (folder / "tokenizer.vocab").unlink()
    corpus.unlink()
    torch.manual_seed(0)
    config = GlmConfig(
        vocab_size=vocab_size + 16,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=max_length,
        pad_token_id=0,
        eos_token_id=2,
    )
    GlmForCausalLM(config).save_pretrained(folder)
    (folder / "composite.json").write_text(
        json.dumps({"name": "tiny-random", "dialect": "chatglm3", "tools_indent": None, "max_length": max_length}),
        encoding="utf-8",
    )
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_runtime(tiny_model_dir):
    from composite.runtime import load_model

    return load_model(tiny_model_dir, device="cpu")


@pytest.fixture(autouse=True)
def _isolated_user_paths(tmp_path, monkeypatch):
    """Tests never read the developer's MODEL_PATH, user tools, weather service or history."""
    monkeypatch.delenv("MODEL_PATH", raising=False)
    monkeypatch.setenv("TOOLS_PATH", str(tmp_path / "no-user-tools"))
    (tmp_path / "no-mcp.json").write_text('{"mcpServers": {}}')  # never the developer's MCP servers
    monkeypatch.setenv("COMPOSITE_MCP_CONFIG", str(tmp_path / "no-mcp.json"))
    monkeypatch.setenv("COMPOSITE_WEATHER_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # history goes to a fresh per-test data dir, never ~/.local/share/composite or a team database
    monkeypatch.setenv("COMPOSITE_DATA_DIR", str(tmp_path / "composite-data"))
    monkeypatch.delenv("COMPOSITE_DATABASE_URL", raising=False)
    monkeypatch.delenv("COMPOSITE_TRUSTED_USER_HEADER", raising=False)


@pytest.fixture(scope="session")
def postgres_server():
    """One real PostgreSQL on 127.0.0.1 for the whole run (stopped at the end); skipped without the binaries."""
    from tests.pg_server import PostgresServer, postgres_bin

    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    server = PostgresServer(bindir).init()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def embedded_server(tmp_path_factory):
    """One `python -m composite serve` of the embedded model on 127.0.0.1 (API key tests.http_servers.API_KEY),
    shared by the HTTP tests of the whole run and stopped at its end."""
    from tests.http_servers import API_KEY, composite_serve, free_port

    log = tmp_path_factory.mktemp("composite-serve") / "serve.log"
    with composite_serve(free_port(), "--api-key", API_KEY, log=log) as server:
        yield server
