"""Decode tokens/s, eager vs the fast path (static KV cache + torch.compile), for a random-weight
ChatGLM3-6B-architecture GLM in float16 on a CUDA GPU, each as a fraction of the memory-bandwidth bound.
Run: python benchmarks/bench_fast_decode.py [--bandwidth-gbs 4800] [--tokens 256]   (--tiny: a CPU smoke run)"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=256, help="tokens decoded per run")
    parser.add_argument("--runs", type=int, default=3, help="runs per path (median; a warm-up run first)")
    parser.add_argument("--bandwidth-gbs", type=float, default=4800.0, help="GPU memory bandwidth (H200: 4800)")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model on CPU: checks the script runs")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import torch
    from transformers import GlmConfig, GlmForCausalLM

    from composite.backends.base import ModelInfo
    from composite.backends.local import LocalRuntime
    from composite.messages import SamplingParams

    device = "cpu" if args.tiny else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU: run with --tiny for a CPU smoke run", file=sys.stderr)
        return 2
    dims = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, head_dim=16,
                vocab_size=1000) if args.tiny else dict(
        hidden_size=4096, intermediate_size=13696, num_hidden_layers=28, num_attention_heads=32, head_dim=128,
        vocab_size=65024)  # ChatGLM3-6B: multi-query attention with 2 key/value groups
    config = GlmConfig(num_key_value_heads=2, max_position_embeddings=8192, partial_rotary_factor=0.5,
                       attention_bias=True, pad_token_id=0, eos_token_id=2, **dims)
    dtype = torch.float32 if args.tiny else torch.float16
    with torch.device(device):
        model = GlmForCausalLM(config).to(dtype).eval()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    info = ModelInfo("random-glm", "-", device, str(dtype), sum(p.numel() for p in model.parameters()), 8192, "none")
    runtime = LocalRuntime(model, None, info)
    prompt = list(range(10, 138))
    params = SamplingParams(temperature=0, max_new_tokens=args.tokens)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rates = {}
    for path in ("eager", "fast"):
        runtime.fast = path == "fast"  # set directly: --tiny runs the fast loop uncompiled on CPU
        times = []
        for run in range(args.runs + 1):
            sync()
            started = time.perf_counter()
            n = len(list(runtime.generate_ids(prompt, params)))
            sync()
            if run:
                times.append(time.perf_counter() - started)
        rates[path] = n / statistics.median(times)
    bound = args.bandwidth_gbs * 1e9 / weight_bytes
    print(f"weights {weight_bytes / 1e9:.1f} GB read per token; bandwidth bound {bound:.0f} tok/s "
          f"at {args.bandwidth_gbs:.0f} GB/s ({device}, {dtype})")
    for path, rate in rates.items():
        print(f"{path:5}: {rate:8.1f} tok/s = {rate / bound:6.1%} of the bound")
    print(f"fast / eager: {rates['fast'] / rates['eager']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
