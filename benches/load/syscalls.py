#!/usr/bin/env python3
"""Syscalls and in-proxy time per request, switchyard against nginx (issue 7).

Latency at a low fixed rate is made of wake-ups, syscalls and the proxy's own
work between reading a message and writing it on. This looks at each, for
switchyard `--threads 1` and a one-worker nginx proxy in front of the same
nginx backend on 127.0.0.1 (set up as loadbench.py does), while oha sends a
fixed rate over 50 keep-alive connections:

  * `strace -f -c` on the proxy: each syscall's count per request, and its
    errors (EAGAIN reads) per request;
  * perf tracepoints (`syscalls:sys_{enter,exit}_*`) on the proxy: the time
    from a read returning to the write that forwards it, for the request
    leg (client -> backend) and the response leg (backend -> client), and
    how many reads were directly followed by their own write (below 100%:
    other connections' reads came first).

Run from the repo root: `python3 benches/load/syscalls.py --switchyard
target/release/switchyard` (strace, perf, oha and nginx must be installed;
root or perf_event_paranoid <= 1 for the tracepoints). Bounded: each
measurement is one oha run of --duration seconds; everything started is
killed on exit. The tracing itself slows the proxies: compare them with each
other, not with loadbench.py's figures.
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadbench as lb  # noqa: E402

STRACE_LINE = re.compile(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(\d+)?\s*(\w+)$")
PERF_LINE = re.compile(r"\s*([\d.]+):\s+(\S+):\s*(.*)")
# A forwarding write is a writev (hyper's server, nginx) or a sendto
# (switchyard's own HTTP/1.1 client writes a request in one buffer).
WRITES = ("sys_enter_writev", "sys_enter_sendto", "sys_enter_write")
EVENTS = ["syscalls:sys_exit_recvfrom"] + [f"syscalls:{w}" for w in WRITES]


def start(kind: str, binary: str, work: Path, backend: int):
    port = lb.free_port()
    if kind == "nginx":
        conf = lb.nginx_conf(work / "nginx-proxy", port, backend)
        p = lb.spawn(["nginx", "-c", str(conf), "-p", str(conf.parent)], work / "nginx-proxy.log")
    else:
        site = work / "switchyard"
        conf = lb.switchyard_site(site, port, lb.free_port(), backend)
        p = lb.spawn([binary, "run", "-c", str(conf), "--threads", "1"], work / "switchyard.log", cwd=site)
    lb.wait_first_request(p, port, time.perf_counter())
    # nginx: the worker (the master's child) serves.
    pid = lb._tree(p.pid)[-1] if kind == "nginx" else p.pid
    return p, port, pid


def traced(argv: list[str], port: int, args) -> dict:
    """Run oha while `argv` (a tracer attached to the proxy) records."""
    tracer = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        return lb.run_oha(port, args.rate, args.duration, args.connections)
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=30)


def syscalls(pid: int, port: int, args, out: Path) -> str:
    o = traced(["strace", "-f", "-c", "-o", str(out), "-p", str(pid)], port, args)
    n = max(o["requests"], 1)
    rows = []
    for line in out.read_text().splitlines():
        m = STRACE_LINE.match(line)
        if m:
            calls, errors, name = int(m.group(1)), int(m.group(2) or 0), m.group(3)
            rows.append(f"    {name:14s} {calls / n:6.2f}/req" + (f"  errors {errors / n:.2f}/req" if errors else ""))
    return "\n".join(rows)


def windows(pid: int, port: int, args, data: Path) -> str:
    argv = ["perf", "record", "-q", "-o", str(data), "-p", str(pid)]
    for e in EVENTS:
        argv += ["-e", e]
    o = traced(argv, port, args)
    script = subprocess.run(
        ["perf", "script", "-i", str(data), "-F", "time,event,trace"],
        capture_output=True, text=True, timeout=120,
    ).stdout
    # A read's size tells the legs apart: the backend's response is
    # RESPONSE_BYTES long, the client's request is not.
    legs: dict[str, list[float]] = {"request": [], "response": []}
    reads = {"request": 0, "response": 0}
    last = None
    for line in script.splitlines():
        m = PERF_LINE.match(line)
        if not m:
            continue
        t, event, trace = float(m.group(1)), m.group(2), m.group(3)
        if event.endswith("sys_exit_recvfrom"):
            r = re.search(r"0x([0-9a-f]+)", trace)
            size = int(r.group(1), 16) if r else -1
            leg = "response" if size == args.response_bytes else "request"
            reads[leg] += 1
            last = (t, leg)
        elif event.endswith(WRITES) and last:
            legs[last[1]].append((t - last[0]) * 1e6)
            last = None

    def pct(xs: list[float], q: float) -> float:
        return sorted(xs)[min(int(len(xs) * q), len(xs) - 1)] if xs else 0.0

    rows = [f"    oha p50 under tracing {o['p50_us']:.0f} us"]
    for leg, xs in legs.items():
        direct = 100.0 * len(xs) / max(reads[leg], 1)
        rows.append(
            f"    {leg:8s} leg: read -> write p50 {pct(xs, 0.5):5.1f} us, p90 {pct(xs, 0.9):5.1f} us;"
            f" {direct:5.1f}% of reads directly followed by their write"
        )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--switchyard", default=str(lb.REPO / "target/release/switchyard"))
    ap.add_argument("--proxies", default="switchyard,nginx")
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--response-bytes", type=int, default=149,
                    help="size of the nginx backend's answer as read by the proxy")
    ap.add_argument("--no-perf", action="store_true", help="skip the perf tracepoint windows")
    args = ap.parse_args()
    # The proxies start in their own directories: a relative path would not
    # be found from there.
    args.switchyard = str(Path(args.switchyard).resolve())
    signal.signal(signal.SIGTERM, lb._on_signal)
    with tempfile.TemporaryDirectory(prefix="syscalls-") as d:
        work = Path(d)
        try:
            _, backend = lb.start_backend(work / "backend", work / "backend.log")
            for kind in args.proxies.split(","):
                p, port, pid = start(kind, args.switchyard, work, backend)
                lb.run_oha(port, args.rate, 1, args.connections)  # warm-up
                print(f"== {kind} at {args.rate} req/s, {args.connections} connections", flush=True)
                print(syscalls(pid, port, args, work / f"{kind}.strace"), flush=True)
                if not args.no_perf:
                    print(windows(pid, port, args, work / f"{kind}.perf"), flush=True)
                lb._stop(p)
        finally:
            lb._kill_all()


if __name__ == "__main__":
    main()
