#!/usr/bin/env python3
"""Load benchmark: switchyard against nginx, HAProxy and Pingora as reverse proxies.

Run it through `bash benches/load/run.sh` from the repo root (that script checks
the tools and builds the release binaries first). Everything happens on
127.0.0.1: an nginx backend answering `200 ok`, then IN TURN each proxy in
front of it (one worker each, keep-alive to the backend), plus the backend
alone as the baseline. Rounds are interleaved (every proxy once, then every
proxy again, ...) so that slow drifts of the machine (other builds, thermal)
spread over all of them instead of biasing one. Each figure is the median over
the rounds.

Per proxy it measures:
  * throughput with wrk (50 connections) and the proxy's CPU time per request
    (utime+stime from /proc/<pid>/stat of the proxy's process tree, delta over
    the measurement, divided by the requests completed);
  * latency p50/p99/p99.9 at fixed rates with oha (--latency-correction, so
    queueing delay is not hidden), reported as added latency over the baseline
    of the same round, and CPU per request at those rates;
  * idle RSS, peak RSS (VmHWM), and the RSS added by 1,000 idle keep-alive
    client connections, each having sent one request and read its response;
  * time from spawn to the first served request (200 answer).

And for switchyard alone, the rotation scenario: CPU per request at saturation
(wrk with a Lua script) with one logical name, against 1,000 distinct logical
names in rotation routed through a 1,000-dentry dtab (so 1,000 bindings are
cached); the growth of CPU per request is the figure (issue 7: at most 1.10x).
Since that /proc figure moves with whatever else the machine runs, the same
growth is then measured in user-space instructions per request with callgrind
(callgrind.py: switchyard under valgrind, 1 name, then 1,000 names), which the
machine's load does not move. It needs valgrind; `--no-instructions` skips it,
and so does `--quick`.

Python 3 standard library only. Every load loop is bounded in count and time,
and every process it starts is killed on exit.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"
SERVICE = "web"  # the Host header; switchyard routes /svc/web through the fs namer

# Everything we started, so that exit (normal, exception or signal) kills it.
_children: list[subprocess.Popen] = []


def _kill_all() -> None:
    for p in list(_children):
        _stop(p)


def _on_signal(signum, _frame):
    _kill_all()
    sys.exit(128 + signum)


def _stop(p: subprocess.Popen) -> None:
    """Stop one child and everything in its process group (nginx workers)."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=5)
    else:
        # The leader is gone; its group may still have workers.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if p in _children:
        _children.remove(p)


def spawn(argv: list[str], log: Path, cwd: Path | None = None, env: dict | None = None) -> subprocess.Popen:
    out = open(log, "ab")
    p = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env=env,
        start_new_session=True,  # own process group: killpg reaches workers
    )
    out.close()
    _children.append(p)
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- /proc ----


def _tree(pid: int) -> list[int]:
    """pid and all its descendants (nginx: master and worker)."""
    parents: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        rest = st[st.rfind(")") + 2 :].split()
        parents.setdefault(int(rest[1]), []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


def cpu_ticks(pid: int) -> int:
    """utime+stime (all threads) of pid's process tree, in clock ticks."""
    user, system = cpu_split(pid)
    return user + system


def cpu_split(pid: int) -> tuple[int, int]:
    """(utime, stime) (all threads) of pid's process tree, in clock ticks: how
    much of a proxy's cost is its own code and how much the kernel's."""
    user = system = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
        except OSError:
            continue
        rest = st[st.rfind(")") + 2 :].split()
        # fields 14 and 15 (utime, stime); rest starts at field 3
        user += int(rest[11])
        system += int(rest[12])
    return user, system


def mem_kb(pid: int, key: str) -> int:
    """Sum of VmRSS or VmHWM (kB) over pid's process tree."""
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


# ----------------------------------------------------------------- HTTP ----

REQUEST = f"GET / HTTP/1.1\r\nHost: {SERVICE}\r\nUser-Agent: loadbench\r\n\r\n".encode()


def read_response(s: socket.socket) -> int:
    """Read one HTTP/1.1 response; return its status code."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the response head")
        buf += chunk
        if len(buf) > 65536:
            raise ConnectionError("response head too large")
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip()
    if b"content-length" in headers:
        need = int(headers[b"content-length"])
        while len(body) < need:
            chunk = s.recv(4096)
            if not chunk:
                raise ConnectionError("closed in the body")
            body += chunk
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        while not body.endswith(b"0\r\n\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                raise ConnectionError("closed in the body")
            body += chunk
    return status


def get_once(port: int, timeout: float = 1.0) -> int:
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(REQUEST)
        return read_response(s)


def wait_first_request(p: subprocess.Popen, port: int, t0: float, limit: float = 10.0) -> float:
    """Poll with a request until one is answered 200; ms since t0."""
    deadline = t0 + limit
    while time.perf_counter() < deadline:
        if p.poll() is not None:
            raise RuntimeError(f"process exited with {p.returncode} before serving")
        try:
            if get_once(port, timeout=0.5) == 200:
                return (time.perf_counter() - t0) * 1000.0
        except (OSError, ValueError, IndexError):
            pass
        time.sleep(0.001)
    raise RuntimeError(f"no 200 answer on port {port} within {limit} s")


def open_idle_connections(port: int, n: int, limit: float = 30.0) -> list[socket.socket]:
    """n keep-alive connections, each having sent one request and read its answer."""
    socks = []
    deadline = time.monotonic() + limit
    for _ in range(n):
        if time.monotonic() > deadline:
            break
        s = socket.create_connection((HOST, port), timeout=2.0)
        socks.append(s)
        s.sendall(REQUEST)
        if read_response(s) != 200:
            break
    return socks


# ---------------------------------------------------------- load tools ----


def run_wrk(port: int, duration: float, conns: int, threads: int, script: list[str] | None = None) -> dict:
    """wrk at saturation; `script` is `[lua_file, arg...]` (the script sets Host)."""
    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{int(duration)}s", "--timeout", "5s"]
    if script:
        argv += ["-s", script[0], f"http://{HOST}:{port}/", "--", *script[1:]]
    else:
        argv += ["-H", f"Host: {SERVICE}", f"http://{HOST}:{port}/"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60).stdout
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m or not rps:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests": int(m.group(1)),
        "rps": float(rps.group(1)),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(x) for x in errs.groups()) if errs else 0,
    }


def run_oha(port: int, rate: int, duration: float, conns: int) -> dict:
    argv = [
        "oha", "-z", f"{int(duration)}s", "-q", str(rate), "-c", str(conns),
        "--latency-correction", "--no-tui", "--output-format", "json",
        "-H", f"Host: {SERVICE}", f"http://{HOST}:{port}/",
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    try:
        j = json.loads(out.stdout)
    except json.JSONDecodeError as e:
        raise RuntimeError(f"cannot parse oha output ({e}):\n{out.stdout[:2000]}\n{out.stderr[:2000]}")
    pct = j["latencyPercentiles"]
    codes = j.get("statusCodeDistribution", {})
    ok = int(codes.get("200", 0))
    return {
        "p50_us": (pct.get("p50") or 0.0) * 1e6,
        "p99_us": (pct.get("p99") or 0.0) * 1e6,
        "p999_us": (pct.get("p99.9") or 0.0) * 1e6,
        # answered 200 per second (oha's requestsPerSec counts errors too)
        "rps": ok / (j["summary"].get("total") or duration),
        "ok": ok,
        "requests": sum(int(v) for v in codes.values()),
        # Requests still in flight when -z ends are aborted "due to deadline":
        # that is how a timed run stops, not a failure of the server.
        "errors": sum(
            int(v) for k, v in j.get("errorDistribution", {}).items() if "deadline" not in k
        ),
    }


# ------------------------------------------------------------ rotation ----

# Logical names of the rotation scenario: `web` (routed by the dtab's base
# dentry) and name-1 .. name-(N-1) (each by its own dentry).
ROTATION_NAMES = 1000

# wrk script: the requests are formatted once, in init; each request takes the
# next Host in turn. Arguments: how many names (1: just `web`).
ROTATION_LUA = """\
local reqs = {}
local i = 0
init = function(args)
  local n = tonumber(args[1]) or 1
  for k = 0, n - 1 do
    local host = "web"
    if k > 0 then host = "name-" .. k end
    reqs[#reqs + 1] = wrk.format("GET", "/", { ["Host"] = host, ["User-Agent"] = "loadbench" })
  end
end
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
"""


def rotation_dtab(names: int) -> str:
    """`names` dentries: the base `/svc` one, then one per rotated name."""
    lines = ["/svc => /#/io.l5d.fs;"]
    lines += [f"/svc/name-{k} => /#/io.l5d.fs/{SERVICE};" for k in range(1, names)]
    return "\n".join(lines) + "\n"


def measure_instructions(args, profiles: Path) -> dict:
    """The rotation's growth in instructions per request (callgrind.py), one
    name against ROTATION_NAMES; or why it was not measured (`skipped`).

    The growth is that of the request path: callgrind.py counts apart the
    metrics upkeep, which runs on a 5-s timer and so costs per second, not per
    request (its share per request under valgrind follows the throughput
    there and the ticks that fall in the window). Both are kept.

    Failures are recorded, not raised: the load figures of the run stand on
    their own. The profiles stay in `profiles` for callgrind_annotate."""
    if args.quick:
        return {"skipped": "--quick"}
    if args.no_instructions:
        return {"skipped": "--no-instructions"}
    lacking = [t for t in ("valgrind", "callgrind_control") if not shutil.which(t)]
    if lacking:
        print(
            f"loadbench: note: {', '.join(lacking)} not installed, so the rotation's instructions per "
            "request are not measured (install valgrind, or pass --no-instructions)",
            file=sys.stderr,
        )
        return {"skipped": "valgrind not installed"}
    # callgrind.py imports this file as `loadbench`; make that this very
    # module (not a second copy), so what it starts is in our _children.
    sys.modules.setdefault("loadbench", sys.modules[__name__])
    import callgrind

    out: dict = {
        "upkeep_period_s": callgrind.UPKEEP_PERIOD_S,
        "warmup_s": args.instr_warmup,
        "seconds_s": args.instr_seconds,
        "profiles": str(profiles),
        "runs": {},
    }
    t0 = time.monotonic()
    for label, names in (("1 name", 1), (f"{ROTATION_NAMES:,} names", ROTATION_NAMES)):
        print(f"loadbench: rotation instructions (callgrind), {label}", file=sys.stderr)
        try:
            r = callgrind.measure(
                args.switchyard, names, args.instr_warmup, args.instr_seconds, profiles, cache_sim=True
            )
        except (callgrind.MeasureError, subprocess.TimeoutExpired, OSError) as e:
            print(f"loadbench:   failed: {e}", file=sys.stderr)
            out["runs"][label] = {
                "path_per_req": None, "instr_per_req": None, "periodic": 0, "ticks": 0, "requests": 0,
                "rps": None, "errors": [], "failed": str(e),
            }
            continue
        out["runs"][label] = {
            k: r[k] for k in ("path_per_req", "instr_per_req", "periodic", "ticks", "requests", "errors", "misses_per_req")
        }
        out["runs"][label]["rps"] = r["requests"] / args.instr_seconds
        print(
            f"loadbench:   {r['path_per_req']:,.0f} instructions/req on the request path "
            f"({r['instr_per_req']:,.0f} with the metrics upkeep) over {r['requests']:,} requests",
            file=sys.stderr,
        )
    out["elapsed_s"] = round(time.monotonic() - t0, 1)
    one, many = out["runs"].values()
    if one["path_per_req"] and many["path_per_req"]:
        out["growth"] = many["path_per_req"] / one["path_per_req"]
        out["growth_all"] = many["instr_per_req"] / one["instr_per_req"]
        verdict = "met" if out["growth"] <= 1.10 else "missed"
        print(
            f"loadbench: rotation instructions per request: 1 name {one['path_per_req']:,.0f}, "
            f"{ROTATION_NAMES:,} names {many['path_per_req']:,.0f}, growth {out['growth']:.3f}× "
            f"(target ≤ 1.10×: {verdict}); with the metrics upkeep {out['growth_all']:.3f}×; "
            f"{out['elapsed_s']:.0f} s",
            file=sys.stderr,
        )
    return out


# ------------------------------------------------------------- targets ----


@dataclass
class Target:
    """One process under test: how to start it and which port it serves."""

    name: str
    argv: list[str]
    port: int
    cwd: Path | None = None
    env: dict | None = None
    # Rotation scenario: only CPU per request at saturation, with this wrk script.
    script: list[str] | None = None


def start_backend(d: Path, log: Path) -> tuple[subprocess.Popen, int]:
    """The backend every measurement forwards to: a one-worker nginx
    answering `200 ok` on a free port of 127.0.0.1, configured in `d`."""
    port = free_port()
    conf = nginx_conf(d, port, None)
    return spawn(["nginx", "-p", str(d), "-c", str(conf)], log), port


def nginx_conf(d: Path, port: int, upstream: int | None) -> Path:
    """One worker; either the backend (`return 200 "ok"`) or a keep-alive proxy."""
    d.mkdir(parents=True, exist_ok=True)
    if upstream is None:
        server = '        location / { return 200 "ok"; }\n'
        up = ""
    else:
        up = (
            "    upstream backend {\n"
            f"        server {HOST}:{upstream};\n"
            "        keepalive 64;\n"
            "        keepalive_requests 1000000;\n"
            "    }\n"
        )
        server = (
            "        location / {\n"
            "            proxy_pass http://backend;\n"
            "            proxy_http_version 1.1;\n"
            '            proxy_set_header Connection "";\n'
            "        }\n"
        )
    conf = d / "nginx.conf"
    conf.write_text(
        "worker_processes 1;\n"
        "worker_rlimit_nofile 16384;\n"
        "daemon off;\n"
        f"pid {d}/nginx.pid;\n"
        f"error_log {d}/error.log warn;\n"
        "events { worker_connections 8192; }\n"
        "http {\n"
        "    access_log off;\n"
        "    keepalive_requests 1000000;\n"
        "    keepalive_timeout 300s;\n"
        f"    client_body_temp_path {d}/body;\n"
        f"    proxy_temp_path {d}/proxy;\n"
        f"{up}"
        "    server {\n"
        f"        listen {HOST}:{port};\n"
        f"{server}"
        "    }\n"
        "}\n"
    )
    return conf


def haproxy_conf(d: Path, port: int, upstream: int) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    conf = d / "haproxy.cfg"
    conf.write_text(
        "global\n"
        "    nbthread 1\n"
        "    maxconn 8192\n"
        "defaults\n"
        "    mode http\n"
        "    option http-keep-alive\n"
        "    http-reuse always\n"
        "    timeout connect 5s\n"
        "    timeout client 300s\n"
        "    timeout server 300s\n"
        "    timeout http-keep-alive 300s\n"
        "frontend fe\n"
        f"    bind {HOST}:{port}\n"
        "    default_backend be\n"
        "backend be\n"
        f"    server s1 {HOST}:{upstream}\n"
    )
    return conf


def switchyard_site(d: Path, port: int, admin: int, upstream: int, dentries: int = 1) -> Path:
    """Linkerd 1 config: dtab /svc => /#/io.l5d.fs (plus name dentries up to
    `dentries`), disco/web lists the backend."""
    (d / "disco").mkdir(parents=True, exist_ok=True)
    (d / "disco" / SERVICE).write_text(f"{HOST} {upstream}\n")
    (d / "routing.dtab").write_text(rotation_dtab(dentries))
    conf = d / "linkerd.yaml"
    conf.write_text(
        "admin:\n"
        f"  ip: {HOST}\n"
        f"  port: {admin}\n"
        "namers:\n"
        "- kind: io.l5d.fs\n"
        "  rootDir: disco\n"
        "routers:\n"
        "- protocol: http\n"
        "  label: bench\n"
        "  interpreter:\n"
        "    kind: io.l5d.fs\n"
        "    dtabFile: routing.dtab\n"
        "  servers:\n"
        f"  - ip: {HOST}\n"
        f"    port: {port}\n"
    )
    return conf


# ---------------------------------------------------------- measurement ----


@dataclass
class Sample:
    """One proxy's figures in one round."""

    start_ms: float = 0.0
    idle_rss_kb: int = 0
    peak_rss_kb: int = 0
    conns_rss_kb: int = 0  # RSS added by the idle connections
    conns_opened: int = 0
    sat: dict = field(default_factory=dict)  # wrk + cpu_us_per_req
    rates: dict = field(default_factory=dict)  # rate -> oha + cpu_us_per_req


def cpu_us(ticks: int) -> float:
    return ticks * 1e6 / CLK_TCK


def measure(t: Target, args, log: Path, existing: subprocess.Popen | None = None) -> Sample:
    s = Sample()
    if existing is None:
        t0 = time.perf_counter()
        p = spawn(t.argv, log, cwd=t.cwd, env=t.env)
        s.start_ms = wait_first_request(p, t.port, t0)
    else:
        p = existing
        wait_first_request(p, t.port, time.perf_counter())
    try:
        time.sleep(0.5)
        s.idle_rss_kb = mem_kb(p.pid, "VmRSS")

        if t.script:
            # Rotation scenario: the warm-up binds every name once.
            run_wrk(t.port, 1, args.connections, args.wrk_threads, t.script)
            (u0, k0) = cpu_split(p.pid)
            w = run_wrk(t.port, args.duration, args.connections, args.wrk_threads, t.script)
            (u1, k1) = cpu_split(p.pid)
            w["cpu_us_per_req"] = cpu_us(u1 - u0 + k1 - k0) / max(w["requests"], 1)
            w["user_us_per_req"] = cpu_us(u1 - u0) / max(w["requests"], 1)
            s.sat = w
            s.peak_rss_kb = mem_kb(p.pid, "VmHWM")
            return s

        # Throughput at saturation, and CPU per request there.
        run_wrk(t.port, 1, args.connections, args.wrk_threads)  # warm-up, 1 s
        (u0, k0) = cpu_split(p.pid)
        w = run_wrk(t.port, args.duration, args.connections, args.wrk_threads)
        (u1, k1) = cpu_split(p.pid)
        w["cpu_us_per_req"] = cpu_us(u1 - u0 + k1 - k0) / max(w["requests"], 1)
        w["user_us_per_req"] = cpu_us(u1 - u0) / max(w["requests"], 1)
        s.sat = w

        # Latency (and CPU per request) at fixed rates.
        for rate in args.rates:
            (u0, k0) = cpu_split(p.pid)
            o = run_oha(t.port, rate, args.duration, args.connections)
            (u1, k1) = cpu_split(p.pid)
            o["cpu_us_per_req"] = cpu_us(u1 - u0 + k1 - k0) / max(o["requests"], 1)
            o["user_us_per_req"] = cpu_us(u1 - u0) / max(o["requests"], 1)
            s.rates[rate] = o

        # Idle keep-alive client connections.
        time.sleep(0.3)
        before = mem_kb(p.pid, "VmRSS")
        socks = open_idle_connections(t.port, args.idle_conns)
        try:
            time.sleep(0.5)
            s.conns_opened = len(socks)
            s.conns_rss_kb = mem_kb(p.pid, "VmRSS") - before
        finally:
            for so in socks:
                so.close()
        s.peak_rss_kb = mem_kb(p.pid, "VmHWM")
    finally:
        if existing is None:
            _stop(p)
    return s


# --------------------------------------------------------------- report ----


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=0):
    if x is None:
        return "–"
    return f"{x:,.{nd}f}"


def ratio(a, b, nd=2):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.{nd}f}×"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def tool_version(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        text = (r.stdout + r.stderr).strip().splitlines()
        return text[0] if text else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def summarize(samples: dict[str, list[Sample]], args) -> dict:
    """Median per figure over the rounds; added latency against the same round's baseline."""
    names = list(samples)
    base = samples.get("baseline", [])
    out = {}
    for n in names:
        ss = samples[n]
        row = {
            "rounds": len(ss),
            "start_ms": med([s.start_ms for s in ss]) if n != "baseline" or ss[0].start_ms else None,
            "idle_rss_mb": med([s.idle_rss_kb / 1024 for s in ss]),
            "peak_rss_mb": med([s.peak_rss_kb / 1024 for s in ss]),
            "conns_rss_mb": med([s.conns_rss_kb / 1024 for s in ss]),
            "conns_opened": min(s.conns_opened for s in ss),
            "rps": med([s.sat["rps"] for s in ss]),
            "cpu_sat": med([s.sat["cpu_us_per_req"] for s in ss]),
            "user_sat": med([s.sat.get("user_us_per_req") for s in ss]),
            "errors_sat": sum(s.sat["non2xx"] + s.sat["socket_errors"] for s in ss),
            "rates": {},
        }
        for rate in args.rates:
            r = {}
            for key in ("p50_us", "p99_us", "p999_us", "rps", "cpu_us_per_req", "user_us_per_req"):
                r[key] = med([s.rates[rate].get(key) for s in ss])
            r["errors"] = sum(s.rates[rate]["errors"] for s in ss)
            r["non200"] = sum(s.rates[rate]["requests"] - s.rates[rate]["ok"] for s in ss)
            for key in ("p50_us", "p99_us", "p999_us"):
                if base and n != "baseline":
                    pairs = [
                        s.rates[rate][key] - b.rates[rate][key] for s, b in zip(ss, base)
                    ]
                    r["added_" + key] = med(pairs)
                else:
                    r["added_" + key] = None
            row["rates"][rate] = r
        out[n] = row
    return out


def summarize_rotation(rot_samples: dict[str, list[Sample]]) -> dict:
    """Median req/s and CPU per request of each rotation run; the growth ratio."""
    out: dict = {"runs": {}}
    for n, ss in rot_samples.items():
        out["runs"][n] = {
            "rps": med([s.sat["rps"] for s in ss]),
            "cpu_sat": med([s.sat["cpu_us_per_req"] for s in ss]),
            "user_sat": med([s.sat.get("user_us_per_req") for s in ss]),
            "peak_rss_mb": med([s.peak_rss_kb / 1024 for s in ss]),
            "errors": sum(s.sat["non2xx"] + s.sat["socket_errors"] for s in ss),
        }
    runs = list(out["runs"].values())
    if len(runs) == 2 and runs[0]["cpu_sat"] and runs[1]["cpu_sat"] is not None:
        out["growth"] = runs[1]["cpu_sat"] / runs[0]["cpu_sat"]
        # Per round too: both runs of a round saw the same machine.
        a, b = rot_samples.values()
        out["growth_rounds"] = [
            y.sat["cpu_us_per_req"] / x.sat["cpu_us_per_req"] for x, y in zip(a, b) if x.sat["cpu_us_per_req"]
        ]
    return out


def upkeep_at_native(rot: dict) -> dict | None:
    """The metrics upkeep per request at the throughput the /proc rotation
    runs reached, from the callgrind runs' cost per tick: a part per sample
    drained (the 1-name run's cost per tick over its samples per tick, its
    one route's part being negligible) and, for the rest, a part per tick
    that is spread over the requests of a period at native throughput.
    An estimate for the report, beside the measured figures; None when a
    figure it needs is missing."""
    ins = rot.get("instructions") or {}
    period = ins.get("upkeep_period_s", 5)
    runs = ins.get("runs") or {}
    if len(runs) != 2 or "growth" not in ins:
        return None
    (n1, one), (nm, many) = runs.items()
    native = {n: (rot["runs"].get(n) or {}).get("rps") for n in runs}
    if not (one["ticks"] and many["ticks"] and one["rps"] and many["rps"] and all(native.values())):
        return None
    per_sample = one["periodic"] / one["ticks"] / (period * one["rps"])
    upkeep = {}
    for n, r in runs.items():
        rest = max(0.0, r["periodic"] / r["ticks"] - per_sample * period * r["rps"])
        upkeep[n] = per_sample + rest / (period * native[n])
    growth = (many["path_per_req"] + upkeep[nm]) / (one["path_per_req"] + upkeep[n1])
    return {"per_sample": per_sample, "upkeep_per_req": upkeep, "growth": growth}


def rotation_report(rot: dict) -> str:
    L = [
        "Rotation: switchyard `--threads 1` saturated by wrk with a Lua script, one logical name "
        f"(`/svc/web`, 1-dentry dtab) against {ROTATION_NAMES:,} logical names in rotation "
        f"(`/svc/web`, `/svc/name-1` … `/svc/name-{ROTATION_NAMES - 1}`, {ROTATION_NAMES:,}-dentry dtab, "
        f"so {ROTATION_NAMES:,} bindings cached):",
        "",
        "| run | throughput (req/s) | CPU µs/req | of which user | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for n, r in rot["runs"].items():
        L.append(
            f"| {n} | {fmt(r['rps'])} | {fmt(r['cpu_sat'], 1)} | {fmt(r.get('user_sat'), 1)} "
            f"| {fmt(r['peak_rss_mb'], 1)} |"
        )
    L.append("")
    if "growth" in rot:
        per = ", ".join(f"{g:.2f}×" for g in rot.get("growth_rounds", []))
        L.append(
            f"CPU per request (/proc) grows {rot['growth']:.2f}× with {ROTATION_NAMES:,} names (per round: {per}); "
            "the target is at most 1.10×. This figure moves with whatever else the machine runs."
        )
        one, many = rot["runs"].values()
        if one.get("user_sat") is not None and many.get("user_sat") is not None:
            L.append(
                f"Of it, user space (switchyard's own code) {fmt(one['user_sat'], 2)} → {fmt(many['user_sat'], 2)} µs, "
                f"the kernel {fmt(one['cpu_sat'] - one['user_sat'], 2)} → {fmt(many['cpu_sat'] - many['user_sat'], 2)} µs."
            )
        L.append("")
    ins = rot.get("instructions")
    if ins and "skipped" in ins:
        L.append(f"Instructions per request (callgrind): not measured ({ins['skipped']}).")
        L.append("")
    elif ins:
        runs = ins["runs"]
        path = ", ".join(f"{n} {fmt(r['path_per_req'])}" for n, r in runs.items())
        if "growth" in ins:
            g = ins["growth"]
            L.append(
                f"Instructions per request: {path}, growth {g:.3f}× "
                f"({'within' if g <= 1.10 else 'above'} the 1.10× target). "
                "This is the figure that the machine's load does not move: it counts the instructions "
                "switchyard executes on the request path (user space, under callgrind; the kernel's share "
                "is not in it), where the /proc figure above counts time and so picks up everything else "
                "the machine runs."
            )
            allc = ", ".join(f"{n} {fmt(r['instr_per_req'])}" for n, r in runs.items())
            period = ins.get("upkeep_period_s", 5)
            up = ", ".join(f"{n} {fmt(r['periodic'] / r['ticks'])}" for n, r in runs.items() if r.get("ticks"))
            rps = ", ".join(f"{n} {fmt(r['rps'])}" for n, r in runs.items())
            L.append("")
            L.append(
                f"With the metrics upkeep counted too: {allc}, growth {ins['growth_all']:.3f}×. The upkeep "
                f"is a task that, every {period} s, drains the exporter's histograms (switchyard counts its "
                f"request durations itself since 7b3f44d, so there is next to nothing to drain): it costs per tick and "
                f"per route (and per sample recorded since the last tick), not per request ({up} "
                f"instructions per tick). Under valgrind switchyard serves only {rps} req/s, so the "
                "per-route part weighs many times more per request there than at native throughput, and "
                "it follows the ticks that fall in the window and that throughput: it is not a steady "
                "per-request figure, and it is left out of the growth above."
            )
            est = ins.get("native_estimate")
            if est:
                L.append(
                    "Estimated at the throughput of the /proc runs above (no valgrind): the upkeep comes to "
                    + ", ".join(f"{n} {fmt(x)}" for n, x in est["upkeep_per_req"].items())
                    + f" instructions per request (about {fmt(est['per_sample'])} to drain the samples each "
                    f"request records, the rest per route), so the growth with it is about {est['growth']:.3f}×."
                )
        else:
            why = "; ".join(r["failed"] for r in runs.values() if r.get("failed"))
            L.append(f"Instructions per request: {path}; no growth figure ({why}).")
        miss = {n: r.get("misses_per_req") or {} for n, r in runs.items()}
        if all("DLmr" in m for m in miss.values()):
            L.append("")
            L.append(
                "Data reads that miss a simulated 512 KB last-level cache (callgrind's cache simulation; one "
                "core's L2 here, where what a request touches of its name's state first spills): "
                + ", ".join(f"{n} {m['DLmr']:.1f}" for n, m in miss.items())
                + " a request. Instructions barely grow with the names; these misses are what does: each is a "
                "wait for memory that /proc counts as user time."
            )
        L.append("")
        L.append(
            f"Measured with benches/load/callgrind.py: switchyard `--threads 1` under valgrind, its own nginx "
            f"backend, wrk with the same rotation script over 10 connections, {ins['warmup_s']} s warm-up "
            f"uncounted, then {ins['seconds_s']} s counted ("
            + ", ".join(f"{n}: {r['requests']:,} requests" for n, r in runs.items())
            + f"); {ins['elapsed_s']:.0f} s for both."
        )
        L.append("")
        errs = {n: r["errors"] for n, r in runs.items() if r.get("errors")}
        if errs:
            L.append("Errors during the callgrind runs: " + "; ".join(f"{n}: {e}" for n, e in errs.items()))
            L.append("")
    errs = {n: r["errors"] for n, r in rot["runs"].items() if r["errors"]}
    if errs:
        L.append("Rotation errors (non-2xx or socket errors): " + ", ".join(f"{n}: {e}" for n, e in errs.items()))
        L.append("")
    return "\n".join(L) + "\n"


def report(summary: dict, meta: dict, args, rot: dict | None = None) -> str:
    L = []
    L.append(f"### Load benchmark — {meta['date']}")
    L.append("")
    L.append(
        f"Machine: {meta['nproc']} cores, {meta['cpu']}, Linux {meta['kernel']}; "
        f"load average {meta['load_before']} before, {meta['load_after']} after."
    )
    if meta.get("note"):
        L.append(meta["note"])
    L.append(
        f"{args.rounds} interleaved rounds × {args.duration:g} s per measurement; medians over rounds. "
        f"Backend: nginx, 1 worker, `return 200 \"ok\"`; every proxy has 1 worker and keeps "
        f"connections to the backend alive. wrk: {args.wrk_threads} thread(s), {args.connections} connections; "
        f"oha: {args.connections} connections, `--latency-correction`."
    )
    L.append(f"Tools: {meta['tools']}.")
    L.append("")
    rates = args.rates
    hi = max(rates)
    L.append(
        f"| proxy | throughput (req/s) | core use (%) | CPU µs/req (saturated) | of which user | CPU µs/req @ {hi:,} rps "
        f"| of which user | idle RSS (MB) | peak RSS (MB) | + {args.idle_conns:,} idle conns (MB) | start → first request (ms) |"
    )
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, r in summary.items():
        use = r["rps"] * r["cpu_sat"] / 1e4 if r["rps"] is not None and r["cpu_sat"] is not None else None
        L.append(
            f"| {n} | {fmt(r['rps'])} | {fmt(use)} | {fmt(r['cpu_sat'], 1)} | {fmt(r['user_sat'], 1)} "
            f"| {fmt(r['rates'][hi]['cpu_us_per_req'], 1)} | {fmt(r['rates'][hi]['user_us_per_req'], 1)} "
            f"| {fmt(r['idle_rss_mb'], 1)} | {fmt(r['peak_rss_mb'], 1)} | {fmt(r['conns_rss_mb'], 1)} "
            f"| {fmt(r['start_ms'], 1)} |"
        )
    L.append("")
    L.append(
        "Core use = throughput × CPU per request: the share of one core the server got while saturated. "
        "Well below 100 % means the machine (its other processes, the load generator, the backend), "
        "not the server, limited the throughput; CPU µs/request is then the figure to compare."
    )
    L.append("")
    L.append(
        "Latency in µs at fixed rates (oha). Baseline: absolute; proxies: added over the baseline "
        "of the same round (absolute in parentheses). Where a server could not keep up with the "
        "rate (achieved < 95 %, marked saturated), its latency is queueing delay, not its own cost."
    )
    L.append("")
    L.append("| proxy | rate (req/s) | achieved | p50 | p99 | p99.9 |")
    L.append("|---|---:|---:|---:|---:|---:|")
    for n, r in summary.items():
        for rate in rates:
            x = r["rates"][rate]
            if n == "baseline":
                cells = [fmt(x["p50_us"]), fmt(x["p99_us"]), fmt(x["p999_us"])]
            else:
                cells = [
                    f"+{fmt(x['added_' + k])} ({fmt(x[k])})" for k in ("p50_us", "p99_us", "p999_us")
                ]
            sat = " (saturated)" if x["rps"] is not None and x["rps"] < 0.95 * rate else ""
            L.append(f"| {n} | {rate:,} | {fmt(x['rps'])}{sat} | " + " | ".join(cells) + " |")
    L.append("")

    sw = summary.get("switchyard")
    peers = [n for n in summary if n not in ("baseline", "switchyard", "switchyard-2t")]
    if sw and peers:
        lo = min(rates)
        L.append("Ratios switchyard / peer (below 1.00× is better for switchyard, except throughput):")
        L.append("")
        # One column of added p50 per rate (one when a single rate was run).
        p50_rates = sorted({lo, hi})
        L.append(
            f"| peer | CPU µs/req saturated | CPU µs/req @ {hi:,} | throughput | "
            + "".join(f"added p50 @ {r:,} | " for r in p50_rates)
            + f"idle RSS | peak RSS | {args.idle_conns:,} conns RSS |"
        )
        L.append("|---|" + "---:|" * (6 + len(p50_rates)))
        for n in peers:
            r = summary[n]
            L.append(
                f"| {n} | {ratio(sw['cpu_sat'], r['cpu_sat'])} "
                f"| {ratio(sw['rates'][hi]['cpu_us_per_req'], r['rates'][hi]['cpu_us_per_req'])} "
                f"| {ratio(sw['rps'], r['rps'])} "
                + "".join(
                    f"| {ratio(sw['rates'][q]['added_p50_us'], r['rates'][q]['added_p50_us'])} " for q in p50_rates
                )
                + f"| {ratio(sw['idle_rss_mb'], r['idle_rss_mb'])} "
                f"| {ratio(sw['peak_rss_mb'], r['peak_rss_mb'])} "
                f"| {ratio(sw['conns_rss_mb'], r['conns_rss_mb'])} |"
            )
        L.append("")
    sw2 = summary.get("switchyard-2t")
    if sw and sw2 and sw["rps"]:
        eff = sw2["rps"] / (2 * sw["rps"])
        L.append(
            f"Scaling: switchyard `--threads 2` {fmt(sw2['rps'])} req/s vs `--threads 1` {fmt(sw['rps'])} req/s: "
            f"efficiency throughput(2)/(2×throughput(1)) = {eff:.2f} "
            f"(on {meta['nproc']} cores shared with the backend and the load generator)."
        )
        L.append("")
    if rot and rot["runs"]:
        L.append(rotation_report(rot))
    if sw:
        L.append(targets_table(summary, args, rot))
    errs = {
        n: (r["errors_sat"], sum(x["errors"] + x["non200"] for x in r["rates"].values()))
        for n, r in summary.items()
    }
    bad = {n: e for n, e in errs.items() if e[0] or e[1]}
    if bad:
        L.append("")
        L.append(
            "Errors (non-200 answers or socket errors, all rounds; wrk / oha): "
            + ", ".join(f"{n}: {a} / {b}" for n, (a, b) in bad.items())
        )
    return "\n".join(L) + "\n"


def targets_table(summary: dict, args, rot: dict | None = None) -> str:
    """The issue's targets for switchyard --threads 1, each with its verdict."""
    sw = summary["switchyard"]
    hi = max(args.rates)
    rows = []

    def check(what, value, limit, ok, unit=""):
        if value is None or limit is None:
            rows.append(f"| {what} | – | – | – |")
            return
        verdict = "met" if ok else f"missed by {fmt(abs(value - limit), 2)}{unit}"
        rows.append(f"| {what} | {fmt(value, 2)}{unit} | {fmt(limit, 2)}{unit} | {verdict} |")

    for peer, label in (("nginx", "nginx"), ("haproxy", "HAProxy")):
        if peer in summary:
            p = summary[peer]
            v, lim = sw["cpu_sat"], p["cpu_sat"]
            check(f"CPU µs/req saturated ≤ 1.0× {label}", v, lim, v is not None and lim is not None and v <= lim, " µs")
            v, lim = sw["rates"][hi]["cpu_us_per_req"], p["rates"][hi]["cpu_us_per_req"]
            check(f"CPU µs/req @ {hi:,} ≤ 1.0× {label}", v, lim, v is not None and lim is not None and v <= lim, " µs")
    if "pingora" in summary:
        p = summary["pingora"]
        v, lim = sw["cpu_sat"], p["cpu_sat"]
        check("CPU µs/req saturated never above Pingora", v, lim, v is not None and lim is not None and v <= lim, " µs")
        v, lim = sw["rates"][hi]["cpu_us_per_req"], p["rates"][hi]["cpu_us_per_req"]
        check(f"CPU µs/req @ {hi:,} never above Pingora", v, lim, v is not None and lim is not None and v <= lim, " µs")
    if "nginx" in summary:
        v, lim = sw["rps"], summary["nginx"]["rps"]
        check("throughput ≥ 1.0× nginx", v, lim, v is not None and lim is not None and v >= lim, " req/s")
    for rate in args.rates:
        v = sw["rates"][rate]["added_p50_us"]
        check(f"added p50 @ {rate:,} ≤ 100 µs", v, 100.0, v is not None and v <= 100.0, " µs")
    check("peak RSS ≤ 20 MB", sw["peak_rss_mb"], 20.0, sw["peak_rss_mb"] is not None and sw["peak_rss_mb"] <= 20.0, " MB")
    check("idle RSS ≤ 10 MB", sw["idle_rss_mb"], 10.0, sw["idle_rss_mb"] is not None and sw["idle_rss_mb"] <= 10.0, " MB")
    check(
        f"{args.idle_conns:,} idle connections add ≤ 10 MB"
        + ("" if args.idle_conns == 1000 else " (the target is for 1,000)"),
        sw["conns_rss_mb"],
        10.0,
        sw["conns_rss_mb"] is not None and sw["conns_rss_mb"] <= 10.0, " MB",
    )
    check("start → first request ≤ 50 ms", sw["start_ms"], 50.0, sw["start_ms"] is not None and sw["start_ms"] <= 50.0, " ms")
    if rot and "growth" in rot:
        g = rot["growth"]
        check(f"CPU/req growth with {ROTATION_NAMES:,} names ≤ 1.10× (/proc)", g, 1.10, g <= 1.10, "×")
    ins = (rot or {}).get("instructions") or {}
    if "growth" in ins:
        g = ins["growth"]
        rows.append(
            f"| instructions/req growth with {ROTATION_NAMES:,} names ≤ 1.10× (callgrind, request path) "
            f"| {g:.3f}× | 1.10× | {'met' if g <= 1.10 else f'missed by {g - 1.10:.3f}×'} |"
        )
    head = "Targets (issue 7) for switchyard `--threads 1`:\n\n| target | switchyard | limit | verdict |\n|---|---:|---:|---|\n"
    return head + "\n".join(rows) + "\n"


# ----------------------------------------------------------------- main ----

ALL = ["switchyard", "nginx", "haproxy", "pingora"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per measurement (default 10)")
    ap.add_argument("--rates", default="2000,10000", help="fixed rates for latency, req/s (default 2000,10000)")
    ap.add_argument("--connections", type=int, default=50, help="client connections for wrk and oha (default 50)")
    ap.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1)")
    ap.add_argument("--idle-conns", type=int, default=1000, help="idle keep-alive connections (default 1000)")
    ap.add_argument("--proxies", default=",".join(ALL), help=f"comma list out of {','.join(ALL)}")
    ap.add_argument("--scaling", action="store_true", help="also run switchyard --threads 2")
    ap.add_argument(
        "--no-rotation", action="store_true",
        help="skip the rotation scenario (switchyard, 1 vs 1,000 logical names)",
    )
    ap.add_argument(
        "--no-instructions", action="store_true",
        help="skip the rotation's instructions per request (callgrind; needs valgrind)",
    )
    ap.add_argument("--instr-warmup", type=int, default=4, help="callgrind: seconds of uncounted warm-up (default 4)")
    ap.add_argument("--instr-seconds", type=int, default=6, help="callgrind: seconds counted (default 6)")
    ap.add_argument("--quick", action="store_true", help="1 round × 2 s, 100 idle conns: a smoke test")
    ap.add_argument("--out", default=str(REPO / "target" / "loadbench"), help="results directory")
    ap.add_argument("--switchyard", default=str(REPO / "target" / "release" / "switchyard"))
    ap.add_argument(
        "--pingora-peer",
        default=str(REPO / "benches" / "pingora-peer" / "target" / "release" / "pingora-peer"),
    )
    ap.add_argument("--note", default="", help="a line added under the machine line (e.g. other load)")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.duration, args.idle_conns = 1, 2.0, min(args.idle_conns, 100)
    args.rates = [int(x) for x in args.rates.split(",") if x.strip()]
    proxies = [x.strip() for x in args.proxies.split(",") if x.strip()]
    for x in proxies:
        if x not in ALL:
            ap.error(f"unknown proxy {x!r}; known: {', '.join(ALL)}")
    if args.rounds < 1 or args.duration < 1 or not args.rates:
        ap.error("need rounds >= 1, duration >= 1 and at least one rate")
    if args.instr_warmup < 1 or args.instr_seconds < 1:
        ap.error("need --instr-warmup >= 1 and --instr-seconds >= 1")

    missing = [t for t in ("nginx", "wrk", "oha") if not shutil.which(t)]
    if "haproxy" in proxies and not shutil.which("haproxy"):
        missing.append("haproxy")
    if "switchyard" in proxies and not os.access(args.switchyard, os.X_OK):
        missing.append(f"switchyard binary {args.switchyard} (cargo build --release)")
    if "pingora" in proxies and not os.access(args.pingora_peer, os.X_OK):
        missing.append(f"pingora peer {args.pingora_peer} (cd benches/pingora-peer && cargo build --release)")
    if missing:
        print("loadbench: missing: " + "; ".join(missing), file=sys.stderr)
        print("loadbench: run `bash benches/load/setup.sh` as root to install the tools", file=sys.stderr)
        return 1

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.idle_conns + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(want, soft), hard), hard))

    atexit.register(_kill_all)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="loadbench-"))
    logs = work / "logs"
    logs.mkdir()
    print(f"loadbench: work dir {work}", file=sys.stderr)

    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])

    # The backend lives for the whole run; every proxy forwards to it.
    backend, backend_port = start_backend(work / "backend", logs / "backend.log")
    t0 = time.perf_counter()
    backend_start = wait_first_request(backend, backend_port, t0)

    targets: list[Target] = []
    for name in proxies + (["switchyard-2t"] if args.scaling and "switchyard" in proxies else []):
        port = free_port()
        d = work / name
        if name in ("switchyard", "switchyard-2t"):
            conf = switchyard_site(d, port, free_port(), backend_port)
            threads = "2" if name == "switchyard-2t" else "1"
            env = dict(os.environ)
            env.setdefault("RUST_LOG", "info")
            targets.append(Target(name, [args.switchyard, "run", "-c", str(conf), "--threads", threads], port, d, env))
        elif name == "nginx":
            conf = nginx_conf(d, port, backend_port)
            targets.append(Target(name, ["nginx", "-p", str(d), "-c", str(conf)], port))
        elif name == "haproxy":
            conf = haproxy_conf(d, port, backend_port)
            targets.append(Target(name, ["haproxy", "-db", "-f", str(conf)], port))
        elif name == "pingora":
            d.mkdir(parents=True, exist_ok=True)
            targets.append(Target(name, [args.pingora_peer, f"{HOST}:{port}", f"{HOST}:{backend_port}", str(d)], port))

    # Rotation scenario: the same switchyard, wrk with a Lua script naming one
    # logical name, or 1,000 of them over a 1,000-dentry dtab.
    rotation: list[Target] = []
    if "switchyard" in proxies and not args.no_rotation:
        lua = work / "rotation.lua"
        lua.write_text(ROTATION_LUA)
        for name, names in (("1 name", 1), (f"{ROTATION_NAMES:,} names", ROTATION_NAMES)):
            port = free_port()
            d = work / f"rotation-{names}"
            conf = switchyard_site(d, port, free_port(), backend_port, dentries=names)
            env = dict(os.environ)
            env.setdefault("RUST_LOG", "info")
            rotation.append(
                Target(name, [args.switchyard, "run", "-c", str(conf), "--threads", "1"], port, d, env,
                       script=[str(lua), str(names)])
            )

    samples: dict[str, list[Sample]] = {"baseline": []}
    for t in targets:
        samples[t.name] = []
    rot_samples: dict[str, list[Sample]] = {t.name: [] for t in rotation}
    t_start = time.monotonic()
    for rnd in range(1, args.rounds + 1):
        # Baseline first in each round, then the proxies in a rotating order.
        order = targets[(rnd - 1) % len(targets):] + targets[: (rnd - 1) % len(targets)] if targets else []
        print(f"loadbench: round {rnd}/{args.rounds}: baseline", file=sys.stderr)
        bt = Target("baseline", [], backend_port)
        s = measure(bt, args, logs / "baseline.log", existing=backend)
        s.start_ms = backend_start
        samples["baseline"].append(s)
        for t in order:
            print(f"loadbench: round {rnd}/{args.rounds}: {t.name}", file=sys.stderr)
            samples[t.name].append(measure(t, args, logs / f"{t.name}.log"))
            sw = samples[t.name][-1]
            print(
                f"loadbench:   {sw.sat['rps']:.0f} req/s, {sw.sat['cpu_us_per_req']:.1f} CPU-µs/req, "
                f"start {sw.start_ms:.1f} ms, idle {sw.idle_rss_kb / 1024:.1f} MB, peak {sw.peak_rss_kb / 1024:.1f} MB",
                file=sys.stderr,
            )
        # Alternate which of the two goes first.
        for t in rotation if rnd % 2 else rotation[::-1]:
            print(f"loadbench: round {rnd}/{args.rounds}: rotation, {t.name}", file=sys.stderr)
            rs = measure(t, args, logs / f"rotation-{t.script[1] if t.script else 0}.log")
            rot_samples[t.name].append(rs)
            print(
                f"loadbench:   {rs.sat['rps']:.0f} req/s, {rs.sat['cpu_us_per_req']:.1f} CPU-µs/req",
                file=sys.stderr,
            )
    _stop(backend)
    instructions = measure_instructions(args, out_dir / "callgrind") if rotation else None
    elapsed = time.monotonic() - t_start

    meta = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "kernel": platform.release(),
        "load_before": load_before,
        "load_after": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "elapsed_s": round(elapsed),
        "note": args.note,
        "tools": ", ".join(
            [
                tool_version(["nginx", "-v"]),
                tool_version(["haproxy", "-v"]),
                tool_version(["wrk", "-v"]),
                tool_version(["oha", "--version"]),
                "pingora 0.9",
                "switchyard " + tool_version(["git", "-C", str(REPO), "describe", "--always", "--dirty"]),
            ]
        ),
    }
    summary = summarize(samples, args)
    rot = summarize_rotation(rot_samples)
    if instructions is not None:
        rot["instructions"] = instructions
        est = upkeep_at_native(rot)
        if est:
            instructions["native_estimate"] = est
    md = report(summary, meta, args, rot)
    (out_dir / "results.md").write_text(md)
    raw = {
        "meta": meta,
        "args": {k: v for k, v in vars(args).items()},
        "summary": summary,
        "rotation": rot,
        "samples": {n: [vars(s) for s in ss] for n, ss in samples.items()},
        "rotation_samples": {n: [vars(s) for s in ss] for n, ss in rot_samples.items()},
    }
    (out_dir / "results.json").write_text(json.dumps(raw, indent=1, default=str))
    print(md)
    print(f"loadbench: wrote {out_dir / 'results.md'} and results.json ({round(elapsed)} s)", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
