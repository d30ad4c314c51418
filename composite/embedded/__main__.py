"""Command line: `python -m composite.embedded train|export|average|eval|bench` for the embedded model.

train reproduces the model from scratch (resumable from --workdir), export writes model/ from a checkpoint,
average writes model/ as a weighted average of two exported models.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from . import DEFAULT_WORKDIR, MODEL_DIR


def _train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, export, train

    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None}
    cfg = TrainConfig(**overrides)
    ckpt = train(Path(args.workdir), cfg, progress=not args.no_progress)
    print(f"checkpoint: {ckpt}")
    if args.export:
        print(f"exported: {export(Path(args.workdir), Path(args.out))}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .train import export

    print(f"exported: {export(Path(args.workdir), Path(args.out))}")
    return 0


def _average(args: argparse.Namespace) -> int:
    from .train import average

    print(f"averaged: {average(Path(args.first), Path(args.second), args.weight, Path(args.out))}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .evaluate import format_report, run_eval

    if args.newcomer:
        from .newcomer import format_newcomer_report, run_newcomer_eval

        report = run_newcomer_eval(Path(args.model), progress=not args.no_progress, copy_guard=args.copy_guard)
        print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else format_newcomer_report(report))
        return 0
    report = run_eval(args.cases, args.seed, model_dir=Path(args.model), progress=not args.no_progress,
                      copy_guard=args.copy_guard)
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else format_report(report))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .evaluate import benchmark

    report = benchmark(Path(args.model), new_tokens=args.tokens, engine=args.engine)
    print(json.dumps(report, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    from .train import TrainConfig

    parser = argparse.ArgumentParser(prog="python -m composite.embedded", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train the embedded model from scratch (resumes from --workdir)")
    p.add_argument("--workdir", default=str(DEFAULT_WORKDIR), help="tokenizer, checkpoint and log (default %(default)s)")
    for f in fields(TrainConfig):
        kind = type(f.default)
        p.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=kind, metavar=kind.__name__.upper(),
                       help=f"default {f.default}")
    p.add_argument("--export", action="store_true", help="export to --out when done")
    p.add_argument("--out", default=str(MODEL_DIR))
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_train)

    p = sub.add_parser("export", help="write model/ (float16) from the latest checkpoint in --workdir")
    p.add_argument("--workdir", default=str(DEFAULT_WORKDIR))
    p.add_argument("--out", default=str(MODEL_DIR))
    p.set_defaults(func=_export)

    p = sub.add_parser("average", help="write --out as (1 - weight) * first + weight * second (two exported models)")
    p.add_argument("--first", default=str(MODEL_DIR), help="an exported model folder (default %(default)s)")
    p.add_argument("--second", required=True, help="an exported model folder of the same shape and tokenizer")
    p.add_argument("--weight", type=float, default=0.5, help="the second model's share (default %(default)s)")
    p.add_argument("--out", default=str(MODEL_DIR))
    p.set_defaults(func=_average)

    p = sub.add_parser("eval", help="accuracy on held-out cases")
    p.add_argument("--cases", type=int, default=200)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--model", default=str(MODEL_DIR))
    p.add_argument("--json", action="store_true")
    p.add_argument("--newcomer", action="store_true", help="the hand-written newcomer set (newcomer.jsonl), per skill")
    p.add_argument("--copy-guard", type=float, default=None, metavar="RATIO",
                   help="the copy guard's ratio instead of the model's composite.json setting (0: off)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_eval)

    p = sub.add_parser("bench", help="load time and decode tokens/s at batch 1")
    p.add_argument("--model", default=str(MODEL_DIR))
    p.add_argument("--tokens", type=int, default=200)
    p.add_argument("--engine", choices=["auto", "torch", "numpy"], default="auto",
                   help="auto: the NumPy engine the app uses for this model")
    p.set_defaults(func=_bench)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
