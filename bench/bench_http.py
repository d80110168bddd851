"""HTTP benchmark: ``aftershock generate --engine http`` and autocannon, at once, against one
HTTP echo server (Node's ``http`` module, ``bench/http_echo.js``) at the same offered rate.

Each round starts both tools together: ``--users`` keep-alive connections each, ``--rate``
requests/s in all (POST of ``--body-bytes`` bytes, answered with the same bytes) for
``--duration-s``; aftershock publishes every event to Kafka (embedded broker) unless
``--events none``. Each tool's own CPU is read over the same ``--window-s`` steady window after
``--warmup-s``. Per tool: achieved rate (answers/s over the run), p99 latency, timeouts, CPU per
request (window CPU / the requests the achieved rate puts in the window); then the medians
over ``--rounds`` rounds and the median ratio of CPU per request.

``--client`` puts another of ours beside autocannon in the same way: ``floor-epoll`` or
``floor-uvloop``, the bare client of ``bench/http_floor.py`` (the I/O of each request and
nothing else, on Python's epoll or on the HTTP engine's own uvloop and llhttp; ``floor-uvloop``
also publishes each request's two events unless ``--events none``). What it costs per request
is the floor under the HTTP engine: what a Python generator pays before stamping, checking,
tracing or keeping time for a request.

autocannon (npm ``autocannon@9``) is installed on first use with
``npm install --prefix .aftershock/bench/node``. ``python -m bench http``; ``--help`` for the
options.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench import run_stoppable
from spine.settings import Settings
from spine.stack import EmbeddedStack

ROOT = Path(__file__).resolve().parent.parent
NODE_PREFIX = ROOT / ".aftershock" / "bench" / "node"
AUTOCANNON = NODE_PREFIX / "node_modules" / "autocannon" / "autocannon.js"


@dataclass(frozen=True)
class Figures:
    answers: int
    duration_s: float
    p99_ms: float | None
    timeouts: int
    cpu_s: float
    """CPU-s (user + system) in the window."""
    note: str = ""

    def rate(self) -> float:
        return self.answers / self.duration_s

    def cpu_us_per_request(self, offered: float, window_s: float) -> float:
        """CPU in the window per request answered in it (a shortfall against the offered rate
        counts against the tool)."""
        in_window = window_s * min(offered, self.rate())
        return self.cpu_s / in_window * 1e6 if in_window else float("inf")


def start_server() -> tuple[subprocess.Popen[bytes], int]:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node (Node.js) is needed for the echo server and autocannon")
    port_file = Path(tempfile.mkdtemp()) / "port"
    proc = subprocess.Popen([node, str(ROOT / "bench" / "http_echo.js"), str(port_file)])
    deadline = time.monotonic() + 20
    while not (port_file.exists() and port_file.read_text()):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("HTTP echo server did not start")
        time.sleep(0.05)
    return proc, int(port_file.read_text())


def ensure_autocannon() -> Path:
    if not AUTOCANNON.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is needed to install autocannon")
        prefix = str(NODE_PREFIX)
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", prefix, "autocannon@9"],
            check=True,
        )
    return AUTOCANNON


def start_aftershock(
    port: int, args: argparse.Namespace, kafka: str, topic: str
) -> subprocess.Popen[str]:
    tmp = Path(tempfile.mkdtemp())
    (tmp / "run.yaml").write_text(
        f"""targets:
  - {{name: echo, upstream: "127.0.0.1:{port}", protocol: http, path: /echo}}
load:
  - target: echo
    duration_s: {args.duration_s}
    ramp: {{shape: constant}}
    tenants: [{{name: t1, users: {args.users}}}]
    http_mix: [{{name: echo, method: POST, path: /echo}}]
    script:
      - do: connect
      - do: send
        rate_per_s: {args.rate / args.users}
        expect: response
        timeout_ms: 5000
        size: {{dist: fixed, bytes: {args.body_bytes}}}
"""
    )
    events = ["--kafka-bootstrap", kafka] if args.events == "kafka" else ["--events", "none"]
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aftershock.cli.main",
            "generate",
            "run.yaml",
            "--engine",
            "http",
            *events,
            "--quiet",
            "--trace-every",
            "0",
            "--tick-ms",
            str(args.tick_ms),
        ],
        cwd=tmp,
        env={**os.environ, "AFTERSHOCK_TOPIC_EVENTS": topic, "AFTERSHOCK_OTEL_EXPORTER": "none"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def start_floor(
    port: int, args: argparse.Namespace, kafka: str, topic: str
) -> subprocess.Popen[str]:
    """The bare client of ``bench/http_floor.py``: the I/O of each request and, given
    ``kafka``, its two events published."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.http_floor",
            "--port",
            str(port),
            "--users",
            str(args.users),
            "--rate",
            str(args.rate),
            "--duration-s",
            str(args.duration_s),
            "--body-bytes",
            str(args.body_bytes),
            "--tick-ms",
            str(args.tick_ms),
            "--loop",
            args.client.removeprefix("floor-"),
            *(["--kafka", kafka, "--topic", topic] if kafka else []),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def start_ours(
    port: int, args: argparse.Namespace, kafka: str, topic: str
) -> subprocess.Popen[str]:
    if args.client == "generate":
        return start_aftershock(port, args, kafka, topic)
    return start_floor(port, args, kafka, topic)


def start_autocannon(exe: Path, port: int, args: argparse.Namespace) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            "node",
            str(exe),
            "--json",
            "-c",
            str(args.users),
            "-R",
            str(int(args.rate)),
            "-d",
            str(int(args.duration_s)),
            "-t",
            "5",
            "-m",
            "POST",
            "-H",
            "content-type=text/plain",
            "-b",
            "x" * args.body_bytes,
            f"http://127.0.0.1:{port}/echo",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def cpu_s(proc: subprocess.Popen[str]) -> float:
    times = psutil.Process(proc.pid).cpu_times()
    return times.user + times.system


def measure(
    procs: list[subprocess.Popen[str]], args: argparse.Namespace
) -> list[tuple[float, str]]:
    """(CPU-s of each process in the same window, its output once done); every process is
    stopped if this benchmark is."""
    try:
        time.sleep(args.warmup_s)
        c0 = [cpu_s(p) for p in procs]
        time.sleep(args.window_s)
        c1 = [cpu_s(p) for p in procs]
        outs = [p.communicate(timeout=args.duration_s + 60)[0] for p in procs]
    except BaseException:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        raise
    return [(b - a, out) for a, b, out in zip(c0, c1, outs, strict=True)]


def ours(out: str, cpu: float, duration_s: float) -> Figures:
    if out.startswith("{"):  # the bare client's one JSON line
        floor = json.loads(out)
        return Figures(
            answers=floor["answers"],
            duration_s=duration_s,
            p99_ms=floor["p99_ms"],
            timeouts=floor["timeouts"],
            cpu_s=cpu,
            note=f"skipped={floor['skipped']}" if floor["skipped"] else "",
        )
    final = next((ln for ln in out.splitlines() if "final:" in ln), "")
    recv = re.search(r"recv=(\d+)", final)
    if recv is None:
        raise RuntimeError(f"no final line from aftershock generate:\n{out[-3000:]}")
    p99 = re.search(r"p99=([\d.]+)ms", final)
    timeouts = re.search(r"timeouts=(\d+)", final)
    behind = final[final.index("GENERATOR BEHIND") :] if "GENERATOR BEHIND" in final else ""
    busy = re.search(r"busy-skipped=(\d+)", final)
    note = " ".join(x for x in (behind, f"busy-skipped={busy.group(1)}" if busy else "") if x)
    return Figures(
        answers=int(recv.group(1)),
        duration_s=duration_s,
        p99_ms=float(p99.group(1)) if p99 else None,
        timeouts=int(timeouts.group(1)) if timeouts else 0,
        cpu_s=cpu,
        note=note,
    )


def theirs(out: str, cpu: float) -> Figures:
    try:
        result = json.loads(out[out.index("{") :])
    except ValueError as exc:
        raise RuntimeError(f"no JSON from autocannon:\n{out[-3000:]}") from exc
    return Figures(
        answers=int(result["requests"]["total"]),
        duration_s=float(result["duration"]),
        p99_ms=float(result["latency"]["p99"]),
        timeouts=int(result["timeouts"]),
        cpu_s=cpu,
        note=f"errors={result['errors']} non2xx={result['non2xx']}",
    )


def show(name: str, f: Figures, args: argparse.Namespace) -> str:
    p99 = f"{f.p99_ms:.1f} ms" if f.p99_ms is not None else "-"
    return (
        f"{name} {f.rate():.0f} req/s ({f.rate() / args.rate:.1%} of offered), p99 {p99}, "
        f"timeouts {f.timeouts}, {f.cpu_s:.2f} CPU-s = "
        f"{f.cpu_us_per_request(args.rate, args.window_s):.1f} µs/request"
        + (f" [{f.note}]" if f.note else "")
    )


def compare(port: int, args: argparse.Namespace, kafka: str, topic: str) -> None:
    exe = ensure_autocannon()
    how = "one after the other" if args.apart else "at the same time"
    print(
        f"[http] {args.users} connections each, {args.rate:g} req/s offered in all, "
        f"{args.duration_s:g} s, {how}; CPU over a {args.window_s:g} s window after "
        f"{args.warmup_s:g} s; aftershock events: {args.events}, tick {args.tick_ms:g} ms; "
        f"ours: {args.client}; load average "
        f"{os.getloadavg()[0]:.1f}",
        flush=True,
    )
    rows: list[tuple[Figures, Figures]] = []
    for n in range(1, args.rounds + 1):
        if args.apart:
            [(cpu, out)] = measure([start_ours(port, args, kafka, topic)], args)
            [(their_cpu, their_out)] = measure([start_autocannon(exe, port, args)], args)
        else:
            procs = [start_ours(port, args, kafka, topic), start_autocannon(exe, port, args)]
            (cpu, out), (their_cpu, their_out) = measure(procs, args)
        a, b = ours(out, cpu, args.duration_s), theirs(their_out, their_cpu)
        rows.append((a, b))
        ratio = a.cpu_us_per_request(args.rate, args.window_s) / b.cpu_us_per_request(
            args.rate, args.window_s
        )
        print(
            f"[round {n}] {show(args.client, a, args)}; {show('autocannon', b, args)}; "
            f"CPU per request {args.client}/autocannon {ratio:.2f}",
            flush=True,
        )

    def med(values: list[float]) -> float:
        return statistics.median(values)

    for name, i in ((args.client, 0), ("autocannon", 1)):
        fs = [r[i] for r in rows]
        p99s = [f.p99_ms for f in fs if f.p99_ms is not None]
        print(
            f"[http] {name}: median {med([f.rate() for f in fs]):.0f} req/s "
            f"({med([f.rate() for f in fs]) / args.rate:.1%} of offered), p99 "
            f"{med(p99s) if p99s else float('nan'):.1f} ms, timeouts "
            f"{sum(f.timeouts for f in fs)} in all, "
            f"{med([f.cpu_us_per_request(args.rate, args.window_s) for f in fs]):.1f} µs/request",
            flush=True,
        )
    ratios = [
        a.cpu_us_per_request(args.rate, args.window_s)
        / b.cpu_us_per_request(args.rate, args.window_s)
        for a, b in rows
    ]
    print(
        f"[http] CPU per request, {args.client}/autocannon over {len(ratios)} rounds: median "
        f"{med(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})",
        flush=True,
    )


async def main(args: argparse.Namespace) -> None:
    server, port = start_server()
    try:
        if args.events == "kafka" and args.client != "floor-epoll":
            settings = Settings(state_dir=ROOT / ".aftershock" / "bench")
            async with EmbeddedStack(settings) as stack:
                topic = f"bench-http-{uuid.uuid4().hex[:8]}"
                await stack.create_topics([topic])
                # Blocking on purpose: Ctrl-C or SIGTERM lands in its sleeps, which stop both
                # tools before the stack goes down.
                compare(port, args, stack.kafka_bootstrap, topic)
        else:
            compare(port, args, "", "")
    finally:
        server.terminate()
        server.wait()


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=100, help="connections of each tool")
    p.add_argument("--rate", type=float, default=4000.0, help="requests/s offered by each tool")
    p.add_argument("--duration-s", type=float, default=25.0)
    p.add_argument("--warmup-s", type=float, default=8.0)
    p.add_argument("--window-s", type=float, default=12.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--body-bytes", type=int, default=100)
    p.add_argument("--events", choices=("kafka", "none"), default="kafka")
    p.add_argument(
        "--tick-ms", type=float, default=5.0, help="aftershock's send tick (generate --tick-ms)"
    )
    p.add_argument(
        "--client",
        choices=("generate", "floor-epoll", "floor-uvloop"),
        default="generate",
        help="ours beside autocannon: aftershock generate, or the bare client of "
        "bench/http_floor.py (the I/O of each request and nothing else) on epoll or uvloop",
    )
    p.add_argument("--apart", action="store_true", help="run the two tools one after the other")
    args = p.parse_args(argv)
    if args.warmup_s + args.window_s >= args.duration_s:
        p.error("--warmup-s + --window-s must be shorter than --duration-s")
    return args


def run(args: argparse.Namespace) -> None:
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(main(args))
    except RuntimeError as exc:
        print(f"http benchmark not run: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    arguments = parse(sys.argv[1:])
    run_stoppable(lambda: run(arguments), "the echo server, both tools and the embedded stack")
