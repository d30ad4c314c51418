"""The local backend: `load_model`, and streaming generation shared safely by every session.

`LocalRuntime` is the transformers backend: one model per process, generation serialized by a
lock, a stop flag checked between tokens, and the history trimmed (oldest turns first) when it
does not fit the context.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from ..dialect import ChatGLM3Dialect, Dialect
from ..errors import ConfigError, ModelLoadError
from ..events import ContextTrimmed, Event, TextDelta, TurnEnd, Waiting
from ..messages import Message, SamplingParams
from ..tokenizer import ChatGLMTokenizer
from .base import ModelInfo
from .copy_guard import CopyGuard, PieceTable, token_pieces
from .prefix_cache import PrefixCache, current_conversation
from .weights import check_memory, estimate_weight_bytes, has_weights

__all__ = [
    "EMBEDDED_MODEL_DIR",
    "ModelInfo",
    "LocalRuntime",
    "load_model",
    "resolve_model_path",
    "fit_history",
    "pick_device",
    "pick_dtype",
]

EMBEDDED_MODEL_DIR = Path(__file__).resolve().parent.parent / "embedded" / "model"
DEVICES = ("auto", "cuda", "mps", "cpu")
DTYPES = ("auto", "float16", "bfloat16", "float32")
# auto: the NumPy engine for a small GLM on the CPU (no torch import), torch otherwise
ENGINES = ("auto", "torch", "numpy")
# The least room left for the answer when the history is trimmed to fit max_length.
MIN_ANSWER_TOKENS = 64
# Below this size a CPU model decodes fastest on one thread (see _tune_cpu_threads).
SMALL_MODEL_PARAMETERS = 50_000_000


def resolve_model_path(explicit: str | None = None) -> str | None:
    """The model path to use: an explicit value, else $MODEL_PATH, else None (the embedded model)."""
    value = explicit if explicit not in (None, "") else os.environ.get("MODEL_PATH", "")
    return value.strip() or None


def pick_device(device: str = "auto") -> str:
    import torch

    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; expected one of {', '.join(DEVICES)}")
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' was requested but no CUDA GPU is available; use --device cpu or auto")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelLoadError("device 'mps' was requested but Apple MPS is not available; use --device cpu or auto")
    return device


def pick_dtype(dtype: str, device: str):
    """auto: bfloat16 (or float16) on CUDA, float16 on MPS, float32 on CPU (the seed's .float() path)."""
    import torch

    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    if dtype == "auto":
        if device == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device == "mps":
            return torch.float16
        return torch.float32
    return getattr(torch, dtype)


def fit_history(
    messages: list[Message], count_tokens: Callable[[list[Message]], int], budget: int
) -> tuple[list[Message], int, int]:
    """Drop the oldest turns (keeping leading system messages) until the prompt fits `budget` tokens.

    A turn starts at a user message. If even the last turn alone is too long, its first message
    is cut from the start. Returns (messages, dropped message count, characters cut).
    """
    if count_tokens(messages) <= budget:
        return messages, 0, 0
    head = 0
    while head < len(messages) and messages[head].role == "system":
        head += 1
    system, rest = messages[:head], messages[head:]
    starts = [i for i, m in enumerate(rest) if m.role == "user"] or [0]
    for start in starts[1:]:
        candidate = system + rest[start:]
        if count_tokens(candidate) <= budget:
            return candidate, start, 0
    # Keep only the last turn, cutting its first message from the front until it fits.
    last = starts[-1]
    dropped = last
    turn = rest[last:]
    if not turn:
        return system, dropped, 0
    first = turn[0]
    lo, hi = 0, len(first.content)
    while lo < hi:  # smallest cut that fits
        mid = (lo + hi) // 2
        trial = system + [Message(first.role, first.content[mid:], first.metadata)] + turn[1:]
        if count_tokens(trial) <= budget:
            hi = mid
        else:
            lo = mid + 1
    cut = Message(first.role, first.content[lo:], first.metadata, dict(first.extra))
    return system + [cut] + turn[1:], dropped, lo


class LocalRuntime:
    """A transformers causal LM plus its dialect, generating token by token under a process-wide lock."""

    def __init__(self, model: Any, dialect: Dialect, info: ModelInfo, prefix_cache: PrefixCache | None = None):
        self.model = model
        self.dialect = dialect
        self.info = info
        self._lock = threading.Lock()
        # each conversation's last KV cache, reused when its next prompt extends it (see prefix_cache.py)
        self.prefix_cache = prefix_cache if prefix_cache is not None else _prefix_cache_from_env()
        self.last_prefill_tokens = 0  # prompt tokens the last generation computed (the rest came from the cache)
        self.fast = False  # static KV cache + compiled decode step (set_fast)
        self.fast_note = ""
        self._static_cache = None
        self._compiled_step = None
        # copy-faithful decoding (copy_guard.py): the ratio, 0 = off; set by load_model from composite.json
        self.copy_guard = 0.0
        self._pieces: PieceTable | None = None  # the vocabulary's pieces, indexed once for every guard

    def set_fast(self, wanted: bool) -> None:
        """The GPU fast path: a static KV cache and a torch.compile'd one-token decode step (CUDA graphs).

        Only on CUDA and without quantization; elsewhere generation stays on the eager path and
        `fast_note` says why. The fast path does not reuse prefix caches (its cache is one fixed buffer)."""
        self.fast, self.fast_note = False, ""
        if not wanted:
            return
        if self.info.device != "cuda":
            self.fast_note = f"fast path needs a CUDA GPU; decoding on {self.info.device} stays on the eager path"
        elif self.info.quantize:
            self.fast_note = f"fast path does not support {self.info.quantize}-bit weights; using the eager path"
        else:
            self.fast = True

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def code_tools(self) -> list[dict[str, Any]] | None:
        """ChatGLM3 has an interpreter role; chat-template models get a `python` tool."""
        code_tools = getattr(self.dialect, "code_tools", None)
        return code_tools() if code_tools else None

    def guard_for(self, messages: list[Message]) -> CopyGuard | None:
        """A fresh copy guard over the conversation's user and observation messages, or None when
        the guard is off or the tokenizer is not a sentencepiece one (ChatGLM3's)."""
        tokenizer = getattr(self.dialect, "tokenizer", None)
        if not self.copy_guard or not isinstance(tokenizer, ChatGLMTokenizer):
            return None
        if self._pieces is None:
            self._pieces = PieceTable(token_pieces(tokenizer, max(tokenizer.vocab_size, _vocab_size(self.model))))
        sources = [m.content for m in messages if m.role in ("user", "observation")]
        said = [m.content for m in messages if m.role == "user"]
        return CopyGuard(self._pieces, sources, self.copy_guard, openers=said)

    # -- token level ---------------------------------------------------------------------------
    def generate_ids(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        stop_ids: set[int] | None = None,
        stop: threading.Event | None = None,
        guard: CopyGuard | None = None,
    ) -> Iterator[int]:
        """Yield generated token ids one at a time (the caller holds the lock). Stop ids are yielded too.

        The prompt's longest prefix shared with this conversation's cached tokens is not recomputed;
        afterwards the cache of prompt + answer is kept for the conversation's next turn. `guard`
        (see copy_guard.py, from guard_for) keeps quotations in calls and code true to the conversation."""
        stop_ids = set(stop_ids or ())
        room = min(params.max_length, self.info.context_length) - len(prompt_ids)
        limit = min(params.max_new_tokens, room)
        if limit <= 0:
            return
        seen, generator = self._sampling_state(prompt_ids, params)
        if self.fast:
            yield from self._generate_static(prompt_ids, limit, params, seen, generator, stop_ids, stop, guard)
            return
        key = current_conversation()
        reuse = self.prefix_cache.take(prompt_ids, key)
        if reuse.cache is None:
            cache, fed = self._new_cache(), []
        else:
            cache, fed = reuse.cache, list(prompt_ids[: reuse.tokens])
        pending = list(prompt_ids[len(fed):])
        self.last_prefill_tokens = len(pending)
        consistent = True  # False while a forward pass may have half-updated the cache
        try:
            for _ in range(limit):
                if stop is not None and stop.is_set():
                    return
                consistent = False
                token = self._next_token(pending, cache, seen, params, generator, guard)
                fed.extend(pending)
                consistent = True
                if guard is not None:
                    guard.feed(token)
                yield token
                if token in stop_ids:
                    return
                seen[token] = True
                pending = [token]
        finally:
            if consistent:
                self.prefix_cache.put(fed, cache, key)

    # -- the engine's part of generate_ids (the NumPy engine overrides these three) ---------------
    def _sampling_state(self, prompt_ids: list[int], params: SamplingParams) -> tuple[Any, Any]:
        """The repetition penalty's seen-token mask (prompt tokens set) and the seeded random generator."""
        import torch

        device = self.model.device
        generator = None
        if not params.greedy:
            generator = torch.Generator(device=device)
            generator.manual_seed(params.seed if params.seed is not None else int.from_bytes(os.urandom(4), "little"))
        seen = torch.zeros(self.model.config.vocab_size, dtype=torch.bool, device=device)
        seen[torch.tensor(prompt_ids, device=device).clamp_(0, seen.numel() - 1)] = True
        return seen, generator

    def _new_cache(self) -> Any:
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    def _next_token(self, pending: list[int], cache: Any, seen: Any, params: SamplingParams, generator: Any,
                    guard: CopyGuard | None = None) -> int:
        """Feed `pending` after what `cache` holds and pick the next token."""
        import torch

        # inference mode only around the model's work, never across a yield: a mode entered in
        # a generator stays on in the consumer's thread while it is suspended (or abandoned)
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([pending], device=self.model.device), past_key_values=cache,
                             use_cache=True, logits_to_keep=1)
            logits = out.logits[0, -1].float()
            if guard is not None:
                logits = guard.apply(logits, torch.full_like)
            return self._pick(logits, seen, params, generator)

    def _generate_static(self, prompt_ids, limit, params, seen, generator, stop_ids, stop, guard) -> Iterator[int]:
        """The fast path's loop: one static cache of the context length (allocated once, reset per
        call), an eager prefill, then a decode step compiled once for a fixed shape (CUDA only)."""
        import torch
        from transformers import StaticCache

        device = self.model.device
        if self._static_cache is None:
            self._static_cache = StaticCache(config=self.model.config, max_cache_len=self.info.context_length)
        cache = self._static_cache
        step = self.model.forward
        if device.type == "cuda":
            if self._compiled_step is None:
                self._compiled_step = torch.compile(self.model.forward, mode="reduce-overhead", fullgraph=True)
            step = self._compiled_step
        self.last_prefill_tokens = len(prompt_ids)
        with torch.inference_mode():  # as in generate_ids: never held across a yield
            cache.reset()  # its buffers are inference tensors: zeroed in inference mode
            out = self.model(input_ids=torch.tensor([prompt_ids], device=device), past_key_values=cache,
                             cache_position=torch.arange(len(prompt_ids), device=device), use_cache=True,
                             logits_to_keep=1)
        position = len(prompt_ids)
        for i in range(limit):
            if stop is not None and stop.is_set():
                return
            with torch.inference_mode():
                logits = out.logits[0, -1].float()
                if guard is not None:
                    logits = guard.apply(logits, torch.full_like)
                token = self._pick(logits, seen, params, generator)
            if guard is not None:
                guard.feed(token)
            yield token
            if token in stop_ids or i == limit - 1:
                return
            seen[token] = True
            with torch.inference_mode():
                out = step(input_ids=torch.tensor([[token]], device=device), past_key_values=cache,
                           cache_position=torch.tensor([position], device=device), use_cache=True)
            position += 1

    @staticmethod
    def _pick(logits, seen, params: SamplingParams, generator) -> int:
        import torch

        if params.repetition_penalty != 1.0:
            penalized = torch.where(logits > 0, logits / params.repetition_penalty, logits * params.repetition_penalty)
            logits = torch.where(seen[: logits.numel()], penalized, logits)
        if params.greedy:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits / params.temperature, dim=-1)
        if params.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            cumulative = torch.cumsum(sorted_probs, dim=-1)
            # keep the smallest prefix whose mass reaches top_p (always at least one token)
            drop = cumulative - sorted_probs >= params.top_p
            sorted_probs[drop] = 0.0
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
        return int(torch.multinomial(probs, 1, generator=generator))

    # -- conversation level --------------------------------------------------------------------
    def prompt_ids(
        self, messages: list[Message], tools: list[dict[str, Any]] | None, params: SamplingParams
    ) -> tuple[list[int], ContextTrimmed | None]:
        """Render the conversation, trimming old turns when it does not fit max_length."""
        max_total = min(params.max_length, self.info.context_length)
        reserve = min(params.max_new_tokens, max(MIN_ANSWER_TOKENS, max_total // 4))
        budget = max(1, max_total - reserve)
        fitted, dropped, cut = fit_history(messages, lambda ms: len(self.dialect.render(ms, tools)), budget)
        ids = self.dialect.render(fitted, tools)
        if dropped or cut:
            return ids, ContextTrimmed(dropped, cut, len(ids), budget)
        return ids, None

    def stream_turn(
        self,
        messages: list[Message],
        tools: list[dict[str, Any]] | None,
        params: SamplingParams,
        stop: threading.Event | None = None,
    ) -> Iterator[Event]:
        ids, trimmed = self.prompt_ids(messages, tools, params)
        if trimmed is not None:
            yield trimmed
        if not self._lock.acquire(blocking=False):
            yield Waiting()
            while not self._lock.acquire(timeout=0.1):
                if stop is not None and stop.is_set():
                    yield TurnEnd(self.dialect.parse([]), "cancelled", len(ids), 0, 0.0)
                    return
        try:
            yield from self._stream_locked(ids, params, stop, self.guard_for(messages))
        finally:
            self._lock.release()

    def _stream_locked(self, ids: list[int], params: SamplingParams, stop: threading.Event | None,
                       guard: CopyGuard | None = None) -> Iterator[Event]:
        started = time.perf_counter()
        stop_ids = self.dialect.stop_ids()
        generated: list[int] = []
        emitted = ""
        finish = "length"
        for token in self.generate_ids(ids, params, stop_ids, stop, guard=guard):
            if token in stop_ids:
                finish = "stop"
                break
            generated.append(token)
            text = self.dialect.decode(generated)
            # hold back a partial UTF-8 character (byte fallback) until it completes
            if len(text) > len(emitted) and not text.endswith("\ufffd"):
                yield TextDelta(text[len(emitted):])
                emitted = text
        else:
            if stop is not None and stop.is_set():
                finish = "cancelled"
        text = self.dialect.decode(generated)
        if len(text) > len(emitted):
            yield TextDelta(text[len(emitted):])
        yield TurnEnd(self.dialect.parse(generated), finish, len(ids), len(generated), time.perf_counter() - started)


def _prefix_cache_from_env() -> PrefixCache:
    """$COMPOSITE_PREFIX_CACHE: how many conversations keep a KV cache (0 turns reuse off; default 8);
    $COMPOSITE_PREFIX_CACHE_MB: their total size bound (default 2048)."""
    values = {}
    for name, default in (("COMPOSITE_PREFIX_CACHE", 8), ("COMPOSITE_PREFIX_CACHE_MB", 2048)):
        raw = os.environ.get(name, "").strip()
        if raw and (not raw.isdigit()):
            raise ConfigError(f"{name} must be a whole number >= 0, got {raw!r}")
        values[name] = int(raw) if raw else default
    return PrefixCache(values["COMPOSITE_PREFIX_CACHE"], values["COMPOSITE_PREFIX_CACHE_MB"] * 2**20)


# -- loading ---------------------------------------------------------------------------------------
def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}; expected a JSON object") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} must hold a JSON object")
    return data


def _count_parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def load_model(
    path: str | Path | None = None,
    device: str = "auto",
    dtype: str = "auto",
    quantize: int | None = None,
    progress: bool = False,
    fast: bool | None = None,
    engine: str | None = None,
) -> LocalRuntime:
    """Load a model folder (None: the embedded default model) and return its runtime.

    Supported: the embedded model, ChatGLM3 checkpoints in their original layout (mapped onto
    transformers' GlmForCausalLM without remote code), converted ChatGLM3 folders, and any causal
    LM whose tokenizer has a chat template. `engine` (default $COMPOSITE_ENGINE, else "torch"):
    "numpy" runs a small GLM in NumPy without importing torch (see numpy_glm.py); "auto" does so
    when the model and the settings allow it (CPU, float32, no quantization, no fast path).
    """
    started = time.perf_counter()
    if quantize not in (None, 4, 8):
        raise ConfigError(f"quantize must be 4, 8 or None, got {quantize!r}")
    engine = (engine or os.environ.get("COMPOSITE_ENGINE", "").strip() or "torch").lower()
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    folder = EMBEDDED_MODEL_DIR if path in (None, "") else Path(path).expanduser()
    if path in (None, "") and not (folder / "config.json").is_file():
        raise ModelLoadError(
            f"no model configured: the embedded model is missing from {folder}; "
            "set MODEL_PATH (or the sidebar's model path) to a model folder"
        )
    if not folder.exists():
        raise ModelLoadError(f"model path {folder} does not exist; expected a folder with config.json and weights")
    if not folder.is_dir():
        raise ModelLoadError(f"model path {folder} is a file; expected a folder with config.json and weights")
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{folder} has no config.json; expected a Hugging Face model folder (config.json + weights)")
    if not has_weights(folder):
        raise ModelLoadError(f"{folder} has no weights; expected *.safetensors or pytorch_model*.bin files")
    config = _read_json(folder / "config.json")
    marker = _read_json(folder / "composite.json") if (folder / "composite.json").is_file() else {}
    if engine != "torch":
        from .numpy_glm import numpy_engine_reason

        reason = numpy_engine_reason(folder, config, marker)
        if not reason and device not in ("auto", "cpu"):
            reason = f"the NumPy engine runs on the CPU (device {device!r} was asked for)"
        if not reason and dtype not in ("auto", "float32"):
            reason = f"the NumPy engine computes in float32 (dtype {dtype!r} was asked for)"
        if not reason and (quantize or fast):
            reason = "the NumPy engine has no quantization or fast path"
        if not reason:
            return _load_numpy(folder, config, marker, started)
        if engine == "numpy":
            raise ConfigError(f"engine 'numpy' cannot load {folder}: {reason}; use --engine torch or auto")
    resolved_device = pick_device(device)
    torch_dtype = pick_dtype(dtype, resolved_device)
    if quantize and resolved_device != "cuda":
        raise ModelLoadError(
            f"{quantize}-bit quantization needs a CUDA GPU (bitsandbytes); this run uses {resolved_device}. "
            "Load without quantization, or on a CUDA machine"
        )
    check_memory(estimate_weight_bytes(folder, f"{quantize}bit" if quantize else torch_dtype), resolved_device)
    model_type = config.get("model_type")
    if model_type == "chatglm":
        if quantize:
            raise ModelLoadError(
                f"{folder} is an original ChatGLM3 checkpoint; to quantize it, convert it first "
                f"(python -m composite convert {folder} DST) and load DST with --quantize {quantize}"
            )
        from .chatglm3_checkpoint import load_chatglm3

        model, tokenizer = load_chatglm3(folder, resolved_device, torch_dtype, check=False)
        dialect: Dialect = ChatGLM3Dialect(tokenizer)
        context = int(config.get("seq_length") or 8192)
    elif marker.get("dialect") == "chatglm3":
        model = _load_native(folder, resolved_device, torch_dtype, quantize)
        tokenizer = ChatGLMTokenizer(folder / "tokenizer.model")
        dialect = ChatGLM3Dialect(tokenizer, tools_indent=marker.get("tools_indent", 4))
        context = int(marker.get("max_length") or config.get("max_position_embeddings") or 8192)
    else:
        from ..dialect_hf import ChatTemplateDialect

        model = _load_native(folder, resolved_device, torch_dtype, quantize)
        dialect = ChatTemplateDialect.from_folder(folder)
        context = int(config.get("max_position_embeddings") or 4096)
    model.eval()
    _tune_cpu_threads(model, resolved_device)
    info = ModelInfo(
        name=str(marker.get("name") or folder.name),
        path=str(folder),
        device=resolved_device,
        dtype=str(torch_dtype).replace("torch.", ""),
        parameters=_count_parameters(model),
        context_length=context,
        dialect=dialect.name,
        quantize=quantize,
        load_seconds=time.perf_counter() - started,
    )
    runtime = LocalRuntime(model, dialect, info)
    runtime.copy_guard = copy_guard_ratio(marker)
    runtime.set_fast(fast if fast is not None else os.environ.get("COMPOSITE_FAST", "").strip() in ("1", "true", "yes"))
    return runtime


def _load_numpy(folder: Path, config: dict[str, Any], marker: dict[str, Any], started: float) -> LocalRuntime:
    """The NumPy engine's runtime for a small chatglm3-dialect GLM folder (torch is never imported)."""
    from .numpy_glm import NumpyGlm, NumpyRuntime

    model = NumpyGlm(folder)
    tokenizer = ChatGLMTokenizer(folder / "tokenizer.model")
    dialect = ChatGLM3Dialect(tokenizer, tools_indent=marker.get("tools_indent", 4))
    info = ModelInfo(
        name=str(marker.get("name") or folder.name),
        path=str(folder),
        device="cpu",
        dtype="float32",
        parameters=model.parameters,
        context_length=int(marker.get("max_length") or config.get("max_position_embeddings") or 8192),
        dialect=dialect.name,
        load_seconds=time.perf_counter() - started,
        engine="numpy",
    )
    runtime = NumpyRuntime(model, dialect, info)
    runtime.copy_guard = copy_guard_ratio(marker)
    return runtime


def copy_guard_ratio(marker: dict[str, Any]) -> float:
    """The copy guard's ratio: $COMPOSITE_COPY_GUARD when set (0 turns it off), else composite.json's
    "copy_guard" (the embedded model ships with it on), else 0 (off)."""
    raw: Any = os.environ.get("COMPOSITE_COPY_GUARD", "").strip() or marker.get("copy_guard", 0)
    return check_copy_guard(raw, "COMPOSITE_COPY_GUARD or composite.json's copy_guard")


def check_copy_guard(raw: Any, source: str) -> float:
    """`raw` as a copy-guard ratio (0 = off), or a ConfigError naming where it came from."""
    try:
        ratio = float(raw)
    except (TypeError, ValueError):
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise ConfigError(f"copy guard {raw!r} ({source}) is not valid; expected a ratio between 0 (off) and 1")
    return ratio


def _vocab_size(model: Any) -> int:
    config = getattr(model, "config", None)
    return int(getattr(config, "vocab_size", 0) or getattr(model, "vocab_size", 0) or 0)


def _tune_cpu_threads(model: Any, device: str) -> None:
    """Decode a small model on one CPU thread: per-token ops are too small to gain from more, and
    under load (another process, a second session) intra-op threads oversubscribe the cores —
    measured here: 330 tok/s on one thread vs 55 on two for a tiny GLM. $COMPOSITE_THREADS overrides."""
    import torch

    configured = os.environ.get("COMPOSITE_THREADS", "").strip()
    if configured:
        if not configured.isdigit() or int(configured) < 1:
            raise ConfigError(f"COMPOSITE_THREADS must be a positive integer, got {configured!r}")
        torch.set_num_threads(int(configured))
    elif device == "cpu" and _count_parameters(model) < SMALL_MODEL_PARAMETERS:
        torch.set_num_threads(1)


def _load_native(folder: Path, device: str, torch_dtype: Any, quantize: int | None) -> Any:
    """Load a transformers-native causal LM folder; unknown architectures get a clear error."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except (ValueError, KeyError, OSError) as exc:
        raise ModelLoadError(
            f"{folder}: unknown or unsupported architecture ({exc}); expected a transformers causal LM "
            "or a ChatGLM3 checkpoint"
        ) from exc
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "local_files_only": True}
    if quantize:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=quantize == 4, load_in_8bit=quantize == 8, bnb_4bit_compute_dtype=torch_dtype
        )
        kwargs["device_map"] = {"": device}
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, config=config, **kwargs)
    except (ValueError, KeyError) as exc:
        raise ModelLoadError(f"{folder}: cannot load as a causal LM ({exc})") from exc
    if not quantize:
        model = model.to(device)
    return model
