"""ChatGLM3 original checkpoints on transformers' GlmForCausalLM: reference logits, mapping, conversion, memory."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import GlmForCausalLM  # noqa: E402

from composite.checkpoint import (  # noqa: E402
    CHATGLM3_6B_CONFIG,
    check_memory,
    checkpoint_problems,
    convert_chatglm3,
    convert_cli,
    estimate_weight_bytes,
    glm_config_from_chatglm3,
    is_chatglm3_checkpoint,
    load_chatglm3,
    map_chatglm3_state_dict,
)
from composite.errors import ModelLoadError  # noqa: E402
from composite.tokenizer import ChatGLMTokenizer  # noqa: E402

DATA = Path(__file__).parent / "data" / "chatglm3"
REPO = Path(__file__).resolve().parents[1]
GIB = 1024**3

# ChatGLM3-6B's published config values, written out here independently of the library.
SIX_B = {
    "model_type": "chatglm",
    "num_layers": 28,
    "hidden_size": 4096,
    "ffn_hidden_size": 13696,
    "num_attention_heads": 32,
    "multi_query_attention": True,
    "multi_query_group_num": 2,
    "kv_channels": 128,
    "padded_vocab_size": 65024,
    "seq_length": 8192,
    "layernorm_epsilon": 1e-05,
    "add_qkv_bias": True,
    "eos_token_id": 2,
    "pad_token_id": 0,
    "torch_dtype": "float16",
}


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads((DATA / "expected.json").read_text())


@pytest.fixture(scope="module")
def reference_tensors() -> dict:
    return load_file(str(DATA / "model.safetensors"))


@pytest.fixture(scope="module")
def loaded(expected):
    model, tokenizer = load_chatglm3(DATA, "cpu", torch.float32)
    return model, tokenizer


def logits_of(model, ids: list[int]):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()


def make_checkpoint(folder: Path, tensors: dict, **config_overrides) -> Path:
    """An original-layout checkpoint: the reference config (with overrides), tokenizer and one safetensors file."""
    folder.mkdir(parents=True, exist_ok=True)
    config = json.loads((DATA / "config.json").read_text())
    config.update(config_overrides)
    (folder / "config.json").write_text(json.dumps(config))
    shutil.copyfile(DATA / "tokenizer.model", folder / "tokenizer.model")
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


# --------------------------------------------------------------------------- detection


def test_reference_folder_is_a_complete_chatglm3_checkpoint():
    assert is_chatglm3_checkpoint(DATA), checkpoint_problems(DATA)
    assert ChatGLMTokenizer(DATA / "tokenizer.model").vocab_size == 160


def test_detection_says_what_is_missing(tmp_path):
    assert not is_chatglm3_checkpoint(tmp_path / "nowhere")
    shutil.copyfile(DATA / "config.json", tmp_path / "config.json")
    problems = " ".join(checkpoint_problems(tmp_path))
    assert "tokenizer.model" in problems and "no weight shards" in problems
    native = json.loads((DATA / "config.json").read_text()) | {"model_type": "glm"}
    (tmp_path / "config.json").write_text(json.dumps(native))
    assert "model_type 'glm'" in " ".join(checkpoint_problems(tmp_path))
    with pytest.raises(ModelLoadError, match="not a ChatGLM3 checkpoint"):
        load_chatglm3(tmp_path)


# --------------------------------------------------------------------------- reference vectors


def test_reference_logits_match_the_original_implementation(loaded, expected):
    model, _ = loaded
    logits = logits_of(model, expected["input_ids"])
    diff = (logits[-3:] - torch.tensor(expected["logits_last3"])).abs().max().item()
    assert diff < 1e-4
    assert logits.sum().item() == pytest.approx(expected["logits_sum"], abs=1e-2)


def test_greedy_continuation_with_kv_cache_matches_exactly(loaded, expected):
    from transformers import DynamicCache

    model, _ = loaded
    cache = DynamicCache(config=model.config)
    tokens: list[int] = []
    with torch.no_grad():
        out = model(torch.tensor([expected["input_ids"]]), past_key_values=cache, use_cache=True)
        for _ in range(10):
            token = int(out.logits[0, -1].argmax())
            tokens.append(token)
            out = model(torch.tensor([[token]]), past_key_values=out.past_key_values, use_cache=True)
    assert tokens == expected["greedy_continuation"]


def test_generate_agrees_with_the_reference_continuation(loaded, expected):
    model, _ = loaded
    ids = torch.tensor([expected["input_ids"]])
    out = model.generate(ids, max_new_tokens=10, min_new_tokens=10, do_sample=False, eos_token_id=None)
    assert out[0, ids.shape[1] :].tolist() == expected["greedy_continuation"]


def test_loaded_model_has_no_meta_tensors_and_returns_the_tokenizer(loaded):
    model, tokenizer = loaded
    assert all(not p.is_meta for p in model.parameters())
    assert all(not b.is_meta for b in model.buffers())
    assert not model.training
    assert isinstance(tokenizer, ChatGLMTokenizer) and tokenizer["<|user|>"] == 157


def test_bfloat16_load_casts_every_weight(expected):
    model, _ = load_chatglm3(DATA, "cpu", "bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    reference = torch.tensor(expected["logits_last3"])
    assert (logits_of(model, expected["input_ids"])[-3:] - reference).abs().max().item() < 0.5


# --------------------------------------------------------------------------- rotary


def test_glm_rotary_is_chatglm3_interleaved_pairs_on_half_the_head():
    from transformers.models.glm.modeling_glm import GlmRotaryEmbedding, apply_rotary_pos_emb

    config = glm_config_from_chatglm3(json.loads((DATA / "config.json").read_text()) | {"rope_ratio": 3.0})
    head_dim, rot_dim, theta = config.head_dim, config.head_dim // 2, 30000.0
    seq = 7
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(1, 1, seq, head_dim, generator=generator)
    positions = torch.arange(seq)
    cos, sin = GlmRotaryEmbedding(config)(q, positions[None])
    rotated, _ = apply_rotary_pos_emb(q, q.clone(), cos, sin)

    # ChatGLM3: pairs (2i, 2i+1) of the first rot_dim dims turn by pos * theta^(-2i/rot_dim); the rest pass.
    want = q.clone()
    for i in range(rot_dim // 2):
        angle = positions.double() * theta ** (-2 * i / rot_dim)
        c, s = angle.cos().float(), angle.sin().float()
        a, b = q[0, 0, :, 2 * i], q[0, 0, :, 2 * i + 1]
        want[0, 0, :, 2 * i] = a * c - b * s
        want[0, 0, :, 2 * i + 1] = b * c + a * s
    torch.testing.assert_close(rotated, want, atol=1e-5, rtol=1e-5)


def test_rope_ratio_scales_the_rope_theta(tmp_path, reference_tensors, loaded, expected):
    base = json.loads((DATA / "config.json").read_text())
    assert glm_config_from_chatglm3(base).rope_parameters["rope_theta"] == 10000.0
    config = glm_config_from_chatglm3(base | {"rope_ratio": 50})
    assert config.rope_parameters == {"rope_type": "default", "rope_theta": 500000.0, "partial_rotary_factor": 0.5}

    folder = make_checkpoint(tmp_path / "ratio", reference_tensors, rope_ratio=50)
    model, _ = load_chatglm3(folder, "cpu", torch.float32)
    want = 1.0 / (500000.0 ** (torch.arange(0, 8, 2, dtype=torch.float) / 8))
    torch.testing.assert_close(model.model.rotary_emb.inv_freq, want)
    moved = logits_of(model, expected["input_ids"])
    assert not torch.allclose(moved, logits_of(loaded[0], expected["input_ids"]), atol=1e-4)


# --------------------------------------------------------------------------- mapping


def _six_b_shape(name: str) -> tuple[int, ...]:
    hidden, vocab, ffn = 4096, 65024, 13696
    qkv_rows = 32 * 128 + 2 * 2 * 128
    shapes = {
        "transformer.embedding.word_embeddings.weight": (vocab, hidden),
        "transformer.encoder.final_layernorm.weight": (hidden,),
        "transformer.output_layer.weight": (vocab, hidden),
        "transformer.rotary_pos_emb.inv_freq": (32,),
        "input_layernorm.weight": (hidden,),
        "post_attention_layernorm.weight": (hidden,),
        "self_attention.query_key_value.weight": (qkv_rows, hidden),
        "self_attention.query_key_value.bias": (qkv_rows,),
        "self_attention.dense.weight": (hidden, hidden),
        "mlp.dense_h_to_4h.weight": (2 * ffn, hidden),
        "mlp.dense_4h_to_h.weight": (hidden, ffn),
    }
    if name in shapes:
        return shapes[name]
    return shapes[re.sub(r"^transformer\.encoder\.layers\.\d+\.", "", name)]


def test_library_6b_config_matches_the_published_values():
    for key, value in SIX_B.items():
        assert CHATGLM3_6B_CONFIG[key] == value, key


def test_6b_config_maps_onto_glm():
    config = glm_config_from_chatglm3(SIX_B)
    assert (config.num_hidden_layers, config.hidden_size, config.intermediate_size) == (28, 4096, 13696)
    assert (config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (32, 2, 128)
    assert (config.vocab_size, config.max_position_embeddings, config.rms_norm_eps) == (65024, 8192, 1e-5)
    assert config.rope_parameters["partial_rotary_factor"] == 0.5
    assert config.rope_parameters["rope_theta"] == 10000.0
    assert config.attention_bias and not config.tie_word_embeddings
    assert (config.eos_token_id, config.pad_token_id) == (2, 0)
    assert config.dtype == torch.float16


def test_every_6b_tensor_maps_and_fills_every_parameter_exactly_once():
    index = json.loads((DATA / "chatglm3-6b.weight_index.json").read_text())
    names = list(index["weight_map"])
    assert len(names) == 200
    # The shapes derived from the config account for the index's byte count (float16).
    assert sum(torch.Size(_six_b_shape(n)).numel() for n in names) * 2 == index["metadata"]["total_size"]

    source = ((name, torch.empty(_six_b_shape(name), device="meta", dtype=torch.float16)) for name in names)
    mapped = list(map_chatglm3_state_dict(source, SIX_B))
    with torch.device("meta"):
        model = GlmForCausalLM(glm_config_from_chatglm3(SIX_B))
    params = {name: tuple(p.shape) for name, p in model.named_parameters()}
    mapped_names = [name for name, _ in mapped]
    assert len(mapped_names) == len(set(mapped_names)), "a parameter was filled twice"
    assert set(mapped_names) == set(params)
    for name, tensor in mapped:
        assert tuple(tensor.shape) == params[name], name
    assert sum(p.numel() for p in model.parameters()) == 6_243_584_000


def test_qkv_split_order_and_bias(reference_tensors):
    config = json.loads((DATA / "config.json").read_text())
    fused_w = reference_tensors["transformer.encoder.layers.0.self_attention.query_key_value.weight"]
    fused_b = reference_tensors["transformer.encoder.layers.0.self_attention.query_key_value.bias"]
    items = [(k, v) for k, v in reference_tensors.items() if k.startswith("transformer.encoder.layers.0.self_attention.q")]
    mapped = dict(map_chatglm3_state_dict(items, config))
    assert torch.equal(mapped["model.layers.0.self_attn.q_proj.weight"], fused_w[:64])
    assert torch.equal(mapped["model.layers.0.self_attn.k_proj.weight"], fused_w[64:96])
    assert torch.equal(mapped["model.layers.0.self_attn.v_proj.weight"], fused_w[96:])
    assert torch.equal(mapped["model.layers.0.self_attn.v_proj.bias"], fused_b[96:])


def test_unknown_tensor_name_is_named_in_the_error():
    config = json.loads((DATA / "config.json").read_text())
    with pytest.raises(ModelLoadError, match=r"transformer\.prefix_encoder\.embedding\.weight"):
        list(map_chatglm3_state_dict([("transformer.prefix_encoder.embedding.weight", torch.zeros(2))], config))
    with pytest.raises(ModelLoadError, match=r"layers\.7\.mlp"):  # only 2 layers exist
        list(map_chatglm3_state_dict([("transformer.encoder.layers.7.mlp.dense_4h_to_h.weight", torch.zeros(2))], config))


def test_fused_qkv_with_the_wrong_row_count_is_refused(reference_tensors):
    config = json.loads((DATA / "config.json").read_text()) | {"multi_query_group_num": 4}
    name = "transformer.encoder.layers.0.self_attention.query_key_value.weight"
    with pytest.raises(ModelLoadError, match="128 rows; expected 64 query"):
        list(map_chatglm3_state_dict([(name, reference_tensors[name])], config))


def test_missing_tensor_gives_a_clear_error(tmp_path, reference_tensors):
    tensors = dict(reference_tensors)
    del tensors["transformer.encoder.layers.1.mlp.dense_4h_to_h.weight"]
    folder = make_checkpoint(tmp_path / "missing", tensors)
    with pytest.raises(ModelLoadError, match=r"missing weights for: model\.layers\.1\.mlp\.down_proj\.weight"):
        load_chatglm3(folder, "cpu", torch.float32)


def test_extra_tensor_gives_a_clear_error(tmp_path, reference_tensors):
    tensors = dict(reference_tensors) | {"transformer.prefix_encoder.embedding.weight": torch.zeros(4, 64)}
    folder = make_checkpoint(tmp_path / "extra", tensors)
    with pytest.raises(ModelLoadError, match=r"unknown tensor.*transformer\.prefix_encoder\.embedding\.weight"):
        load_chatglm3(folder, "cpu", torch.float32)


def test_wrong_shape_gives_a_clear_error(tmp_path, reference_tensors):
    tensors = dict(reference_tensors) | {"transformer.encoder.final_layernorm.weight": torch.ones(65)}
    folder = make_checkpoint(tmp_path / "shape", tensors)
    with pytest.raises(ModelLoadError, match=r"model\.norm\.weight has shape \(65,\); the config expects \(64,\)"):
        load_chatglm3(folder, "cpu", torch.float32)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("quantization_bit", 4, "pre-quantized"), ("pre_seq_len", 128, "P-tuning"), ("rmsnorm", False, "LayerNorm")],
)
def test_unsupported_variants_are_refused(field, value, message):
    config = json.loads((DATA / "config.json").read_text()) | {field: value}
    with pytest.raises(ModelLoadError, match=message):
        glm_config_from_chatglm3(config)


# --------------------------------------------------------------------------- .bin shards


@pytest.mark.parametrize("with_index", [True, False])
def test_pytorch_bin_shards_load_like_safetensors(tmp_path, reference_tensors, loaded, expected, with_index):
    folder = tmp_path / "bin"
    folder.mkdir()
    shutil.copyfile(DATA / "config.json", folder / "config.json")
    shutil.copyfile(DATA / "tokenizer.model", folder / "tokenizer.model")
    names = list(reference_tensors)
    halves = {"pytorch_model-00001-of-00002.bin": names[:9], "pytorch_model-00002-of-00002.bin": names[9:]}
    weight_map = {}
    for file, part in halves.items():
        torch.save({name: reference_tensors[name] for name in part}, folder / file)
        weight_map |= {name: file for name in part}
    if with_index:
        total = sum(t.nbytes for t in reference_tensors.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    assert is_chatglm3_checkpoint(folder)
    model, _ = load_chatglm3(folder, "cpu", torch.float32)
    assert torch.equal(logits_of(model, expected["input_ids"]), logits_of(loaded[0], expected["input_ids"]))


def test_bin_shard_with_an_unknown_tensor_and_no_index_is_refused(tmp_path, reference_tensors):
    folder = tmp_path / "bin-extra"
    folder.mkdir()
    shutil.copyfile(DATA / "config.json", folder / "config.json")
    shutil.copyfile(DATA / "tokenizer.model", folder / "tokenizer.model")
    torch.save(dict(reference_tensors) | {"lm_head.weight": torch.zeros(1)}, folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"unknown tensor.*lm_head\.weight"):
        load_chatglm3(folder, "cpu", torch.float32)


# --------------------------------------------------------------------------- conversion


@pytest.mark.parametrize("max_shard_bytes", [2 * GIB, 100_000])
def test_converted_folder_loads_with_plain_from_pretrained(tmp_path, loaded, expected, max_shard_bytes):
    dst = convert_chatglm3(DATA, tmp_path / "native", progress=False, max_shard_bytes=max_shard_bytes)
    assert json.loads((dst / "composite.json").read_text()) == {"dialect": "chatglm3"}
    assert (dst / "tokenizer.model").read_bytes() == (DATA / "tokenizer.model").read_bytes()
    assert json.loads((dst / "config.json").read_text())["model_type"] == "glm"
    sharded = max_shard_bytes < 332128
    assert (dst / "model.safetensors.index.json").is_file() == sharded
    assert (dst / "model.safetensors").is_file() == (not sharded)

    native = GlmForCausalLM.from_pretrained(dst, dtype=torch.float32)
    ids = expected["input_ids"]
    assert torch.equal(logits_of(native, ids), logits_of(loaded[0], ids))


def test_convert_casts_to_the_requested_dtype(tmp_path):
    dst = convert_chatglm3(DATA, tmp_path / "bf16", dtype="bfloat16", progress=False)
    with safe_open(str(dst / "model.safetensors"), framework="pt") as handle:
        dtypes = {handle.get_slice(name).get_dtype() for name in handle.keys()}
    assert dtypes == {"BF16"}
    assert json.loads((dst / "config.json").read_text())["dtype"] == "bfloat16"


def test_convert_refuses_a_non_empty_destination(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("keep me")
    with pytest.raises(ModelLoadError, match="not empty"):
        convert_chatglm3(DATA, tmp_path / "busy", progress=False)


def test_convert_cli_reports_success_and_failure(tmp_path, capsys):
    assert convert_cli(str(DATA), str(tmp_path / "cli"), "float32") == 0
    assert "converted" in capsys.readouterr().out
    assert convert_cli(str(tmp_path / "nothing"), str(tmp_path / "cli2")) == 1
    assert "not a ChatGLM3 checkpoint" in capsys.readouterr().err


# --------------------------------------------------------------------------- memory


def _six_b_index_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "six-b"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(SIX_B))
    shutil.copyfile(DATA / "chatglm3-6b.weight_index.json", folder / "pytorch_model.bin.index.json")
    return folder


def test_estimate_weight_bytes_uses_the_index_and_target_dtype(tmp_path):
    folder = _six_b_index_folder(tmp_path)
    assert estimate_weight_bytes(folder) == 12_487_168_064
    assert estimate_weight_bytes(folder, "float16") == 12_487_168_064
    assert estimate_weight_bytes(folder, torch.float32) == 2 * 12_487_168_064
    four = estimate_weight_bytes(folder, "4bit")
    eight = estimate_weight_bytes(folder, "8bit")
    assert 3 * GIB < four < eight < 8 * GIB


def test_estimate_weight_bytes_reads_safetensors_headers_exactly(reference_tensors):
    params = sum(t.numel() for t in reference_tensors.values())
    assert estimate_weight_bytes(DATA) == params * 4  # stored as float32
    assert estimate_weight_bytes(DATA, "bfloat16") == params * 2


def test_estimate_weight_bytes_falls_back_to_bin_file_sizes(tmp_path, reference_tensors):
    folder = tmp_path / "bin-size"
    folder.mkdir()
    shutil.copyfile(DATA / "config.json", folder / "config.json")  # torch_dtype float32
    torch.save(dict(reference_tensors), folder / "pytorch_model.bin")
    stored = (folder / "pytorch_model.bin").stat().st_size
    assert estimate_weight_bytes(folder) == stored
    assert estimate_weight_bytes(folder, "float16") == stored // 4 * 2


def test_check_memory_refuses_ten_terabytes_with_both_numbers():
    with pytest.raises(ModelLoadError) as info:
        check_memory(10 * 10**12, "cpu")
    message = str(info.value)
    assert f"{10 * 10**12 / GIB:.1f} GiB" in message
    assert re.search(r"only \d+\.\d GiB is available", message)
    assert "4-bit" in message and "smaller model" in message


def test_check_memory_accepts_a_small_model():
    check_memory(1024, "cpu")


def test_unknown_device_is_a_model_load_error():
    with pytest.raises(ModelLoadError, match="unknown device 'gpu-please'"):
        check_memory(1024, "gpu-please")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_check_memory_on_missing_cuda_is_a_model_load_error():
    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        check_memory(1024, "cuda")


# --------------------------------------------------------------------------- benchmark


def test_gpu_check_runs_on_cpu_with_the_small_config(monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    results = module.run(small=True, device="cpu", prompt_tokens=16, new_tokens=6)
    half = results[0]
    assert half.label == "float16" and not half.skipped
    assert half.load_s > 0 and half.prefill_tok_s > 0 and half.decode_tok_s > 0 and half.peak_bytes > 0
    assert half.new_tokens == 6 and half.prompt_tokens == 16 + 5  # text + [gMASK] sop <|system|> <|user|> <|assistant|>
    assert "tok/s" in half.line()
    if not torch.cuda.is_available():
        assert results[1].label == "4-bit" and "CUDA" in results[1].skipped
