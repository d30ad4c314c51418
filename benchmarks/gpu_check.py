"""Smoke benchmark: a ChatGLM3-6B-shaped GlmForCausalLM with random weights, in float16 and 4-bit.

Run: python benchmarks/gpu_check.py [--small] [--device cuda] [--prompt-tokens N] [--new-tokens N]
Prints load time, prefill and decode tokens/s and peak memory; on CPU it uses a small config.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from composite.checkpoint import CHATGLM3_6B_CONFIG, glm_config_from_chatglm3  # noqa: E402
from composite.tokenizer import SPECIAL_TOKENS  # noqa: E402

GIB = 1024**3
# A ChatGLM3-architecture model small enough to run on two CPU cores in seconds.
SMALL_CONFIG: dict[str, Any] = {
    **CHATGLM3_6B_CONFIG,
    "num_layers": 2,
    "hidden_size": 256,
    "ffn_hidden_size": 512,
    "num_attention_heads": 8,
    "multi_query_group_num": 2,
    "kv_channels": 32,
    "padded_vocab_size": 1024,
    "seq_length": 2048,
}
# ChatGLM3-6B's sentencepiece vocabulary: its special tokens start right after it.
CHATGLM3_6B_SP_VOCAB = 64789


@dataclass
class BenchResult:
    """One measured (or skipped) configuration."""

    label: str
    device: str
    load_s: float = 0.0
    prompt_tokens: int = 0
    prefill_tok_s: float = 0.0
    new_tokens: int = 0
    decode_tok_s: float = 0.0
    weights_bytes: int = 0
    peak_bytes: int = 0
    skipped: str = ""

    def line(self) -> str:
        if self.skipped:
            return f"{self.label:>8} on {self.device}: skipped ({self.skipped})"
        return (
            f"{self.label:>8} on {self.device}: load {self.load_s:.2f} s | prefill {self.prefill_tok_s:,.0f} tok/s "
            f"({self.prompt_tokens} tokens) | decode {self.decode_tok_s:,.1f} tok/s ({self.new_tokens} tokens) | "
            f"weights {_size(self.weights_bytes)} | peak {_size(self.peak_bytes)}"
        )


def _size(count: int) -> str:
    return f"{count / GIB:.2f} GiB" if count >= GIB else f"{count / 2**20:.1f} MiB"


def chat_prompt(vocab_size: int, text_tokens: int, seed: int = 0) -> list[int]:
    """A system + user turn in ChatGLM3's layout, with random ids standing in for the text."""
    import torch

    sp_vocab = CHATGLM3_6B_SP_VOCAB if vocab_size == CHATGLM3_6B_CONFIG["padded_vocab_size"] else vocab_size - 9
    special = {name: sp_vocab + i for i, name in enumerate(SPECIAL_TOKENS)}
    generator = torch.Generator().manual_seed(seed)
    system_len = max(1, text_tokens // 4)
    text = torch.randint(3, sp_vocab, (text_tokens,), generator=generator).tolist()
    return (
        [special["[gMASK]"], special["sop"], special["<|system|>"]]
        + text[:system_len]
        + [special["<|user|>"]]
        + text[system_len:]
        + [special["<|assistant|>"]]
    )


def _streamer_class() -> type:
    from transformers.generation.streamers import BaseStreamer

    class TokenClock(BaseStreamer):
        """Timestamps each token generate() emits; its first put() is the prompt."""

        def __init__(self) -> None:
            self.prompt_seen = False
            self.times: list[float] = []

        def put(self, value: Any) -> None:
            if not self.prompt_seen:
                self.prompt_seen = True
                return
            self.times.append(time.perf_counter())

        def end(self) -> None:
            pass

    return TokenClock


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _quantize_4bit(model: Any, device: str) -> None:
    """Swap every decoder Linear for a bitsandbytes NF4 Linear4bit (embeddings and lm_head stay 16-bit)."""
    import bitsandbytes as bnb
    import torch

    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, child in list(parent.named_children()):
                if not isinstance(child, torch.nn.Linear):
                    continue
                quantized = bnb.nn.Linear4bit(
                    child.in_features,
                    child.out_features,
                    bias=child.bias is not None,
                    compute_dtype=torch.float16,
                    quant_type="nf4",
                    device="meta",
                )
                # Params4bit quantizes when moved to the GPU, then drops the float16 data.
                quantized.weight = bnb.nn.Params4bit(
                    child.weight.data, requires_grad=False, quant_type="nf4", compress_statistics=True, module=quantized
                ).to(device)
                if child.bias is not None:
                    quantized.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
                setattr(parent, name, quantized)
                del child
    gc.collect()
    torch.cuda.empty_cache()


def _peak_cpu_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def bench_one(config: Any, device: str, label: str, prompt: list[int], new_tokens: int) -> BenchResult:
    """Build a random-weight model on `device` (float16, or NF4 for label '4-bit') and time one turn."""
    import torch
    from transformers import GlmForCausalLM

    cuda = device.startswith("cuda")
    if cuda:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with torch.device(device):
        model = GlmForCausalLM._from_config(config, dtype=torch.float16)
    if label == "4-bit":
        _quantize_4bit(model, device)
    model.eval()
    _sync(device)
    load_s = time.perf_counter() - start
    weights = torch.cuda.memory_allocated() if cuda else sum(t.nbytes for t in model.state_dict().values())

    # Time the project's own generation path (LocalRuntime's KV-cache loop), not model.generate.
    from composite.messages import SamplingParams
    from composite.runtime import LocalRuntime, ModelInfo

    info = ModelInfo(label, "random weights", device, "float16", sum(p.numel() for p in model.parameters()),
                     config.max_position_embeddings, "chatglm3")
    runtime = LocalRuntime(model, None, info)
    greedy = SamplingParams(max_new_tokens=new_tokens, max_length=len(prompt) + new_tokens, temperature=0)
    list(runtime.generate_ids(prompt[:8], SamplingParams(max_new_tokens=2, temperature=0)))  # warm-up
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    times = []
    begin = time.perf_counter()
    for _ in runtime.generate_ids(prompt, greedy):  # each token is read back to the host: already synced
        times.append(time.perf_counter())
    prefill_s = times[0] - begin
    decode_s = times[-1] - times[0]
    peak = torch.cuda.max_memory_allocated() if cuda else _peak_cpu_bytes()
    del model
    return BenchResult(
        label=label,
        device=device,
        load_s=load_s,
        prompt_tokens=len(prompt),
        prefill_tok_s=len(prompt) / prefill_s if prefill_s > 0 else float("inf"),
        new_tokens=len(times),
        decode_tok_s=(len(times) - 1) / decode_s if decode_s > 0 else float("inf"),
        weights_bytes=int(weights),
        peak_bytes=int(peak),
    )


def _four_bit_unavailable(device: str) -> str:
    import importlib.util

    if not device.startswith("cuda"):
        return "4-bit needs CUDA with bitsandbytes"
    if importlib.util.find_spec("bitsandbytes") is None:
        return "bitsandbytes is not installed"
    return ""


def run(
    small: bool | None = None, device: str | None = None, prompt_tokens: int | None = None, new_tokens: int | None = None
) -> list[BenchResult]:
    """Benchmark float16 and 4-bit; small defaults to True off CUDA. Returns one result per configuration."""
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if small is None:
        small = not device.startswith("cuda")
    config = glm_config_from_chatglm3(SMALL_CONFIG if small else CHATGLM3_6B_CONFIG)
    prompt = chat_prompt(config.vocab_size, prompt_tokens or (32 if small else 500))
    count = new_tokens or (16 if small else 64)
    results = [bench_one(config, device, "float16", prompt, count)]
    reason = _four_bit_unavailable(device)
    if reason:
        results.append(BenchResult(label="4-bit", device=device, skipped=reason))
    else:
        try:
            results.append(bench_one(config, device, "4-bit", prompt, count))
        except (RuntimeError, ValueError, TypeError, AttributeError) as exc:
            # A bitsandbytes/CUDA mismatch should not hide the float16 figures already measured.
            results.append(BenchResult(label="4-bit", device=device, skipped=f"failed: {exc}"))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="small config (the default off CUDA)")
    parser.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: cuda when available)")
    parser.add_argument("--prompt-tokens", type=int, default=None, help="text tokens in the prompt")
    parser.add_argument("--new-tokens", type=int, default=None, help="tokens to generate")
    args = parser.parse_args(argv)
    import torch

    small = True if args.small else None
    results = run(small=small, device=args.device, prompt_tokens=args.prompt_tokens, new_tokens=args.new_tokens)
    device = results[0].device
    shape = "small ChatGLM3-style config" if (small or not device.startswith("cuda")) else "ChatGLM3-6B architecture"
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"
    print(f"{shape}, random weights, on {name} (torch {torch.__version__})")
    for result in results:
        print(result.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
