#!/usr/bin/env python3
"""How oha's fixed-rate requests leave it: evenly spaced, or in bursts.

loadbench.py measures latency at fixed rates with oha, which paces its
requests with tokio's timer. That timer fires once a millisecond at most,
so at 10,000 req/s the ten requests due in a millisecond leave together.
A one-worker server then serves a burst one request after another, and the
median request of the burst waits for the ones before it: its latency is
set by the burst's size and the server's CPU per request, not by the rate.

This measures the sending pattern: oha runs at `--rate` for `--duration`
seconds against a one-worker nginx on 127.0.0.1 (loadbench.py's backend),
under `perf record` of its request writes (tracepoints `syscalls:sys_enter_
{writev,sendto}`), and prints how the writes group: a burst is a run of
writes less than `--gap` µs apart (default 200; evenly spaced writes at
10,000 req/s, 100 µs apart, would make one endless run, and at 2,000 req/s,
500 µs apart, bursts of one).

    python3 benches/load/arrivals.py --rate 10000

Needs perf, oha and nginx, and root or perf_event_paranoid <= 1. Bounded:
one oha run; everything started is stopped on exit.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadbench as lb  # noqa: E402

# Requests leave hyper by writev (send/sendto for other clients); plain
# write is the runtime waking its driver through an eventfd, left out.
EVENTS = "syscalls:sys_enter_sendto,syscalls:sys_enter_writev"


def writes(work: Path, port: int, rate: int, duration: int) -> list[float]:
    """Timestamps (s) of oha's writes while it sends `rate` req/s."""
    data = work / "perf.data"
    argv = [
        "perf", "record", "-q", "-o", str(data), "-e", EVENTS, "--",
        "oha", "-z", f"{duration}s", "-q", str(rate), "-c", "50", "--latency-correction",
        "--no-tui", "--output-format", "json", "-H", f"Host: {lb.SERVICE}", f"http://{lb.HOST}:{port}/",
    ]
    subprocess.run(argv, capture_output=True, timeout=duration + 60, check=True)
    out = subprocess.run(
        ["perf", "script", "-i", str(data), "-F", "comm,time"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    ts = []
    for line in out.splitlines():
        parts = line.split()
        # oha's writes come from its tokio workers; its main thread only
        # prints the report at the end.
        if len(parts) >= 2 and parts[0] != "oha":
            ts.append(float(parts[-1].rstrip(":")))
    return sorted(ts)


def bursts(ts: list[float], gap_s: float) -> list[list[float]]:
    groups: list[list[float]] = []
    for t in ts:
        if groups and t - groups[-1][-1] <= gap_s:
            groups[-1].append(t)
        else:
            groups.append([t])
    return groups


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=10000, help="oha's fixed rate, req/s (default 10000)")
    ap.add_argument("--duration", type=int, default=3, help="seconds of oha (default 3)")
    ap.add_argument("--gap", type=float, default=200.0, help="µs between writes that ends a burst (default 200)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="arrivals-") as d:
        work = Path(d)
        try:
            _, port = lb.start_backend(work / "backend", work / "backend.log")
            time.sleep(0.5)
            ts = writes(work, port, args.rate, args.duration)
        finally:
            lb._kill_all()
    if len(ts) < 2:
        print("arrivals: no writes recorded (perf permissions?)", file=sys.stderr)
        return 1
    # The first and last 10% are oha starting and stopping.
    cut = len(ts) // 10
    ts = ts[cut: len(ts) - cut]
    groups = bursts(ts, args.gap * 1e-6)
    span = ts[-1] - ts[0]
    sizes = [len(g) for g in groups]
    by_weight = sorted(s for s in sizes for _ in range(s))
    print(f"oha at {args.rate:,} req/s: {len(ts):,} writes in {span:.2f} s ({len(ts) / span:,.0f}/s)")
    print(f"bursts (writes < {args.gap:.0f} µs apart): {len(groups):,}, {len(groups) / span:,.0f}/s")
    print(f"burst size: median {statistics.median(sizes):.0f}; "
          f"the median write is in a burst of {by_weight[len(by_weight) // 2]}")
    common = ", ".join(f"{n}×{c}" for n, c in sorted(Counter(sizes).most_common(8)))
    print(f"most common sizes (size×bursts): {common}")
    spans = sorted((g[-1] - g[0]) * 1e6 for g in groups if len(g) > 1)
    if spans:
        print(f"a burst's writes span (µs): median {statistics.median(spans):.0f}, "
              f"p90 {spans[len(spans) * 9 // 10]:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
