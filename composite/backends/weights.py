"""Model weights on disk: file layout, parameter counts, the size a load will take (one estimate,
quantized or not) and the check that it fits in the device's free memory. Used by every load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelLoadError

if TYPE_CHECKING:
    import torch

__all__ = [
    "GIB",
    "MEMORY_HEADROOM",
    "estimate_weight_bytes",
    "check_memory",
    "resolve_dtype",
    "has_weights",
]

GIB = 1024**3
MEMORY_HEADROOM = 1.2
_INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_QUANT_BITS = {"4bit": 4, "int4": 4, "nf4": 4, "fp4": 4, "8bit": 8, "int8": 8}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} holds {type(data).__name__}; expected a JSON object")
    return data


def _index_file(path: Path) -> Path | None:
    for name in _INDEX_FILES:
        if (path / name).is_file():
            return path / name
    return None


def _shard_files(path: Path) -> list[Path]:
    """The weight files of a checkpoint folder, in load order (empty when there are none)."""
    index = _index_file(path)
    if index is not None:
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelLoadError(f"{index} has no weight_map; expected {{tensor name: shard file}}")
        names = sorted(set(weight_map.values()))
        missing = [name for name in names if not (path / name).is_file()]
        if missing:
            raise ModelLoadError(f"{index} lists shards that are not in {path}: {', '.join(missing)}")
        return [path / name for name in names]
    safetensors = sorted(path.glob("*.safetensors"))
    if safetensors:
        return safetensors
    return sorted(path.glob("pytorch_model*.bin"))


def has_weights(folder: Path) -> bool:
    """Whether a folder holds weight files (safetensors or PyTorch bins)."""
    return any(folder.glob("*.safetensors")) or any(folder.glob("pytorch_model*.bin"))


def _torch_dtype_name(cfg: dict[str, Any]) -> str | None:
    name = cfg.get("torch_dtype") or cfg.get("dtype")
    return name if isinstance(name, str) else None


def resolve_dtype(dtype: Any) -> torch.dtype | None:
    """A torch dtype from a dtype or its name ('float16', 'bf16', ...); None for None or 'auto'."""
    import torch

    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    aliases = {
        "auto": None,
        "float32": torch.float32,
        "fp32": torch.float32,
        "float": torch.float32,
        "float16": torch.float16,
        "fp16": torch.float16,
        "half": torch.float16,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
    }
    key = str(dtype).lower().removeprefix("torch.")
    if key not in aliases:
        raise ModelLoadError(f"unknown dtype {dtype!r}; expected auto, float32, float16 or bfloat16")
    return aliases[key]


def _safetensors_header(shard: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (names, dtypes, shapes, offsets), read without the weights."""
    try:
        with shard.open("rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if not 0 < size < 100 * 2**20:
                raise ModelLoadError(f"{shard} does not start with a safetensors header")
            header = json.loads(handle.read(size))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot read the safetensors header of {shard}: {exc}") from exc
    header.pop("__metadata__", None)
    return header


def _param_count_and_bytes(path: Path) -> tuple[int, int]:
    """(parameter count, bytes as stored): exact from safetensors headers, else the index total or file sizes."""
    import math

    import torch

    index = _index_file(path)
    total = None
    if index is None:
        shards = _shard_files(path)
    else:
        data = _read_json(index)
        total = (data.get("metadata") or {}).get("total_size")
        shards = [path / name for name in sorted(set((data.get("weight_map") or {}).values()))]
        if not all(shard.is_file() for shard in shards):
            shards = []  # an index without its shards (a download in progress): trust its total
    if shards and all(shard.suffix == ".safetensors" for shard in shards):
        params = stored = 0
        for shard in shards:
            for entry in _safetensors_header(shard).values():
                params += math.prod(entry["shape"])
                stored += entry["data_offsets"][1] - entry["data_offsets"][0]
        return params, stored
    if not isinstance(total, int) or total <= 0:
        if not shards:
            raise ModelLoadError(f"{path} has no weight shards to size")
        total = sum(shard.stat().st_size for shard in shards)
    config = _read_json(path / "config.json") if (path / "config.json").is_file() else {}
    stored_dtype = resolve_dtype(_torch_dtype_name(config) or "float16") or torch.float16
    return total // stored_dtype.itemsize, total


def estimate_weight_bytes(path: str | Path, dtype: Any = None) -> int:
    """Bytes the weights of a checkpoint folder take once loaded in `dtype`.

    dtype None/'auto' keeps the stored size; '4bit'/'8bit' estimate bitsandbytes quantization
    (linear layers at bits/8 per parameter, embeddings and output layer kept at 16 bits).
    """
    folder = Path(path)
    params, stored_bytes = _param_count_and_bytes(folder)
    key = str(dtype).lower() if isinstance(dtype, str) else None
    if key in _QUANT_BITS:
        bits = _QUANT_BITS[key]
        config = _read_json(folder / "config.json") if (folder / "config.json").is_file() else {}
        vocab = config.get("padded_vocab_size") or config.get("vocab_size") or 0
        hidden = config.get("hidden_size") or 0
        kept = min(params, vocab * hidden * (1 if config.get("tie_word_embeddings") else 2))
        return int((params - kept) * bits / 8 + kept * 2)
    chosen = resolve_dtype(dtype)
    if chosen is None:
        return stored_bytes
    return params * chosen.itemsize


def _as_device(device: Any) -> torch.device:
    import torch

    if isinstance(device, torch.device):
        return device
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ModelLoadError(f"unknown device {device!r}; expected cpu, cuda, cuda:N or mps") from exc


def _available_bytes(device: torch.device) -> int:
    import torch

    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device {device} was asked for but CUDA is not available; use device 'cpu'")
        free, _total = torch.cuda.mem_get_info(device.index if device.index is not None else torch.cuda.current_device())
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)


def check_memory(required_bytes: int, device: Any, headroom: float = MEMORY_HEADROOM) -> None:
    """Raise ModelLoadError when `required_bytes` (times headroom) do not fit in the device's free memory."""
    where = _as_device(device)
    available = _available_bytes(where)
    needed = int(required_bytes * headroom)
    if needed <= available:
        return
    options = ["load with 4-bit or 8-bit quantization (CUDA with bitsandbytes)"]
    if where.type == "cuda":
        options.append("load on the CPU (system memory, slower)")
    options.append("pick a smaller model")
    raise ModelLoadError(
        f"not enough memory on {where}: the model needs about {required_bytes / GIB:.1f} GiB "
        f"({needed / GIB:.1f} GiB with {headroom - 1:.0%} headroom) but only {available / GIB:.1f} GiB is available. "
        f"Options: {'; '.join(options)}."
    )
