#!/usr/bin/env python3
"""User-space instructions per proxied request of the real binary, by callgrind.

Instruction counts do not move with the machine's load the way times do, so
this is how a change to the request path is judged on a shared machine:

    cargo build --release --bin switchyard
    python3 benches/load/callgrind.py --switchyard target/release/switchyard [--names 1000]

It starts loadbench.py's nginx backend (`200 ok`) and switchyard on
`--threads 1` under `valgrind --tool=callgrind` with instrumentation off,
warms up with wrk (every name bound, pools filled), switches
instrumentation on for a measured wrk run of `--seconds` (10 connections,
the rotation script over `--names` logical names), and prints the
instructions divided by the requests served. The profile stays in
`--work` (default /tmp/switchyard-callgrind) for `callgrind_annotate`.
Everything listens on 127.0.0.1 and every run is bounded in time.
"""

from __future__ import annotations

import argparse
import atexit
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadbench as lb  # noqa: E402


def wrk(port: int, seconds: int, lua: Path, names: int) -> tuple[int, str]:
    out = subprocess.run(
        ["wrk", "-t1", "-c10", f"-d{seconds}s", "-s", str(lua),
         f"http://127.0.0.1:{port}/", "--", str(names)],
        capture_output=True, text=True, timeout=seconds + 60,
    ).stdout
    m = re.search(r"(\d+) requests in", out)
    return (int(m.group(1)) if m else 0), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--switchyard", required=True, help="the release binary to profile")
    ap.add_argument("--names", type=int, default=1, help="logical names in rotation (and dentries)")
    ap.add_argument("--warmup", type=int, default=8, help="seconds of wrk before measuring")
    ap.add_argument("--seconds", type=int, default=10, help="seconds of measured wrk")
    ap.add_argument("--work", default="/tmp/switchyard-callgrind", help="scratch directory")
    args = ap.parse_args()

    atexit.register(lb._kill_all)
    work = Path(args.work) / f"names{args.names}"
    (work / "be").mkdir(parents=True, exist_ok=True)
    for old in work.glob("cg.out*"):
        old.unlink()
    bport = lb.free_port()
    lb.spawn(["nginx", "-c", str(lb.nginx_conf(work / "be", bport, None)), "-p", str(work / "be")],
             work / "be.log")
    port, admin = lb.free_port(), lb.free_port()
    site = work / "sy"
    site.mkdir(exist_ok=True)
    conf = lb.switchyard_site(site, port, admin, bport, dentries=args.names)
    sy = lb.spawn(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                   f"--callgrind-out-file={work}/cg.out",
                   str(Path(args.switchyard).resolve()), "run", "-c", str(conf), "--threads", "1"],
                  work / "sy.log", cwd=site)
    lua = work / "rotation.lua"
    lua.write_text(lb.ROTATION_LUA)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if lb.get_once(port, 2.0) == 200:
                break
        except OSError:
            pass
        time.sleep(0.2)
    else:
        print("switchyard did not answer within 60 s; see", work / "sy.log", file=sys.stderr)
        return 1

    wrk(port, args.warmup, lua, args.names)
    subprocess.run(["callgrind_control", "-i", "on", str(sy.pid)], capture_output=True, timeout=30)
    n, out = wrk(port, args.seconds, lua, args.names)
    subprocess.run(["callgrind_control", "-i", "off", str(sy.pid)], capture_output=True, timeout=30)
    subprocess.run(["callgrind_control", "-d", str(sy.pid)], capture_output=True, timeout=30)
    time.sleep(1)
    lb._kill_all()
    time.sleep(1)

    total = 0
    for f in work.glob("cg.out*"):
        for line in f.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    errors = re.findall(r"Non-2xx.*|Socket errors.*", out)
    if n == 0 or total == 0:
        print("no requests or no profile; see", work, file=sys.stderr)
        return 1
    print(f"names={args.names} requests={n} instructions/request={total / n:.0f}"
          + (f" errors={errors}" if errors else ""))
    print(f"profile: {work}/cg.out.* (callgrind_annotate)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
