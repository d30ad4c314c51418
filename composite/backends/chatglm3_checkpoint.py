"""ChatGLM3 original checkpoints (`model_type: "chatglm"`) loaded as transformers' native GlmForCausalLM.

Detects the layout, maps config and weights (no remote code), streams shards into an empty model
(after the memory check of `weights.py`) and converts to a native folder.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelLoadError
from .weights import (
    GIB,
    _as_device,
    _index_file,
    _read_json,
    _safetensors_header,
    _shard_files,
    _torch_dtype_name,
    check_memory,
    estimate_weight_bytes,
    resolve_dtype,
)

if TYPE_CHECKING:
    import torch
    from transformers import GlmConfig, GlmForCausalLM

    from ..tokenizer import ChatGLMTokenizer

__all__ = [
    "CHATGLM3_6B_CONFIG",
    "is_chatglm3_checkpoint",
    "checkpoint_problems",
    "read_chatglm3_config",
    "glm_config_from_chatglm3",
    "map_chatglm3_state_dict",
    "iter_checkpoint_tensors",
    "load_chatglm3",
    "convert_chatglm3",
    "convert_cli",
    "estimate_weight_bytes",
    "check_memory",
    "resolve_dtype",
]

DEFAULT_MAX_SHARD_BYTES = 2 * GIB

# The architecture fields of THUDM/chatglm3-6b's config.json (the real 6B model).
CHATGLM3_6B_CONFIG: dict[str, Any] = {
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
    "rmsnorm": True,
    "add_bias_linear": False,
    "add_qkv_bias": True,
    "post_layer_norm": True,
    "apply_residual_connection_post_layernorm": False,
    "original_rope": True,
    "tie_word_embeddings": False,
    "eos_token_id": 2,
    "pad_token_id": 0,
    "torch_dtype": "float16",
}

_LAYER_KEY = re.compile(r"^transformer\.encoder\.layers\.(\d+)\.(.+)$")
_TOP_LEVEL_KEYS = {
    "transformer.embedding.word_embeddings.weight": "model.embed_tokens.weight",
    "transformer.encoder.final_layernorm.weight": "model.norm.weight",
    "transformer.output_layer.weight": "lm_head.weight",
}
# The rotary frequencies are recomputed from the config (ChatGLM3 itself ignores this buffer).
_DROPPED_KEYS = {"transformer.rotary_pos_emb.inv_freq"}
_LAYER_KEYS = {
    "input_layernorm.weight": "input_layernorm.weight",
    "post_attention_layernorm.weight": "post_attention_layernorm.weight",
    "self_attention.dense.weight": "self_attn.o_proj.weight",
    # ChatGLM3's dense_h_to_4h is [gate; up], which is exactly GlmMLP's fused gate_up_proj order.
    "mlp.dense_h_to_4h.weight": "mlp.gate_up_proj.weight",
    "mlp.dense_4h_to_h.weight": "mlp.down_proj.weight",
}
_QKV_KEY = re.compile(r"^self_attention\.query_key_value\.(weight|bias)$")


# --------------------------------------------------------------------------- detection


def checkpoint_problems(path: str | Path) -> list[str]:
    """Why `path` is not an original ChatGLM3 checkpoint folder (an empty list when it is one)."""
    folder = Path(path)
    if not folder.is_dir():
        return [f"{folder} is not a folder"]
    problems = []
    config_file = folder / "config.json"
    if not config_file.is_file():
        problems.append(f"{config_file} is missing")
    else:
        try:
            model_type = _read_json(config_file).get("model_type")
        except ModelLoadError as exc:
            problems.append(str(exc))
        else:
            if model_type != "chatglm":
                problems.append(f"config.json has model_type {model_type!r}; expected 'chatglm'")
    if not (folder / "tokenizer.model").is_file():
        problems.append(f"{folder / 'tokenizer.model'} (the sentencepiece tokenizer) is missing")
    try:
        shards = _shard_files(folder)
    except ModelLoadError as exc:
        problems.append(str(exc))
    else:
        if not shards:
            problems.append(f"{folder} has no weight shards (*.safetensors or pytorch_model*.bin)")
    return problems


def is_chatglm3_checkpoint(path: str | Path) -> bool:
    """True for a folder in the original ChatGLM3 layout: chatglm config, tokenizer.model, weight shards."""
    return not checkpoint_problems(path)


def read_chatglm3_config(path: str | Path) -> dict[str, Any]:
    """The config.json of an original ChatGLM3 checkpoint folder; ModelLoadError says what is wrong."""
    problems = checkpoint_problems(path)
    if problems:
        raise ModelLoadError(f"{path} is not a ChatGLM3 checkpoint: " + "; ".join(problems))
    return _read_json(Path(path) / "config.json")


# --------------------------------------------------------------------------- config


def _require_int(cfg: dict[str, Any], key: str) -> int:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ModelLoadError(f"ChatGLM3 config field {key!r} is {value!r}; expected a positive integer")
    return value


def glm_config_from_chatglm3(cfg: dict[str, Any]) -> GlmConfig:
    """Map an original ChatGLM3 config dict onto transformers' GlmConfig (partial interleaved rotary)."""
    from transformers import GlmConfig

    if cfg.get("model_type") != "chatglm":
        raise ModelLoadError(f"config model_type is {cfg.get('model_type')!r}; expected 'chatglm'")
    unsupported = {
        "rmsnorm": (True, "LayerNorm instead of RMSNorm"),
        "add_bias_linear": (False, "biases on the dense layers"),
        "post_layer_norm": (True, "no final layer norm"),
        "apply_residual_connection_post_layernorm": (False, "post-norm residuals"),
    }
    for key, (expected, what) in unsupported.items():
        if key in cfg and bool(cfg[key]) != expected:
            raise ModelLoadError(f"this ChatGLM checkpoint uses {what} ({key}={cfg[key]!r}), which GLM does not support")
    if cfg.get("quantization_bit") not in (None, 0):
        raise ModelLoadError(
            f"this checkpoint is pre-quantized to {cfg['quantization_bit']} bits with ChatGLM's own kernels; "
            "use the float16 checkpoint (quantize it with bitsandbytes on CUDA if memory is short)"
        )
    if cfg.get("pre_seq_len"):
        raise ModelLoadError("P-tuning prefix checkpoints (pre_seq_len set) are not supported; merge or drop the prefix")

    layers = _require_int(cfg, "num_layers")
    hidden = _require_int(cfg, "hidden_size")
    heads = _require_int(cfg, "num_attention_heads")
    head_dim = cfg.get("kv_channels") or hidden // heads
    kv_heads = _require_int(cfg, "multi_query_group_num") if cfg.get("multi_query_attention") else heads
    if heads % kv_heads:
        raise ModelLoadError(f"{heads} attention heads cannot be shared by {kv_heads} key/value groups")
    vocab = _require_int(cfg, "padded_vocab_size" if "padded_vocab_size" in cfg else "vocab_size")
    rope_ratio = float(cfg.get("rope_ratio") or 1.0)
    eos = cfg.get("eos_token_id", 2)
    config = GlmConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=_require_int(cfg, "ffn_hidden_size"),
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=int(head_dim),
        hidden_act="silu",
        attention_dropout=0.0,
        max_position_embeddings=int(cfg.get("seq_length") or 8192),
        rms_norm_eps=float(cfg.get("layernorm_epsilon", 1e-5)),
        tie_word_embeddings=False,
        # ChatGLM3 rotates the first half of each head in interleaved pairs; GLM does the same when
        # partial_rotary_factor is 0.5. rope_ratio (the 32k/128k variants) scales the base.
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0 * rope_ratio, "partial_rotary_factor": 0.5},
        pad_token_id=cfg.get("pad_token_id", 0),
        eos_token_id=eos,
        bos_token_id=None,
        attention_bias=bool(cfg.get("add_qkv_bias", True)),
        use_cache=True,
    )
    if _torch_dtype_name(cfg) in ("float16", "bfloat16", "float32"):
        config.dtype = resolve_dtype(_torch_dtype_name(cfg))
    return config


# --------------------------------------------------------------------------- weights


def _as_glm_config(cfg: dict[str, Any] | GlmConfig) -> GlmConfig:
    return glm_config_from_chatglm3(cfg) if isinstance(cfg, dict) else cfg


def map_chatglm3_state_dict(
    tensors: Iterable[tuple[str, torch.Tensor]], cfg: dict[str, Any] | GlmConfig
) -> Iterator[tuple[str, torch.Tensor]]:
    """Rename ChatGLM3 tensors to GlmForCausalLM names, splitting the fused query_key_value.

    Unknown names raise ModelLoadError. Split pieces are views of the fused tensor: copy them
    before saving. `cfg` is the original config dict or the GlmConfig made from it.
    """
    config = _as_glm_config(cfg)
    q_rows = config.num_attention_heads * config.head_dim
    kv_rows = config.num_key_value_heads * config.head_dim
    for name, tensor in tensors:
        if name in _DROPPED_KEYS:
            continue
        if name in _TOP_LEVEL_KEYS:
            yield _TOP_LEVEL_KEYS[name], tensor
            continue
        match = _LAYER_KEY.match(name)
        if match is None or int(match.group(1)) >= config.num_hidden_layers:
            raise ModelLoadError(_unknown_keys_message([name], config))
        prefix = f"model.layers.{int(match.group(1))}."
        rest = match.group(2)
        if rest in _LAYER_KEYS:
            yield prefix + _LAYER_KEYS[rest], tensor
            continue
        qkv = _QKV_KEY.match(rest)
        if qkv is None:
            raise ModelLoadError(_unknown_keys_message([name], config))
        kind = qkv.group(1)
        if tensor.shape[0] != q_rows + 2 * kv_rows:
            raise ModelLoadError(
                f"{name} has {tensor.shape[0]} rows; expected {q_rows} query + 2 x {kv_rows} key/value rows "
                f"({config.num_attention_heads} heads, {config.num_key_value_heads} groups, head dim {config.head_dim})"
            )
        query, key, value = tensor.split([q_rows, kv_rows, kv_rows], dim=0)
        yield f"{prefix}self_attn.q_proj.{kind}", query
        yield f"{prefix}self_attn.k_proj.{kind}", key
        yield f"{prefix}self_attn.v_proj.{kind}", value


def _unknown_keys_message(names: list[str], config: GlmConfig) -> str:
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    return (
        f"unknown tensor(s) in the ChatGLM3 checkpoint: {shown}; expected only transformer.embedding, "
        f"transformer.encoder.layers.0-{config.num_hidden_layers - 1}.*, final_layernorm, output_layer and "
        "rotary_pos_emb tensors (quantized or P-tuning checkpoints are not supported)"
    )


def _check_names(names: Iterable[str], config: GlmConfig) -> None:
    """Raise one error naming every tensor the mapping does not know, before any weight is read."""
    unknown = []
    for name in names:
        if name in _DROPPED_KEYS or name in _TOP_LEVEL_KEYS:
            continue
        match = _LAYER_KEY.match(name)
        rest = match.group(2) if match else ""
        if match is None or int(match.group(1)) >= config.num_hidden_layers:
            unknown.append(name)
        elif rest not in _LAYER_KEYS and _QKV_KEY.match(rest) is None:
            unknown.append(name)
    if unknown:
        raise ModelLoadError(_unknown_keys_message(sorted(unknown), config))


def _tensor_names(path: Path) -> list[str] | None:
    """All tensor names of a checkpoint when they are known without reading weights, else None."""
    index = _index_file(path)
    if index is not None:
        return list(_read_json(index)["weight_map"])
    shards = _shard_files(path)
    if shards and all(shard.suffix == ".safetensors" for shard in shards):
        return [name for shard in shards for name in _safetensors_header(shard)]
    return None


def _iter_shard(shard: Path) -> Iterator[tuple[str, torch.Tensor]]:
    import pickle

    import torch
    from safetensors import SafetensorError, safe_open

    if shard.suffix == ".safetensors":
        try:
            with safe_open(str(shard), framework="pt", device="cpu") as handle:
                for name in handle.keys():
                    yield name, handle.get_tensor(name)
        except (OSError, SafetensorError) as exc:
            raise ModelLoadError(f"cannot read shard {shard}: {exc}") from exc
        return
    try:
        # mmap keeps only the tensor being copied resident; weights_only refuses pickled code.
        state = torch.load(shard, map_location="cpu", mmap=True, weights_only=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc):
            raise ModelLoadError(f"cannot read shard {shard}: {exc}") from exc
        try:  # legacy (non-zip) torch.save format cannot be memory-mapped
            state = torch.load(shard, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, pickle.UnpicklingError) as inner:
            raise ModelLoadError(f"cannot read shard {shard}: {inner}") from inner
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        raise ModelLoadError(f"cannot read shard {shard}: {exc}") from exc
    if not isinstance(state, dict):
        raise ModelLoadError(f"{shard} holds {type(state).__name__}; expected a state dict of tensors")
    for name in list(state):
        yield name, state.pop(name)


def iter_checkpoint_tensors(path: str | Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Every (name, tensor) of a checkpoint folder, shard by shard, on the CPU."""
    folder = Path(path)
    shards = _shard_files(folder)
    if not shards:
        raise ModelLoadError(f"{folder} has no weight shards (*.safetensors or pytorch_model*.bin)")
    for shard in shards:
        yield from _iter_shard(shard)


def _empty_model(config: GlmConfig) -> GlmForCausalLM:
    """A GlmForCausalLM whose parameters live on the meta device: no memory, no random init."""
    import torch
    from transformers import GlmForCausalLM

    with torch.device("meta"):
        return GlmForCausalLM(config)


class _Filler:
    """Checks mapped tensors against the model's parameters: known name, right shape, filled once."""

    def __init__(self, model: GlmForCausalLM):
        self.shapes = {name: tuple(param.shape) for name, param in model.named_parameters()}
        self.filled: set[str] = set()

    def check(self, name: str, tensor: torch.Tensor) -> None:
        if name not in self.shapes:
            raise ModelLoadError(f"mapped tensor {name} has no parameter in GlmForCausalLM")
        if name in self.filled:
            raise ModelLoadError(f"the checkpoint fills parameter {name} twice")
        if tuple(tensor.shape) != self.shapes[name]:
            raise ModelLoadError(f"{name} has shape {tuple(tensor.shape)}; the config expects {self.shapes[name]}")
        self.filled.add(name)

    def check_complete(self) -> None:
        missing = sorted(set(self.shapes) - self.filled)
        if missing:
            shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
            raise ModelLoadError(f"the checkpoint is missing weights for: {shown}")


# --------------------------------------------------------------------------- dtypes and memory


def _load_dtype(cfg: dict[str, Any], device: torch.device, dtype: Any) -> torch.dtype:
    import torch

    chosen = resolve_dtype(dtype)
    if chosen is not None:
        return chosen
    stored = resolve_dtype(_torch_dtype_name(cfg) or "float32")
    # float16 kernels on CPU are slow or missing; bfloat16 keeps the half-size footprint there.
    if device.type == "cpu" and stored == torch.float16:
        return torch.bfloat16
    return stored or torch.float32


# --------------------------------------------------------------------------- loading


def load_chatglm3(
    path: str | Path, device: Any = "cpu", dtype: Any = None, *, check: bool = True
) -> tuple[GlmForCausalLM, ChatGLMTokenizer]:
    """Load an original ChatGLM3 folder as (GlmForCausalLM in eval mode, ChatGLMTokenizer).

    The model is built on the meta device and filled shard by shard, each tensor cast to `dtype`
    and moved to `device` as it is read, so peak memory stays near one copy of the weights.
    dtype None/'auto' uses the stored dtype (bfloat16 instead of float16 on CPU).
    """
    import torch

    from ..tokenizer import ChatGLMTokenizer

    folder = Path(path)
    cfg = read_chatglm3_config(folder)
    config = glm_config_from_chatglm3(cfg)
    where = _as_device(device)
    target = _load_dtype(cfg, where, dtype)
    if check:
        check_memory(estimate_weight_bytes(folder, target), where)
    tokenizer = ChatGLMTokenizer(folder / "tokenizer.model")
    if tokenizer.vocab_size > config.vocab_size:
        raise ModelLoadError(
            f"tokenizer.model has {tokenizer.vocab_size} tokens with the special ones but the model only "
            f"{config.vocab_size}; the tokenizer does not belong to this checkpoint"
        )
    names = _tensor_names(folder)
    if names is not None:
        _check_names(names, config)

    config.dtype = target
    model = _empty_model(config)
    filler = _Filler(model)
    for name, tensor in map_chatglm3_state_dict(iter_checkpoint_tensors(folder), config):
        filler.check(name, tensor)
        module_name, _, leaf = name.rpartition(".")
        value = tensor.to(device=where, dtype=target, copy=True)
        setattr(model.get_submodule(module_name), leaf, torch.nn.Parameter(value, requires_grad=False))
    filler.check_complete()
    # Non-persistent buffers (the rotary frequencies) are still on meta: rebuild them from the config.
    model.model.rotary_emb = type(model.model.rotary_emb)(config=config).to(where)
    leftovers = [name for name, buf in model.named_buffers() if buf.is_meta]
    if leftovers:
        raise ModelLoadError(f"buffers left unset after loading: {', '.join(leftovers)}")
    model.eval()
    return model, tokenizer


# --------------------------------------------------------------------------- conversion


def convert_chatglm3(
    src: str | Path,
    dst: str | Path,
    dtype: Any = None,
    progress: bool = True,
    *,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    overwrite: bool = False,
) -> Path:
    """Write `src` (original ChatGLM3) to `dst` as a native transformers GLM checkpoint.

    dst gets config.json, model.safetensors (or shards plus model.safetensors.index.json),
    tokenizer.model and composite.json ({"dialect": "chatglm3"}). dtype None keeps the stored dtype.
    """
    import torch
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    source, target = Path(src), Path(dst)
    cfg = read_chatglm3_config(source)
    config = glm_config_from_chatglm3(cfg)
    out_dtype = resolve_dtype(dtype) or resolve_dtype(_torch_dtype_name(cfg) or "float32") or torch.float32
    if target.exists() and not target.is_dir():
        raise ModelLoadError(f"{target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise ModelLoadError(f"{target} is not empty; pick an empty or new folder (or pass overwrite=True)")
    names = _tensor_names(source)
    if names is not None:
        _check_names(names, config)
    target.mkdir(parents=True, exist_ok=True)

    config.dtype = out_dtype
    filler = _Filler(_empty_model(config))
    written: list[Path] = []
    weight_map: dict[str, str] = {}
    shard: dict[str, torch.Tensor] = {}
    shard_bytes = total_bytes = 0

    def flush() -> None:
        nonlocal shard, shard_bytes
        part = target / f"model-part{len(written) + 1:05d}.safetensors"
        save_file(shard, str(part), metadata={"format": "pt"})
        written.append(part)
        for key in shard:
            weight_map[key] = part.name
        shard, shard_bytes = {}, 0

    bar = tqdm(total=len(names) if names is not None else None, unit="tensor", desc="converting", disable=not progress)

    def counted(items: Iterator[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
        for item in items:
            bar.update(1)
            yield item

    try:
        for name, tensor in map_chatglm3_state_dict(counted(iter_checkpoint_tensors(source)), config):
            filler.check(name, tensor)
            # copy=True detaches split q/k/v views from the fused tensor (safetensors refuses shared storage).
            value = tensor.to(dtype=out_dtype, copy=True).contiguous()
            if shard and shard_bytes + value.nbytes > max_shard_bytes:
                flush()
            shard[name] = value
            shard_bytes += value.nbytes
            total_bytes += value.nbytes
        filler.check_complete()
        if shard or not written:
            flush()
    except BaseException:
        # Deliberately broad (Ctrl-C included): remove half-written shards, then re-raise as is.
        for part in written:
            part.unlink(missing_ok=True)
        raise
    finally:
        bar.close()

    if len(written) == 1:
        written[0].rename(target / "model.safetensors")
    else:
        final = {part.name: f"model-{i:05d}-of-{len(written):05d}.safetensors" for i, part in enumerate(written, 1)}
        for part in written:
            part.rename(target / final[part.name])
        index = {
            "metadata": {"total_size": total_bytes},
            "weight_map": {key: final[name] for key, name in sorted(weight_map.items())},
        }
        (target / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    config.save_pretrained(str(target))
    shutil.copyfile(source / "tokenizer.model", target / "tokenizer.model")
    (target / "composite.json").write_text(json.dumps({"dialect": "chatglm3"}) + "\n", encoding="utf-8")
    return target


def convert_cli(src: str, dst: str, dtype: str = "auto") -> int:
    """`python -m composite convert SRC DST [--dtype]`: convert and report; returns the exit status."""
    try:
        target = convert_chatglm3(src, dst, dtype=dtype, progress=True)
        size = estimate_weight_bytes(target)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    shown = f"{size / GIB:.2f} GiB" if size >= GIB else f"{size / 2**20:.1f} MiB"
    print(f"converted {src} -> {target} ({shown} of weights); load it with GlmForCausalLM.from_pretrained")
    return 0
