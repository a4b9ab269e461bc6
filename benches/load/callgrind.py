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

loadbench.py calls `instructions_per_request` for its rotation section.
"""

from __future__ import annotations

import argparse
import atexit
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# When loadbench.py runs as the script and imports this module, it registers
# itself as `loadbench` first, so both share one list of started processes
# (and its exit and signal handlers reach what is started here).
import loadbench as lb  # noqa: E402

# Bounds of the steps that have no natural end of their own, in seconds.
START_LIMIT = 60.0  # valgrind takes a few seconds to start the binary
CONTROL_LIMIT = 30.0  # one callgrind_control call

# Work done on a timer, not per request: the metrics upkeep task drains the
# exporter's histograms every 5 s (until 7b3f44d it drained every route's
# request durations; they are now counted in place by the proxy, and the
# task finds next to nothing). Its instructions in a counted window depend on
# how many ticks fall in it and how many routes exist, and its share per
# request on the throughput under valgrind (~2k req/s, not ~30k natively), so
# it is counted apart from the request path. The first of these functions
# found is counted (the second is what the first calls, should the first be
# inlined away).
UPKEEP_PERIOD_S = 5
PERIODIC = (
    "switchyard::telemetry::metrics::install::{{closure}}",
    "metrics_exporter_prometheus::recorder::Inner::drain_histograms_to_distributions",
)


class MeasureError(RuntimeError):
    """The measurement produced no figure; the message says where to look."""


def wrk(port: int, seconds: int, lua: Path, names: int) -> tuple[int, str]:
    out = subprocess.run(
        ["wrk", "-t1", "-c10", f"-d{seconds}s", "-s", str(lua),
         f"http://127.0.0.1:{port}/", "--", str(names)],
        capture_output=True, text=True, timeout=seconds + 60,
    ).stdout
    m = re.search(r"(\d+) requests in", out)
    return (int(m.group(1)) if m else 0), out


def oha_at(port: int, seconds: int, rate: int) -> tuple[int, str]:
    """`seconds` of requests at a fixed `rate` (oha, 10 connections, `Host:
    web`): requests answered 200, and oha's report."""
    out = subprocess.run(
        ["oha", "-z", f"{seconds}s", "-q", str(rate), "-c", "10", "--no-tui",
         "--output-format", "json", "-H", f"Host: {lb.SERVICE}", f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, timeout=seconds + 60,
    ).stdout
    try:
        codes = json.loads(out).get("statusCodeDistribution", {})
    except json.JSONDecodeError:
        return 0, out
    return int(codes.get("200", 0)), out


def _control(*argv: str) -> None:
    subprocess.run(["callgrind_control", *argv], capture_output=True, timeout=CONTROL_LIMIT)


def periodic_cost(profile: Path) -> tuple[int, int]:
    """(inclusive instructions, calls) of the timer-driven work (the first
    PERIODIC function that was called) in one callgrind output file; each
    call is one tick. Read from the callers' `calls=` lines, whose next line
    holds the inclusive cost of those calls; (0, 0) when none of it ran."""
    names: dict[str, str] = {}  # compressed id -> function name
    found = {p: [0, 0] for p in PERIODIC}
    callee = None
    take_cost = None
    try:
        text = profile.read_text(errors="replace")
    except OSError:
        return 0, 0
    for line in text.splitlines():
        if take_cost is not None:
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                found[take_cost][0] += int(parts[1])
            take_cost = None
            continue
        m = re.match(r"(c?)fn=(?:\((\d+)\))? ?(.*)$", line)
        if m:
            ident, name = m.group(2), m.group(3)
            if ident and name:
                names[ident] = name
            elif ident:
                name = names.get(ident, "")
            if m.group(1):
                callee = name
            continue
        if line.startswith("calls=") and callee in found:
            count = line[len("calls="):].split()
            if count and count[0].isdigit():
                found[callee][1] += int(count[0])
                take_cost = callee
    return next(((i, c) for i, c in found.values() if c), (0, 0))


def measure(
    binary: str | Path, names: int, warmup: int, seconds: int, work: str | Path, rate: int | None = None,
    locked: bool = False, cache_sim: bool = False,
) -> dict:
    """One callgrind measurement; a dict with `instr_per_req`, `requests`,
    `instructions` (all counted), `periodic` (of which the timer-driven
    upkeep, PERIODIC), `ticks` (its runs), `path_per_req` (the request path: all but the upkeep,
    per request), `errors` (wrk's non-2xx and socket error lines) and
    `profile` (the directory of the cg.out files).

    Everything it starts is stopped before it returns or raises, and only
    that: a caller's own processes (loadbench's backend) are left alone.
    Raises MeasureError when switchyard does not answer or no profile or
    request was counted. With `rate`, the counted window is oha at that
    fixed rate on one name instead of wrk saturating the proxy: what a
    request costs when requests come apart, wake-ups included. With
    `locked`, the profile is per instruction and `locked_per_req` counts
    the atomic read-modify-writes (see `locked_instructions`). With
    `cache_sim`, callgrind simulates the caches with a 512 KB last level
    (one core's L2 on this machine's EPYC, where a working set that grows
    with the routes first spills) and `misses_per_req` gives the data reads
    and writes that missed the first level and the last one, per request."""
    work = Path(work) / f"names{names}"
    (work / "be").mkdir(parents=True, exist_ok=True)
    for old in work.glob("cg.out*"):
        old.unlink()
    started: list = []
    try:
        be, bport = lb.start_backend(work / "be", work / "be.log")
        started.append(be)
        port, admin = lb.free_port(), lb.free_port()
        site = work / "sy"
        site.mkdir(exist_ok=True)
        conf = lb.switchyard_site(site, port, admin, bport, dentries=names)
        per_instr = ["--dump-instr=yes", "--compress-pos=no", "--compress-strings=no"] if locked else []
        if cache_sim:
            per_instr += ["--cache-sim=yes", "--LL=524288,8,64"]
        sy = lb.spawn(["valgrind", "--tool=callgrind", "--instr-atstart=no", *per_instr,
                       f"--callgrind-out-file={work}/cg.out",
                       str(Path(binary).resolve()), "run", "-c", str(conf), "--threads", "1"],
                      work / "sy.log", cwd=site)
        started.append(sy)
        lua = work / "rotation.lua"
        lua.write_text(lb.ROTATION_LUA)
        deadline = time.monotonic() + START_LIMIT
        while True:
            if sy.poll() is not None:
                raise MeasureError(f"switchyard under valgrind exited with {sy.returncode}; see {work / 'sy.log'}")
            try:
                if lb.get_once(port, 2.0) == 200:
                    break
            except (OSError, ValueError, IndexError):
                pass
            if time.monotonic() > deadline:
                raise MeasureError(f"switchyard did not answer within {START_LIMIT:.0f} s; see {work / 'sy.log'}")
            time.sleep(0.2)

        wrk(port, warmup, lua, names)
        _control("-i", "on", str(sy.pid))
        if rate:
            n, out = oha_at(port, seconds, rate)
        else:
            n, out = wrk(port, seconds, lua, names)
        _control("-i", "off", str(sy.pid))
        _control("-d", str(sy.pid))
        time.sleep(1)
    finally:
        for p in started:
            lb._stop(p)
    time.sleep(0.5)

    total = periodic = ticks = 0
    events: list[str] = []
    sums: dict[str, int] = {}
    for f in work.glob("cg.out*"):
        here = 0
        counts: list[int] = []
        for line in f.read_text(errors="replace").splitlines():
            if line.startswith("events:"):
                events = line.split()[1:]
            if line.startswith(("summary:", "totals:")):
                fields = [int(x) for x in line.split()[1:]]
                if fields and fields[0] > here:
                    here, counts = fields[0], fields
        for ev, c in zip(events, counts):
            sums[ev] = sums.get(ev, 0) + c
        if here:
            i, c = periodic_cost(f)
            periodic, ticks = periodic + i, ticks + c
        total += here
    if n == 0 or total == 0:
        raise MeasureError(f"no requests ({n}) or no profile ({total} instructions); see {work}")
    locks = locked_instructions(work) if locked else None
    return {
        "locked_per_req": locks and locks[0] / n,
        "misses_per_req": {ev: c / n for ev, c in sums.items() if ev in ("D1mr", "D1mw", "DLmr", "DLmw")},
        "locked_by_fn": locks and [(c / n, fn) for c, fn in locks[1]],
        "instr_per_req": total / n,
        "requests": n,
        "instructions": total,
        "periodic": periodic,
        "ticks": ticks,
        "path_per_req": (total - periodic) / n,
        "errors": re.findall(r"Non-2xx.*|Socket errors.*", out),
        "profile": str(work),
    }


def _locked_addresses(obj: str) -> set[int]:
    """Addresses (as objdump shows them) of `obj`'s instructions that are
    atomic read-modify-writes on x86-64: `lock`-prefixed ones and `xchg`
    with memory (locked without the prefix)."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", obj],
                         capture_output=True, text=True, timeout=300).stdout
    found = set()
    for line in out.splitlines():
        m = re.match(r"^\s+([0-9a-f]+):\s+(lock\b|xchg\s+%\w+,(-?0x[0-9a-f]+)?\()", line)
        if m:
            found.add(int(m.group(1), 16))
    return found


def locked_instructions(work: Path) -> tuple[int, list[tuple[int, str]]]:
    """(atomic read-modify-writes executed, the 25 functions executing most)
    in a per-instruction profile (`--dump-instr=yes --compress-pos=no
    --compress-strings=no`). An uncontended one costs about 5 ns on this
    VM, and far more when its cache line went cold while the request
    waited for its endpoint: what nginx, one thread per worker, mostly
    does not pay.

    callgrind gives run-time addresses; each object's load offset is the
    one that puts most of its executed addresses on instruction starts."""
    counts: dict[tuple[str, int], int] = {}
    fn_of: dict[tuple[str, int], str] = {}
    for f in work.glob("cg.out.*"):
        ob = fn = ""
        after_call = False
        for line in f.read_text(errors="replace").splitlines():
            if line.startswith("ob="):
                ob = line[3:]
            elif line.startswith("fn="):
                fn = line[3:]
            elif line.startswith("calls="):
                after_call = True  # the next cost line is the call's inclusive cost
            elif line.startswith("0x"):
                if after_call:
                    after_call = False
                    continue
                parts = line.split()
                if len(parts) >= 3:
                    key = (ob, int(parts[0], 16))
                    counts[key] = counts.get(key, 0) + int(parts[2])
                    fn_of[key] = fn
            else:
                after_call = False
    total = 0
    by_fn: dict[str, int] = {}
    for ob in {o for o, _ in counts}:
        if not ob.startswith("/"):
            continue
        locks = _locked_addresses(ob)
        if not locks:
            continue
        executed = {a for o, a in counts if o == ob}
        votes: dict[int, int] = {}
        sample = sorted(locks)[:: max(1, len(locks) // 200)]
        for a in executed:
            for l in sample:
                if (a & 0xFFF) == (l & 0xFFF):
                    votes[a - l] = votes.get(a - l, 0) + 1
        best = max(votes, key=lambda b: sum(1 for l in locks if l + b in executed), default=0) if votes else 0
        for (o, a), c in counts.items():
            if o == ob and a - best in locks:
                total += c
                by_fn[fn_of[(o, a)]] = by_fn.get(fn_of[(o, a)], 0) + c
    top = sorted(((c, fn) for fn, c in by_fn.items()), reverse=True)[:25]
    return total, top


def instructions_per_request(
    binary: str | Path, names: int, warmup: int, seconds: int, work: str | Path
) -> tuple[float, int]:
    """(user-space instructions per request, requests measured) of `binary`
    on `--threads 1` with `names` logical names in rotation (and as many
    dentries): `warmup` seconds of wrk uncounted, then `seconds` counted.
    The profile is left in `work`/names<N>/ for callgrind_annotate."""
    r = measure(binary, names, warmup, seconds, work)
    return r["instr_per_req"], r["requests"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--switchyard", required=True, help="the release binary to profile")
    ap.add_argument("--names", type=int, default=1, help="logical names in rotation (and dentries)")
    ap.add_argument("--warmup", type=int, default=8, help="seconds of wrk before measuring")
    ap.add_argument("--seconds", type=int, default=10, help="seconds of measured wrk")
    ap.add_argument("--work", default="/tmp/switchyard-callgrind", help="scratch directory")
    ap.add_argument("--rate", type=int, help="measure oha at this fixed rate (req/s) instead of wrk saturating")
    ap.add_argument("--cache-sim", action="store_true",
                    help="also simulate the caches (512 KB last level) and count data misses per request")
    ap.add_argument("--locked", action="store_true",
                    help="also count atomic read-modify-writes (lock-prefixed instructions) per request")
    args = ap.parse_args()

    atexit.register(lb._kill_all)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lb._on_signal)
    try:
        r = measure(args.switchyard, args.names, args.warmup, args.seconds, args.work, args.rate, args.locked, args.cache_sim)
    except MeasureError as e:
        print(e, file=sys.stderr)
        return 1
    print(f"names={args.names} requests={r['requests']} instructions/request={r['instr_per_req']:.0f}"
          + (f" errors={r['errors']}" if r["errors"] else ""))
    print(f"request path (without the {r['periodic']:,} instructions of the 5-s metrics upkeep, "
          f"{r['ticks']} ticks): "
          f"instructions/request={r['path_per_req']:.0f}")
    if args.locked:
        print(f"atomic read-modify-writes/request={r['locked_per_req']:.1f} (upkeep included); most in:")
        for per, fn in r["locked_by_fn"]:
            print(f"  {per:6.2f} {fn[:120]}")
    if args.cache_sim:
        print("data misses/request (D1: first level, DL: a 512 KB last level; r read, w write): "
              + ", ".join(f"{ev} {v:.1f}" for ev, v in r["misses_per_req"].items()))
    print(f"profile: {r['profile']}/cg.out.* (callgrind_annotate)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
