"""Benchmark the committed embedded model on this CPU: load time and greedy decode tokens/s at batch 1.

Run: python benchmarks/bench_embedded.py [--tokens N] [--threads N] [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from composite.embedded import MODEL_DIR


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=str(MODEL_DIR))
    parser.add_argument("--tokens", type=int, default=200, help="tokens to decode (default %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default %(default)s)")
    parser.add_argument("--engine", choices=["auto", "torch", "numpy"], default="auto",
                        help="auto: the NumPy engine the app uses for this model")
    args = parser.parse_args()

    from composite.embedded.evaluate import benchmark

    os.environ["COMPOSITE_THREADS"] = str(args.threads)  # the runtime otherwise decodes a tiny model on 1
    report = benchmark(Path(args.model), new_tokens=args.tokens, engine=args.engine)
    report["goals"] = {"decode_tokens_per_second": ">= 200", "load_seconds": "<= 2"}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
