#!/usr/bin/env python3
"""Where the rotation's extra CPU goes: user space or the kernel.

loadbench.py's rotation scenario compares switchyard serving one logical
name with serving 1,000 in rotation. This repeats just that, for one or more
switchyard binaries side by side (to compare two builds on the same
machine at the same time), and splits each process's CPU per request into
user and kernel time (/proc), with what the kernel was asked to do per
request (`perf stat` on syscall tracepoints: epoll_wait, recvfrom, sendto)
and the load generator's own CPU per request (wrk, under /usr/bin/time).

    python3 benches/load/rotation.py --switchyard new=target/release/switchyard[,old=/path/to/old] --rounds 4

Every binary runs `--threads 1` in front of loadbench.py's nginx backend
on 127.0.0.1 with a one-dentry and a 1,000-dentry dtab (both started once
and kept), each measured by `--seconds` of wrk (50 connections, the
rotation script), interleaved round by round. Needs wrk, nginx, perf and
/usr/bin/time; root or perf_event_paranoid <= 1 for the tracepoints.
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadbench as lb  # noqa: E402

EVENTS = "syscalls:sys_enter_epoll_wait,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto"
NAMES = (1, lb.ROTATION_NAMES)


def wrk(port: int, seconds: int, lua: Path, names: int) -> list[str]:
    return [
        "wrk", "-t1", "-c50", f"-d{seconds}s", "-s", str(lua), f"http://{lb.HOST}:{port}/", "--", str(names),
    ]


def measure(pid: int, port: int, seconds: int, lua: Path, names: int, work: Path) -> dict:
    out = work / "perf.txt"
    perf = subprocess.Popen(
        ["perf", "stat", "-x", ",", "-e", EVENTS, "-p", str(pid), "-o", str(out)],
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.2)
    u0, k0 = lb.cpu_split(pid)
    w = subprocess.run(
        ["/usr/bin/time", "-f", "WRK %U %S", *wrk(port, seconds, lua, names)],
        capture_output=True, text=True, timeout=seconds + 60,
    )
    u1, k1 = lb.cpu_split(pid)
    perf.send_signal(signal.SIGINT)
    perf.wait(timeout=30)
    m = re.search(r"(\d+) requests in", w.stdout)
    t = re.search(r"WRK ([\d.]+) ([\d.]+)", w.stderr)
    if not m or not t:
        raise RuntimeError(f"cannot parse wrk:\n{w.stdout}\n{w.stderr}")
    n = max(int(m.group(1)), 1)
    r = {
        "rps": n / seconds,
        "user": lb.cpu_us(u1 - u0) / n,
        "kernel": lb.cpu_us(k1 - k0) / n,
        "wrk": (float(t.group(1)) + float(t.group(2))) * 1e6 / n,
    }
    for line in out.read_text().splitlines():
        f = line.split(",")
        if len(f) > 2 and f[0].strip().isdigit():
            r[f[2].split("sys_enter_")[-1]] = int(f[0]) / n
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--switchyard", required=True, help="label=binary[,label=binary...] (or just a binary)")
    ap.add_argument("--rounds", type=int, default=4, help="interleaved rounds (default 4)")
    ap.add_argument("--seconds", type=int, default=8, help="seconds of wrk per measurement (default 8)")
    args = ap.parse_args()
    bins = {}
    for i, b in enumerate(args.switchyard.split(",")):
        label, _, path = b.rpartition("=")
        bins[label or f"switchyard{i or ''}"] = str(Path(path).resolve())
    with tempfile.TemporaryDirectory(prefix="rotation-") as d:
        work = Path(d)
        try:
            _, bport = lb.start_backend(work / "backend", work / "backend.log")
            lua = work / "rotation.lua"
            lua.write_text(lb.ROTATION_LUA)
            procs = {}
            for label, binary in bins.items():
                for names in NAMES:
                    port = lb.free_port()
                    site = work / f"{label}-{names}"
                    c = lb.switchyard_site(site, port, lb.free_port(), bport, dentries=names)
                    p = lb.spawn([binary, "run", "-c", str(c), "--threads", "1"], work / f"{label}-{names}.log", cwd=site)
                    lb.wait_first_request(p, port, time.perf_counter())
                    # Warm-up: every name bound, pools filled.
                    subprocess.run(wrk(port, 2, lua, names), capture_output=True, timeout=60)
                    procs[(label, names)] = (p, port)
            results: dict = {k: [] for k in procs}
            order = list(procs)
            for rnd in range(args.rounds):
                for key in order if rnd % 2 == 0 else order[::-1]:
                    p, port = procs[key]
                    r = measure(p.pid, port, args.seconds, lua, key[1], work)
                    results[key].append(r)
                    calls = " ".join(
                        f"{k} {r[k]:.2f}" for k in ("epoll_wait", "recvfrom", "sendto") if k in r
                    )
                    print(
                        f"round {rnd + 1} {key[0]} {key[1]:,} name(s): {r['rps']:,.0f} req/s, user {r['user']:.2f} "
                        f"+ kernel {r['kernel']:.2f} µs/req; wrk {r['wrk']:.2f} µs/req; syscalls/req: {calls}",
                        flush=True,
                    )
        finally:
            lb._kill_all()
    print()
    print("medians (µs per request):")
    for label in bins:
        one, many = (results[(label, n)] for n in NAMES)

        def m(rs, k):
            return statistics.median(r[k] for r in rs)

        print(
            f"{label}: user {m(one, 'user'):.2f} → {m(many, 'user'):.2f} "
            f"(+{m(many, 'user') - m(one, 'user'):.2f}), kernel {m(one, 'kernel'):.2f} → {m(many, 'kernel'):.2f}, "
            f"total growth {(m(many, 'user') + m(many, 'kernel')) / (m(one, 'user') + m(one, 'kernel')):.3f}×"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
