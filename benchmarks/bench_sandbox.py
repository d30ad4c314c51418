"""Benchmark the sandbox against raw jupyter_client in the same run: time to a ready kernel and the
warm `print(1)` round trip (medians). Run: python benchmarks/bench_sandbox.py [--starts 5] [--trips 50]"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _raw_start(workdir: str) -> tuple[Any, Any, float]:
    from jupyter_client import KernelManager

    started = time.perf_counter()
    km = KernelManager(transport="ipc", ip=f"{workdir}/k", connection_file=f"{workdir}/kernel.json")
    km.start_kernel(extra_arguments=["--HistoryManager.enabled=False"], cwd=workdir)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    return km, kc, time.perf_counter() - started


def _raw_print(kc: Any) -> str:
    msg_id = kc.execute("print(1)", allow_stdin=False)
    text = ""
    while True:
        msg = kc.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            text += msg["content"]["text"]
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    while kc.get_shell_msg(timeout=30)["parent_header"].get("msg_id") != msg_id:
        pass
    return text


def _timed(fn: Callable[[], Any], n: int) -> list[float]:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def measure(starts_n: int = 5, trips_n: int = 50, variants: tuple[str, ...] = ("full",)) -> dict[str, Any]:
    """Kernel starts and warm print(1) round trips, raw jupyter_client and each sandbox variant
    interleaved: {"first": {name: s}, "starts": {name: [s]}, "trips": {name: [s]}}."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from composite.sandbox import Sandbox, SandboxConfig

    starts: dict[str, list[float]] = {"raw": [], **{v: [] for v in variants}}
    trips: dict[str, list[float]] = {"raw": [], **{v: [] for v in variants}}
    first: dict[str, float] = {}

    # interleave the variants so that load from other processes affects them alike
    for i in range(starts_n):
        with tempfile.TemporaryDirectory(prefix="bench-raw-") as tmp:
            km, kc, elapsed = _raw_start(tmp)
            try:
                if i == 0:
                    first["raw"] = elapsed
                else:
                    starts["raw"].append(elapsed)
                assert _raw_print(kc) == "1\n"
                trips["raw"] += _timed(lambda kc=kc: _raw_print(kc), trips_n // starts_n or 1)
            finally:
                kc.stop_channels()
                km.shutdown_kernel(now=True)
        for variant in variants:
            sandbox = Sandbox(config=SandboxConfig(prestart=0, isolation=variant))
            try:
                t = time.perf_counter()
                sandbox.start()
                elapsed = time.perf_counter() - t
                if i == 0:
                    first[variant] = elapsed
                else:
                    starts[variant].append(elapsed)
                assert sandbox.execute("print(1)").text() == "1\n"
                trips[variant] += _timed(
                    lambda sb=sandbox: sb.execute("print(1)"), trips_n // starts_n or 1
                )
            finally:
                sandbox.shutdown()
    return {"first": first, "starts": starts, "trips": trips}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--starts", type=int, default=5, help="kernel starts per variant (median)")
    parser.add_argument("--trips", type=int, default=50, help="print(1) round trips per variant (median)")
    parser.add_argument(
        "--reduced", action="store_true", help="also measure the reduced (no bubblewrap) sandbox"
    )
    args = parser.parse_args(argv)

    variants = ["full"] + (["reduced"] if args.reduced else [])
    measured = measure(args.starts, args.trips, tuple(variants))
    first, starts, trips = measured["first"], measured["starts"], measured["trips"]

    def med(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    print(
        f"{'metric (median)':34} {'raw jupyter_client':>19} "
        + " ".join(f"{'sandbox ' + v:>17}" for v in variants)
    )
    rows = [
        ("first start in process (s)", {k: first.get(k, float("nan")) for k in starts}, "{:.3f}"),
        (
            f"start to ready (s), n={max(args.starts - 1, 1)}",
            {k: med(v) for k, v in starts.items()},
            "{:.3f}",
        ),
        (
            f"print(1) round trip (ms), n={len(trips['raw'])}",
            {k: med(v) * 1000 for k, v in trips.items()},
            "{:.2f}",
        ),
    ]
    for label, values, fmt in rows:
        print(
            f"{label:34} {fmt.format(values['raw']):>19} "
            + " ".join(f"{fmt.format(values[v]):>17}" for v in variants)
        )
    for v in variants:
        print(
            f"overhead of sandbox {v}: start {med(starts[v]) - med(starts['raw']):+.3f} s, "
            f"round trip {(med(trips[v]) - med(trips['raw'])) * 1000:+.2f} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
