"""A NumPy engine for small GLM models (the embedded model): the same forward pass as transformers'
`GlmForCausalLM`, without importing torch or transformers, so a one-shot CLI command starts in a
fraction of a second. `NumpyRuntime` is `LocalRuntime` with this engine under it (same prompt
rendering, trimming, stop handling, prefix-cache reuse); greedy output is the same token for token.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError
from ..messages import SamplingParams
from .local import LocalRuntime

__all__ = ["NumpyGlm", "NumpyKVCache", "NumpyRuntime", "numpy_engine_reason"]

# Largest model the NumPy engine takes: beyond this torch's kernels win and memory matters.
MAX_PARAMETERS = 50_000_000


def numpy_engine_reason(folder: Path, config: dict[str, Any], marker: dict[str, Any]) -> str:
    """Why this folder cannot run on the NumPy engine ("" when it can)."""
    if config.get("model_type") != "glm":
        return f"the NumPy engine runs GLM models only (this one is {config.get('model_type')!r})"
    if marker.get("dialect") != "chatglm3":
        return "the NumPy engine needs a composite.json with dialect chatglm3"
    if not (folder / "model.safetensors").is_file():
        return "the NumPy engine reads a single model.safetensors file"
    rope = config.get("rope_parameters") or {}
    if rope.get("rope_type", "default") != "default":
        return f"the NumPy engine supports default RoPE only (this one is {rope.get('rope_type')!r})"
    size = (folder / "model.safetensors").stat().st_size
    if size > MAX_PARAMETERS * 2:  # float16 on disk
        return f"the model is too large for the NumPy engine ({size / 2**20:.0f} MiB of weights)"
    return ""


def _numpy_one_blas_thread():
    """Import NumPy with OpenBLAS on one thread when this is the first import: this model's matrices
    are too small to gain from more, and threads fighting another busy process cost 10x (first token
    0.5 s instead of 0.03 s measured beside a training run). The variable is removed again at once,
    so child processes (kernels) are not affected; an earlier import keeps its own setting."""
    import sys

    if "numpy" in sys.modules:
        return sys.modules["numpy"]
    name = "OPENBLAS_NUM_THREADS"
    added = name not in os.environ
    if added:
        os.environ[name] = "1"
    try:
        import numpy
    finally:
        if added:
            os.environ.pop(name, None)
    return numpy


class NumpyKVCache:
    """Keys and values per layer, (kv_heads, tokens, head_dim) float32, grown in blocks.

    Offers what `PrefixCache` uses of a transformers cache: `get_seq_length`, `crop`, and `nbytes`."""

    class _Layer:
        def __init__(self, np, kv_heads: int, head_dim: int) -> None:
            self.np = np
            self.k = np.zeros((kv_heads, 0, head_dim), dtype=np.float32)
            self.v = np.zeros((kv_heads, 0, head_dim), dtype=np.float32)
            self.length = 0

        def append(self, k, v) -> tuple[Any, Any]:
            np = self.np
            need = self.length + k.shape[1]
            if need > self.k.shape[1]:
                grow = max(need, 2 * self.k.shape[1], 64)
                for name in ("k", "v"):
                    old = getattr(self, name)
                    new = np.zeros((old.shape[0], grow, old.shape[2]), dtype=np.float32)
                    new[:, : self.length] = old[:, : self.length]
                    setattr(self, name, new)
            self.k[:, self.length:need] = k
            self.v[:, self.length:need] = v
            self.length = need
            return self.k[:, :need], self.v[:, :need]

    def __init__(self, np, layers: int, kv_heads: int, head_dim: int) -> None:
        self.layers = [self._Layer(np, kv_heads, head_dim) for _ in range(layers)]

    @property
    def nbytes(self) -> int:
        """Bytes held, allocated room included (what the prefix cache's bound counts)."""
        return sum(int(layer.k.nbytes + layer.v.nbytes) for layer in self.layers)

    def get_seq_length(self) -> int:
        return self.layers[0].length if self.layers else 0

    def crop(self, max_length: int) -> None:
        """Keep the first `max_length` tokens (negative: drop that many from the end), as DynamicCache.crop."""
        held = self.get_seq_length()
        keep = held + max_length if max_length < 0 else min(max_length, held)
        if keep < 0:
            raise ValueError(f"cannot crop {held} cached tokens to {max_length}")
        for layer in self.layers:
            layer.length = keep


class NumpyGlm:
    """GlmForCausalLM's forward pass in NumPy float32 (RMSNorm, partial interleaved RoPE, grouped-query
    attention with q/k/v biases, gated SiLU MLP, untied head)."""

    def __init__(self, folder: str | Path) -> None:
        np = _numpy_one_blas_thread()
        from safetensors.numpy import load_file

        self.np = np
        folder = Path(folder)
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            weights = load_file(str(folder / "model.safetensors"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot read {folder} for the NumPy engine: {exc}") from exc
        self.config = config
        self.hidden = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.kv_heads = int(config.get("num_key_value_heads") or self.heads)
        self.head_dim = int(config.get("head_dim") or self.hidden // self.heads)
        self.n_layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("rms_norm_eps", 1e-5))
        self.vocab_size = int(config["vocab_size"])
        self.inter = int(config["intermediate_size"])
        rope = config.get("rope_parameters") or {}
        self.rotary = int(self.head_dim * float(rope.get("partial_rotary_factor", 0.5)))
        theta = float(rope.get("rope_theta", 10000.0))
        self.inv_freq = (1.0 / theta ** (np.arange(0, self.rotary, 2, dtype=np.float32) / self.rotary)).astype(np.float32)

        def get(name: str):
            if name not in weights:
                raise ModelLoadError(f"{folder}: weight {name} is missing; expected a GlmForCausalLM checkpoint")
            return np.ascontiguousarray(weights[name], dtype=np.float32)

        self.embed = get("model.embed_tokens.weight")
        self.norm = get("model.norm.weight")
        self.head_t = np.ascontiguousarray(get("lm_head.weight").T)
        self.layers = []
        for i in range(self.n_layers):
            p = f"model.layers.{i}."
            q_w, k_w, v_w = (get(p + f"self_attn.{n}_proj.weight") for n in "qkv")
            biases = [weights.get(p + f"self_attn.{n}_proj.bias") for n in "qkv"]
            bias = (np.concatenate([np.asarray(b, dtype=np.float32) for b in biases])
                    if all(b is not None for b in biases) else None)
            self.layers.append({
                "ln1": get(p + "input_layernorm.weight"),
                "ln2": get(p + "post_attention_layernorm.weight"),
                "qkv_t": np.ascontiguousarray(np.concatenate([q_w, k_w, v_w]).T),
                "qkv_b": bias,
                "o_t": np.ascontiguousarray(get(p + "self_attn.o_proj.weight").T),
                "gate_up_t": np.ascontiguousarray(get(p + "mlp.gate_up_proj.weight").T),
                "down_t": np.ascontiguousarray(get(p + "mlp.down_proj.weight").T),
            })

    @property
    def parameters(self) -> int:
        total = self.embed.size + self.norm.size + self.head_t.size
        for layer in self.layers:
            total += sum(v.size for v in layer.values() if v is not None)
        return int(total)

    def new_cache(self) -> NumpyKVCache:
        return NumpyKVCache(self.np, self.n_layers, self.kv_heads, self.head_dim)

    def _rms(self, x, w):
        np = self.np
        # the sum through the ufunc (not ndarray.mean's Python wrapper): decode calls this 2 x layers times a token
        return x / np.sqrt(np.add.reduce(x * x, axis=-1, keepdims=True) * np.float32(1.0 / x.shape[-1]) + self.eps) * w

    def _rotation(self, positions):
        """cos and sin of the rotary angles at `positions`, (T, rotary/2) each: once per forward, for every layer."""
        np = self.np
        angles = positions[:, None].astype(np.float32) * self.inv_freq[None, :]
        return np.cos(angles), np.sin(angles)

    def _rope(self, x, rotation):
        """Rotate the first `rotary` dims of each head in interleaved pairs (x0, x1) -> (x0 c - x1 s, x1 c + x0 s)."""
        np = self.np
        cos, sin = rotation
        rot = x[..., : self.rotary]
        even, odd = rot[..., 0::2], rot[..., 1::2]
        out = np.empty_like(x)
        out[..., 0: self.rotary: 2] = even * cos - odd * sin
        out[..., 1: self.rotary: 2] = odd * cos + even * sin
        out[..., self.rotary:] = x[..., self.rotary:]
        return out

    # queries per attention block: keeps the score matrix small (cache-friendly) and lets each block skip
    # the keys its causal mask hides (half the work of a long prefill)
    QUERY_BLOCK = 128

    def _mix(self, scores, values):
        """softmax(scores) @ values for scores (kv_heads, rows, keys): in place, normalized after the product
        with the values (rows x dim divisions instead of rows x keys)."""
        scores -= scores.max(-1, keepdims=True)
        self.np.exp(scores, out=scores)
        return (scores @ values) / self.np.add.reduce(scores, axis=-1, keepdims=True)

    def _attention(self, q, keys, values, start: int):
        """Causal attention of n new queries (heads, n, head_dim), already scaled, over the cached keys
        and values (kv_heads, start + n, head_dim); grouped-query heads share their group's keys."""
        np = self.np
        heads, n, dim = q.shape
        group = heads // self.kv_heads
        if n == 1:  # decoding: one query per head sees every cached key; no mask, no blocks
            scores = q.reshape(self.kv_heads, group, dim) @ keys.transpose(0, 2, 1)  # (kv_heads, group, total)
            return self._mix(scores, values).reshape(heads, 1, dim)
        qg = q.reshape(self.kv_heads, group, n, dim)
        out = np.empty((self.kv_heads, group, n, dim), dtype=np.float32)
        for lo in range(0, n, self.QUERY_BLOCK):
            hi = min(n, lo + self.QUERY_BLOCK)
            rows, seen = hi - lo, start + hi  # the block's queries see keys 0 .. start+hi-1 at most
            block = qg[:, :, lo:hi].reshape(self.kv_heads, group * rows, dim)
            scores = (block @ keys[:, :seen].transpose(0, 2, 1)).reshape(self.kv_heads, group, rows, seen)
            if rows > 1:  # query lo+i (position start+lo+i) must not see the keys after it
                scores[..., start + lo:] += np.triu(np.full((rows, hi - lo), -np.inf, dtype=np.float32), k=1)
            weighted = self._mix(scores.reshape(self.kv_heads, group * rows, seen), values[:, :seen])
            out[:, :, lo:hi] = weighted.reshape(self.kv_heads, group, rows, dim)
        return out.reshape(heads, n, dim)

    def forward(self, ids: list[int], cache: NumpyKVCache):
        """Feed `ids` after what `cache` holds; returns the last position's logits (vocab,) float32."""
        np = self.np
        start = cache.get_seq_length()
        n = len(ids)
        rotation = self._rotation(np.arange(start, start + n))
        x = self.embed[np.asarray(ids, dtype=np.int64)]  # (n, hidden)
        q_size, kv_size = self.heads * self.head_dim, self.kv_heads * self.head_dim
        scale = self.head_dim ** -0.5
        for layer, kv in zip(self.layers, cache.layers):
            h = self._rms(x, layer["ln1"])
            qkv = h @ layer["qkv_t"]
            if layer["qkv_b"] is not None:
                qkv = qkv + layer["qkv_b"]
            q = qkv[:, :q_size].reshape(n, self.heads, self.head_dim).transpose(1, 0, 2)
            k = qkv[:, q_size:q_size + kv_size].reshape(n, self.kv_heads, self.head_dim).transpose(1, 0, 2)
            v = qkv[:, q_size + kv_size:].reshape(n, self.kv_heads, self.head_dim).transpose(1, 0, 2)
            q, k = self._rope(q, rotation), self._rope(k, rotation)
            keys, values = kv.append(k, v)  # (kv_heads, total, head_dim)
            attn = self._attention(q * np.float32(scale), keys, values, start)
            x = x + attn.transpose(1, 0, 2).reshape(n, q_size) @ layer["o_t"]
            h = self._rms(x, layer["ln2"])
            gate_up = h @ layer["gate_up_t"]
            gate, up = gate_up[:, : self.inter], gate_up[:, self.inter:]
            x = x + (up * (gate / (1.0 + np.exp(-gate)))) @ layer["down_t"]
        last = self._rms(x[-1:], self.norm)
        return (last @ self.head_t)[0]


class NumpyRuntime(LocalRuntime):
    """LocalRuntime on the NumPy engine: LocalRuntime's generation loop (prefix reuse, stop handling) with the
    NumPy forward pass and a NumPy mirror of LocalRuntime._pick."""

    def __init__(self, model: NumpyGlm, dialect: Any, info: Any, prefix_cache: Any = None) -> None:
        super().__init__(model, dialect, info, prefix_cache)

    def set_fast(self, wanted: bool) -> None:
        self.fast = False
        self.fast_note = "fast path needs a CUDA GPU; the NumPy engine stays on its own loop" if wanted else ""

    def _sampling_state(self, prompt_ids: list[int], params: SamplingParams) -> tuple[Any, Any]:
        np = self.model.np
        rng = None
        if not params.greedy:
            rng = np.random.default_rng(params.seed if params.seed is not None
                                        else int.from_bytes(os.urandom(4), "little"))
        vocab = self.model.vocab_size
        seen = np.zeros(vocab, dtype=bool)
        seen[np.clip(np.asarray(prompt_ids, dtype=np.int64), 0, vocab - 1)] = True
        return seen, rng

    def _new_cache(self) -> NumpyKVCache:
        return self.model.new_cache()

    def _next_token(self, pending: list[int], cache: Any, seen: Any, params: SamplingParams, rng: Any,
                    guard: Any = None) -> int:
        np = self.model.np
        logits = self.model.forward(pending, cache)
        if guard is not None:
            logits = guard.apply(logits, np.full_like)
        return self._pick_np(np, logits, seen, params, rng)

    @staticmethod
    def _pick_np(np, logits, seen, params: SamplingParams, rng) -> int:
        if params.repetition_penalty != 1.0:
            penalized = np.where(logits > 0, logits / params.repetition_penalty, logits * params.repetition_penalty)
            logits = np.where(seen[: logits.size], penalized, logits)
        if params.greedy:
            return int(np.argmax(logits))
        z = logits.astype(np.float64) / params.temperature
        probs = np.exp(z - z.max())
        probs /= probs.sum()
        if params.top_p < 1.0:
            order = np.argsort(-probs, kind="stable")
            sorted_probs = probs[order]
            cumulative = np.cumsum(sorted_probs)
            # keep the smallest prefix whose mass reaches top_p (always at least one token)
            sorted_probs[cumulative - sorted_probs >= params.top_p] = 0.0
            probs = np.zeros_like(probs)
            probs[order] = sorted_probs
            probs /= probs.sum()
        return int(rng.choice(probs.size, p=probs))
