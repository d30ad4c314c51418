"""Train the embedded model from scratch (seeded, resumable; CPU or CUDA), and export a checkpoint to model/.

Conversations are rendered with the app's ChatGLM3 dialect, packed into fixed-length rows, and only
assistant tokens (with the stop token that ends each assistant turn) are training targets. Each step's
rows come from a per-step seed, so the data does not depend on the device or on the number of workers.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..dialect import ChatGLM3Dialect
from ..errors import ConfigError
from ..tokenizer import SPECIAL_TOKENS, ChatGLMTokenizer
from . import MODEL_DIR, MODEL_NAME, data

__all__ = ["TrainConfig", "build_tokenizer", "encode_conversation", "export", "model_config", "resolve_device", "train"]

IGNORE = -100


@dataclass
class TrainConfig:
    seed: int = 20251127
    steps: int = 2400
    batch: int = 3  # packed code / chat / copy rows per step
    tool_rows: int = 3  # tool-mode rows per step, continuing the shared tool prompt
    row_len: int = 512
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup: int = 60
    weight_decay: float = 0.05
    hidden: int = 256
    layers: int = 4
    heads: int = 8
    kv_heads: int = 4
    intermediate: int = 640
    context: int = 2048
    induction_until: int = 400  # first phase: short clean copy tasks in small rows (forms induction heads)
    induction_rows: int = 16
    induction_row_len: int = 128
    copy_until: int = 600  # then a heavy share of the longer copy task, then dialogs
    checkpoint_minutes: float = 5.0
    max_minutes: float = 0.0  # 0: no wall-clock limit; else stop then, annealing the learning rate by then (per run)
    threads: int = 2
    device: str = "auto"  # auto (cuda when available), cpu or cuda
    workers: int = 0  # processes that build batches ahead of the trainer (0: in the training process)
    init_from: str = ""  # a checkpoint.pt to start from (fine-tuning: its weights, a fresh optimizer and schedule)


def build_tokenizer(path: Path, seed: int) -> ChatGLMTokenizer:
    """Train (or reuse) the sentencepiece model at path."""
    from .vocab import train_tokenizer

    if not path.is_file():
        train_tokenizer(data.tokenizer_corpus(seed), path, extra_chars=data.CJK)
    return ChatGLMTokenizer(path)


def model_config(tok: ChatGLMTokenizer, cfg: TrainConfig) -> Any:
    from transformers import GlmConfig

    vocab = (tok.vocab_size + 7) // 8 * 8
    return GlmConfig(
        vocab_size=vocab,
        hidden_size=cfg.hidden,
        intermediate_size=cfg.intermediate,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.kv_heads,
        head_dim=cfg.hidden // cfg.heads,
        max_position_embeddings=cfg.context,
        rms_norm_eps=1e-5,
        attention_bias=True,
        tie_word_embeddings=False,
        pad_token_id=tok.pad_id,
        eos_token_id=[tok.eos_id, tok["<|user|>"], tok["<|observation|>"]],
        bos_token_id=None,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
    )


def encode_conversation(dialect: ChatGLM3Dialect, conv: data.Conversation) -> tuple[list[int], list[int]]:
    """Token ids and labels: assistant turns and the stop token right after each one are targets."""
    tok = dialect.tokenizer
    messages = dialect.with_tools(conv.messages(), conv.tools)
    body, body_labels = _encode_messages(dialect, messages, "")
    ids = [tok["[gMASK]"], tok["sop"]] + body
    labels = [IGNORE, IGNORE] + body_labels
    previous = messages[-1].role if messages else ""
    if previous == "assistant":
        ids.append(tok["<|user|>"])
        labels.append(tok["<|user|>"])
    return ids, labels


COPY_GUARD = 0.05  # the exported model's copy-guard ratio (backends/copy_guard.py), written to composite.json
CONTRAST_SHARE = 0.2  # of the rest: code conversations asking several operations of the same data
VARIED_TOOL_SHARE = 0.15  # other rows' share of tool conversations under another system prompt / tool list


def _copy_share(step: int, cfg: TrainConfig) -> float:
    if step < cfg.copy_until:
        return 0.85
    if step < cfg.copy_until + 500:
        return 0.15
    return 0.06


def tool_prefix(dialect: ChatGLM3Dialect) -> list[int]:
    """The tool-mode prompt start shared by every tool conversation: [gMASK] sop <|system|> prompt + tools."""
    tok = dialect.tokenizer
    system = dialect.with_tools([data.Message("system", data.SYSTEM_PROMPTS["tool"])], data.tool_schemas())[0]
    return [tok["[gMASK]"], tok["sop"]] + dialect.render_message(system)


def encode_exchanges(dialect: ChatGLM3Dialect, exchanges: list[data.Exchange], previous: str) -> tuple[list[int], list[int]]:
    """Ids and labels of exchanges continuing a conversation whose last message had role `previous`."""
    return _encode_messages(dialect, [m for exchange in exchanges for m in exchange.messages], previous)


def _encode_messages(dialect: ChatGLM3Dialect, messages: list, previous: str) -> tuple[list[int], list[int]]:
    """Ids and labels of messages: assistant turns are targets (not their role token), and so is the
    role token that ends an assistant turn (<|observation|> after a call, <|user|> after an answer)."""
    ids: list[int] = []
    labels: list[int] = []
    for message in messages:
        rendered = dialect.render_message(message)
        ids += rendered
        if message.role == "assistant":
            labels += [IGNORE] + rendered[1:]
        else:
            labels += [rendered[0] if previous == "assistant" else IGNORE] + [IGNORE] * (len(rendered) - 1)
        previous = message.role
    return ids, labels


def _pack(rng: random.Random, row_len: int, draw: Any) -> tuple[list[int], list[int], int]:
    """Greedily fill one row with (ids, labels) pieces from draw(); stops after 3 pieces that do not fit."""
    row_ids: list[int] = []
    row_labels: list[int] = []
    misses = docs = 0
    while misses < 3:
        ids, labels = draw()
        if len(ids) > row_len and not row_ids:
            ids, labels = ids[:row_len], labels[:row_len]
        if len(row_ids) + len(ids) > row_len:
            misses += 1
            continue
        row_ids += ids
        row_labels += labels
        docs += 1
    return row_ids, row_labels, docs


def make_batch(step: int, cfg: TrainConfig, dialect: ChatGLM3Dialect) -> dict[str, Any]:
    """One step's rows, drawn from a per-step seed (so resuming is exact).

    Tool rows continue the shared tool-mode prefix (computed once per step): each row is the exchanges
    of several tool conversations, i.e. one long tool-mode conversation. Other rows pack whole
    code / chat / copy-task conversations.
    """
    import torch

    rng = random.Random(cfg.seed * 1_000_003 + step)
    tok = dialect.tokenizer
    pad = tok.pad_id
    user = tok["<|user|>"]

    def draw_tool() -> tuple[list[int], list[int]]:
        exchanges = [data.exchange_for(rng, "train", "tool") for _ in range(rng.randint(1, 2))]
        return encode_exchanges(dialect, exchanges, "system")

    def draw_other() -> tuple[list[int], list[int]]:
        if rng.random() < _copy_share(step, cfg):
            conv = data.sample_copy_task(rng)
        elif rng.random() < VARIED_TOOL_SHARE:
            conv = data.sample_varied_tool_conversation(rng)
        elif rng.random() < CONTRAST_SHARE:
            conv = data.sample_contrast_conversation(rng)
        else:
            conv = data.sample_conversation(rng, "train", rng.choices(["code", "chat"], weights=[0.68, 0.32])[0])
        return encode_conversation(dialect, conv)

    def finish(rows: list[tuple[list[int], list[int], int]], length: int) -> tuple[Any, Any]:
        ids_out, labels_out = [], []
        for ids, labels, _ in rows:
            ids, labels = list(ids), list(labels)
            fill = length - len(ids)
            ids += [pad] * fill
            labels += [IGNORE] * fill
            ids_out.append(ids)
            labels_out.append(labels)
        return torch.tensor(ids_out), torch.tensor(labels_out)

    if step < cfg.induction_until:
        rows = [_pack(rng, cfg.induction_row_len, lambda: encode_conversation(dialect, data.sample_clean_copy(rng)))
                for _ in range(cfg.induction_rows)]
        ids, labels = finish(rows, cfg.induction_row_len)
        empty = torch.zeros((0, cfg.row_len), dtype=torch.long)
        return {"prefix": torch.tensor([tool_prefix(dialect)]), "tool_ids": empty, "tool_labels": empty,
                "other_ids": ids, "other_labels": labels, "docs": sum(r[2] for r in rows),
                "targets": _targets(labels)}
    # The copy phase trains copying on cheap rows (no tool prompt); dialogs follow.
    copy_phase = step < cfg.copy_until
    tool_rows = []
    for _ in range(0 if copy_phase else cfg.tool_rows):
        ids, labels, docs = _pack(rng, cfg.row_len - 1, draw_tool)
        # a row ends after an answer: its <|user|> stop token is a target too
        tool_rows.append((ids + [user], labels + [user], docs))
    other_rows = [_pack(rng, cfg.row_len, draw_other) for _ in range(cfg.batch + (cfg.tool_rows if copy_phase else 0))]
    tool_ids, tool_labels = finish(tool_rows, cfg.row_len)
    other_ids, other_labels = finish(other_rows, cfg.row_len)
    return {"prefix": torch.tensor([tool_prefix(dialect)]), "tool_ids": tool_ids, "tool_labels": tool_labels,
            "other_ids": other_ids, "other_labels": other_labels,
            "docs": sum(r[2] for r in tool_rows) + sum(r[2] for r in other_rows),
            "targets": _targets(tool_labels) + _targets(other_labels)}


def _targets(labels: Any) -> int:
    """Predicted positions of a row block (labels shift by one: the first position is never a target)."""
    return int((labels[:, 1:] != IGNORE).sum()) if labels.numel() else 0


class _StepBatches:
    """make_batch as a map-style dataset over step numbers, so DataLoader workers can build batches ahead."""

    def __init__(self, start: int, cfg: TrainConfig, dialect: ChatGLM3Dialect) -> None:
        self.start, self.cfg, self.dialect = start, cfg, dialect

    def __len__(self) -> int:
        return max(0, self.cfg.steps - self.start)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return make_batch(self.start + index, self.cfg, self.dialect)


def _batches(start: int, cfg: TrainConfig, dialect: ChatGLM3Dialect, pin: bool) -> Any:
    if cfg.workers <= 0:
        return (make_batch(step, cfg, dialect) for step in range(start, cfg.steps))
    from torch.utils.data import DataLoader

    return iter(DataLoader(_StepBatches(start, cfg, dialect), batch_size=None, shuffle=False,
                           num_workers=cfg.workers, prefetch_factor=8, pin_memory=pin, persistent_workers=False))


def _to(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if hasattr(v, "to") else v for k, v in batch.items()}


def batch_loss(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """Mean cross entropy over all target tokens of the step (tool rows reuse the prefix's KV cache)."""
    import torch

    count = batch["targets"]

    def summed(logits: Any, labels: Any) -> Any:
        return torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)).float(), labels[:, 1:].reshape(-1),
            ignore_index=IGNORE, reduction="sum")

    total = None
    if batch["tool_ids"].numel():
        rows = batch["tool_ids"].size(0)
        prefix = model(input_ids=batch["prefix"], use_cache=True)
        cache = prefix.past_key_values
        cache.batch_repeat_interleave(rows)
        out = model(input_ids=batch["tool_ids"], past_key_values=cache, use_cache=False)
        total = summed(out.logits, batch["tool_labels"])
    if batch["other_ids"].size(0):
        out = model(input_ids=batch["other_ids"])
        part = summed(out.logits, batch["other_labels"])
        total = part if total is None else total + part
    return total / max(1, count), count


def _lr(step: int, cfg: TrainConfig, elapsed: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio by cfg.steps, or by max_minutes if that comes first."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    if cfg.max_minutes:
        progress = max(progress, min(1.0, elapsed / (cfg.max_minutes * 60)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def _save(path: Path, model: Any, optimizer: Any, step: int, cfg: TrainConfig, stages: list[dict[str, Any]]) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save({"model": {k: v.cpu() for k, v in model.state_dict().items()}, "optimizer": optimizer.state_dict(),
                "step": step, "config": asdict(cfg), "stages": stages}, tmp)
    tmp.replace(path)


def resolve_device(name: str) -> Any:
    """The torch device for cfg.device: auto picks CUDA when it is available."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"device {name!r} is not supported for training; expected auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but torch sees no CUDA GPU; use --device cpu")
    return torch.device(name)


def train(workdir: Path, cfg: TrainConfig, progress: bool = True) -> Path:
    """Train until cfg.steps (or max_minutes); resumes from workdir/checkpoint.pt. Returns the checkpoint path."""
    import torch
    from tqdm import tqdm
    from transformers import GlmForCausalLM

    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    workdir.mkdir(parents=True, exist_ok=True)
    if cfg.init_from and Path(cfg.init_from).is_dir() and not (workdir / "tokenizer.model").is_file():
        # an exported model folder (e.g. the committed model/): its tokenizer sits inside it
        shutil.copyfile(Path(cfg.init_from) / "tokenizer.model", workdir / "tokenizer.model")
    if cfg.init_from and not (workdir / "tokenizer.model").is_file():
        # fine-tuning keeps the tokenizer the starting weights were trained with
        shared = Path(cfg.init_from).parent / "tokenizer.model"
        if not shared.is_file():
            raise ConfigError(f"init_from: put the tokenizer.model of {cfg.init_from} beside it or in {workdir}")
        shutil.copyfile(shared, workdir / "tokenizer.model")
    tok = build_tokenizer(workdir / "tokenizer.model", cfg.seed)
    dialect = ChatGLM3Dialect(tok, tools_indent=None)
    ckpt = workdir / "checkpoint.pt"
    torch.manual_seed(cfg.seed)
    model = GlmForCausalLM(model_config(tok, cfg)).to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "embed" in n]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95),
                                  fused=device.type == "cuda")
    start = 0
    stages: list[dict[str, Any]] = []  # earlier runs this one continues from (init_from), oldest first
    if ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["step"]
        stages = state.get("stages", [])
    elif cfg.init_from and Path(cfg.init_from).is_dir():
        model.load_state_dict(grow_layers(_exported_state(Path(cfg.init_from)), model.state_dict()))
        facts = json.loads((Path(cfg.init_from) / "training.json").read_text())
        stage = {"steps": facts["trained_steps"], "config": facts["train_config"]}
        if "averaged_with" in facts:
            stage["averaged_with"] = facts["averaged_with"]
        stages = facts.get("earlier_stages", []) + [stage]
    elif cfg.init_from:
        source = Path(cfg.init_from)
        if not source.is_file():
            raise ConfigError(f"init_from: no checkpoint at {source}; expected a checkpoint.pt written by train")
        state = torch.load(source, map_location="cpu", weights_only=False)
        model.load_state_dict(grow_layers(state["model"], model.state_dict()))
        stages = state.get("stages", []) + [{"steps": state["step"], "config": state["config"]}]
    (workdir / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    log = (workdir / "train_log.jsonl").open("a")
    model.train()
    began = last_save = time.time()
    bar = tqdm(total=cfg.steps, initial=start, disable=not progress, desc=f"train ({device.type})")
    smooth = None
    done = start
    for step, batch in enumerate(_batches(start, cfg, dialect, pin=device.type == "cuda"), start):
        lr = _lr(step, cfg, time.time() - began)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, targets = batch_loss(model, _to(batch, device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        done = step + 1
        value = float(loss.detach())
        smooth = value if smooth is None else 0.95 * smooth + 0.05 * value
        bar.update(1)
        bar.set_postfix(loss=f"{smooth:.3f}", lr=f"{lr:.1e}")
        log.write(json.dumps({"step": done, "loss": round(value, 4), "smooth": round(smooth, 4), "lr": lr,
                              "docs": batch["docs"], "targets": targets,
                              "time": round(time.time() - began, 1)}) + "\n")
        log.flush()
        now = time.time()
        if now - last_save > cfg.checkpoint_minutes * 60:
            _save(ckpt, model, optimizer, done, cfg, stages)
            last_save = now
        if cfg.max_minutes and now - began > cfg.max_minutes * 60:
            break
    bar.close()
    _save(ckpt, model, optimizer, done, cfg, stages)
    log.close()
    return ckpt


def _layer_count(state: dict[str, Any]) -> int:
    return len({name.split(".")[2] for name in state if name.startswith("model.layers.")})


def grow_layers(source: dict[str, Any], fresh: dict[str, Any]) -> dict[str, Any]:
    """Starting weights for a model with as many or more layers than `source` (a state dict of the same width).

    Deeper (block expansion): the source's layers keep their order, spread evenly among the new ones, and every
    new layer starts as the identity (its attention output and MLP down projections are zero, so it adds nothing
    to the residual stream): the grown model computes exactly what the source did, then training uses the new
    layers. `fresh` is the new model's own (randomly initialised) state dict, which supplies the new layers'
    other weights. The same depth returns `source` unchanged.
    """
    old, new = _layer_count(source), _layer_count(fresh)
    if new == old:
        return source
    if new < old:
        raise ConfigError(f"init_from: the starting weights have {old} layers and --layers is {new}; "
                          f"a model can only grow (expected --layers {old} or more)")
    widths = {name: tuple(t.shape) for name, t in source.items() if not name.startswith("model.layers.")}
    wrong = [name for name, shape in widths.items() if tuple(fresh[name].shape) != shape]
    if wrong:
        raise ConfigError(f"init_from: only the number of layers can grow; {wrong[0]} has shape {widths[wrong[0]]} "
                          f"in the starting weights and {tuple(fresh[wrong[0]].shape)} with these options")
    place = {new * i // old: i for i in range(old)}  # new index -> source index
    grown: dict[str, Any] = {}
    for name, tensor in fresh.items():
        if not name.startswith("model.layers."):
            grown[name] = source[name]
            continue
        index, rest = name.split(".", 3)[2:]
        if int(index) in place:
            grown[name] = source[f"model.layers.{place[int(index)]}.{rest}"]
        elif rest in ("self_attn.o_proj.weight", "mlp.down_proj.weight"):
            grown[name] = tensor.new_zeros(tensor.shape)
        else:
            grown[name] = tensor.clone()
    return grown


def _exported_state(folder: Path, role: str = "init_from") -> dict[str, Any]:
    """Float32 weights of an exported model folder (model.safetensors + training.json), for fine-tuning or
    averaging (`role` names the option in the error)."""
    from safetensors.torch import load_file

    weights = folder / "model.safetensors"
    if not weights.is_file() or not (folder / "training.json").is_file():
        raise ConfigError(f"{role}: {folder} is not an exported model folder (expected model.safetensors and training.json)")
    return {name: tensor.float() for name, tensor in load_file(str(weights)).items()}


AVERAGE_COPIES = ("config.json", "tokenizer.model", "composite.json")  # what an average takes from its second model


def average(first: Path, second: Path, weight: float, out_dir: Path = MODEL_DIR) -> Path:
    """Write (1 - weight) * first + weight * second as a model folder: two exported models of one shape and
    tokenizer, usually a committed model and a fine-tune of it (a fine-tune forgets some of what its start
    knew; the average keeps both). The folder is the second's (its config, tokenizer, training facts) with
    the averaging recorded in training.json; out_dir may be either input."""
    from safetensors.torch import save_file

    if not 0.0 < weight < 1.0:
        raise ConfigError(f"average: weight must be between 0 and 1 (exclusive), got {weight}")
    a, b = _exported_state(first, "average"), _exported_state(second, "average")
    for folder in (first, second):
        missing = [name for name in AVERAGE_COPIES if not (folder / name).is_file()]
        if missing:
            raise ConfigError(f"average: {folder} lacks {', '.join(missing)}; expected an exported model folder")
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        raise ConfigError(f"average: {first} and {second} differ in shape; only models of one shape can be averaged")
    files = {name: (second / name).read_bytes() for name in AVERAGE_COPIES}
    if (first / "tokenizer.model").read_bytes() != files["tokenizer.model"]:
        raise ConfigError(f"average: {first} and {second} have different tokenizers")
    facts_a = json.loads((first / "training.json").read_text())
    facts_b = json.loads((second / "training.json").read_text())
    mixed = {k: ((1.0 - weight) * a[k] + weight * b[k]).half().contiguous() for k in a}
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.safetensors"):
        old.unlink()
    save_file(mixed, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    for name, blob in files.items():
        (out_dir / name).write_bytes(blob)
    facts_b["averaged_with"] = {"weight_of_this_run": weight, "trained_steps": facts_a["trained_steps"],
                                "train_config": facts_a["train_config"]}
    (out_dir / "training.json").write_text(json.dumps(facts_b, indent=2) + "\n")
    return out_dir


def export(workdir: Path, out_dir: Path = MODEL_DIR) -> Path:
    """Write the checkpoint in workdir as the committed model folder (float16 safetensors + tokenizer)."""
    import torch
    from transformers import GlmForCausalLM

    state = torch.load(workdir / "checkpoint.pt", map_location="cpu", weights_only=False)
    cfg = TrainConfig(**state["config"])
    tok = ChatGLMTokenizer(workdir / "tokenizer.model")
    model = GlmForCausalLM(model_config(tok, cfg))
    model.load_state_dict(state["model"])
    model = model.to(torch.float16)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.safetensors"):
        old.unlink()
    model.save_pretrained(out_dir, safe_serialization=True)
    gen = out_dir / "generation_config.json"
    if gen.exists():
        gen.unlink()
    shutil.copyfile(workdir / "tokenizer.model", out_dir / "tokenizer.model")
    marker = {"name": MODEL_NAME, "dialect": "chatglm3", "tools_indent": None, "max_length": cfg.context,
              "copy_guard": COPY_GUARD}
    (out_dir / "composite.json").write_text(json.dumps(marker, indent=2) + "\n")
    facts = {"trained_steps": state["step"], "special_tokens": list(SPECIAL_TOKENS), "train_config": asdict(cfg),
             "earlier_stages": state.get("stages", [])}
    (out_dir / "training.json").write_text(json.dumps(facts, indent=2) + "\n")
    return out_dir
