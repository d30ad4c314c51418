"""A random-weight model with LAYERS ChatGLM3-6B-shaped layers (hidden 4096, 32 heads, 2 KV heads, MLP 13,696)
and the embedded tokenizer, for benchmarks on the real model's layer shape:

    python benchmarks/make_wide_model.py OUT LAYERS
    python -m composite bench --only ttft --repeats 3 --model OUT
"""
import json
import shutil
import sys
from pathlib import Path


def main() -> None:
    import torch
    from transformers import GlmConfig, GlmForCausalLM

    out, layers = Path(sys.argv[1]), int(sys.argv[2])
    src = Path(__file__).resolve().parents[1] / "composite" / "embedded" / "model"
    cfg = json.loads((src / "config.json").read_text())
    cfg.update(hidden_size=4096, num_attention_heads=32, num_key_value_heads=2, head_dim=128,
               intermediate_size=13696, num_hidden_layers=layers, dtype="float32")
    config = GlmConfig(**{k: v for k, v in cfg.items() if k not in ("architectures", "transformers_version", "model_type")})
    torch.manual_seed(0)
    model = GlmForCausalLM(config).float()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    for name in ("tokenizer.model", "composite.json"):
        shutil.copy(src / name, out / name)
    meta = json.loads((out / "composite.json").read_text())
    meta["name"] = f"random {layers}-layer ChatGLM3-6B-shape"
    (out / "composite.json").write_text(json.dumps(meta))
    print(f"{out}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters")


if __name__ == "__main__":
    main()
