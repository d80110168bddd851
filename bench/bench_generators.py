"""Generator benchmark: 10k WebSocket sessions against an echo server in another process.

Figures, per engine (``ws`` = websockets reference, ``picows``):
- connections/s established (constant ramp, ``--max-connecting`` attempts in flight);
- memory per idle connected session (RSS delta / sessions, after ``gc.collect()``);
- at ``--rate`` msg/s per session for ``--hold-s`` seconds once all are connected
  (``gc.freeze()`` first, as ``aftershock generate`` does): client round trip p50/p99,
  messages/s, CPU-s per second;
- every event published to Kafka (embedded broker): emitted, acknowledged, lost.
Then, side by side on the same echo server: messages/s per CPU-second of ``aftershock
generate`` (events to Kafka) and of Locust (WebSocket user, own venv under .aftershock/bench),
both running at the same time over the same window, in ``--compare-rounds`` rounds.

``python -m bench generators`` runs the defaults; ``python -m bench.bench_generators --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from bench import run_stoppable
from generators.limits import check_capacity
from generators.runner import Generator, GeneratorOptions
from schemas.load import LoadProfile
from schemas.targets import Target
from spine.eventlog.publisher import Publisher
from spine.localhost import raise_descriptor_limit
from spine.settings import Settings
from spine.stack import EmbeddedStack

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

ROOT = Path(__file__).resolve().parent.parent
LOCUST_VENV = ROOT / ".aftershock" / "bench" / "locust-venv"


def runq_wait_s() -> float:
    """Seconds this process spent runnable but waiting for a CPU (other load on the machine)."""
    try:
        return int(Path("/proc/self/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def start_echo() -> tuple[subprocess.Popen[bytes], int]:
    port_file = Path(tempfile.mkdtemp()) / "port"
    proc = subprocess.Popen([sys.executable, "-m", "bench.echo_server", str(port_file)], cwd=ROOT)
    deadline = time.monotonic() + 20
    while not (port_file.exists() and port_file.read_text()):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("echo server did not start")
        time.sleep(0.05)
    return proc, int(port_file.read_text())


def profile(sessions: int, script: list[dict[str, object]], duration_s: float) -> LoadProfile:
    return LoadProfile.model_validate(
        {
            "target": "echo",
            "tenants": [{"name": "t1", "users": sessions}],
            "duration_s": duration_s,
            "ramp": {"shape": "constant"},
            "script": script,
        }
    )


async def wait_connected(gen: Generator, n: int, timeout_s: float) -> float:
    t0 = time.monotonic()
    while gen.counters.connects < n:
        if time.monotonic() - t0 > timeout_s:
            raise RuntimeError(f"only {gen.counters.connects}/{n} connected in {timeout_s} s")
        await asyncio.sleep(0.01)
    return time.monotonic()


async def bench_engine(
    engine: str, port: int, args: argparse.Namespace, pub: Publisher
) -> dict[str, float]:
    target = Target(name="echo", upstream=f"127.0.0.1:{port}", protocol="ws")
    opts = GeneratorOptions(
        experiment_id=f"bench-{engine}",
        engine=engine,
        max_connecting=args.max_connecting,
        trace_every=0,
    )
    proc = psutil.Process()
    n = args.sessions
    out: dict[str, float] = {}

    # 1. connect rate and idle memory
    gc.collect()
    rss0 = proc.memory_info().rss
    idle = profile(n, [{"do": "connect"}, {"do": "think", "min_ms": 3.6e6}], 600)
    gen = Generator(idle, target, pub, opts)
    t0 = time.monotonic()
    async with running(gen):
        t_all = await wait_connected(gen, n, 120)
        out["connects_per_s"] = n / (t_all - t0)
        gc.collect()
        out["idle_kb_per_session"] = (proc.memory_info().rss - rss0) / n / 1024

    # 2. steady load
    load = profile(
        n,
        [{"do": "connect"}, {"do": "send", "rate_per_s": args.rate, "timeout_ms": 5000}],
        600,
    )
    gen = Generator(load, target, pub, opts)
    async with running(gen):
        await wait_connected(gen, n, 120)
        await asyncio.sleep(1.5)  # let the first sends, spread over one interval, settle
        # What `aftershock generate` does once all are connected (a gc.collect() before it used
        # to hold the loop ~380 ms at 10k sessions, finding nothing, and its delayed echoes were
        # the window's p99).
        t_gc = time.perf_counter()
        gc.freeze()
        out["gc_pause_ms"] = (time.perf_counter() - t_gc) * 1000
        gen.counters.reset_latencies()
        c0, s0, r0 = time.process_time(), gen.counters.sends, gen.counters.receives
        e0, w0 = gen.counters.errors, runq_wait_s()
        await asyncio.sleep(args.hold_s)
        c1, s1, r1 = time.process_time(), gen.counters.sends, gen.counters.receives
        out["runq_wait_s_per_s"] = (runq_wait_s() - w0) / args.hold_s
        stats = gen.counters.snapshot(args.hold_s, 0)
    gc.unfreeze()
    out["msgs_per_s"] = (s1 - s0) / args.hold_s
    out["round_trips_per_s"] = (r1 - r0) / args.hold_s
    out["cpu_s_per_s"] = (c1 - c0) / args.hold_s
    out["p50_ms"] = stats.p50_ms or -1
    out["p99_ms"] = stats.p99_ms or -1
    out["max_ms"] = stats.max_ms or -1
    out["errors"] = gen.counters.errors - e0
    return out


@contextlib.asynccontextmanager
async def running(gen: Generator) -> AsyncIterator[None]:
    """``gen`` runs inside; on the way out (done, or this benchmark stopped) its load phase
    ends and its sessions disconnect before the publisher they write to is closed."""
    run = asyncio.create_task(gen.run())
    try:
        yield
    finally:
        gen.stop()
        await run


def cpu_of(procs: list[subprocess.Popen[str]]) -> list[float]:
    """User + system CPU-s so far of each process."""
    return [sum(psutil.Process(p.pid).cpu_times()[:2]) for p in procs]


def measured(
    procs: list[subprocess.Popen[str]], args: argparse.Namespace
) -> list[tuple[float, str]]:
    """(CPU-s in the steady window after ``--compare-warmup-s``, output once it ended) of each
    process, all over the same window; they are stopped if this benchmark is."""
    try:
        time.sleep(args.compare_warmup_s)
        c0 = cpu_of(procs)
        time.sleep(args.compare_window_s)
        c1 = cpu_of(procs)
        outs = [p.communicate()[0] for p in procs]
    except BaseException:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)  # Locust waits up to its --stop-timeout for its users
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        raise
    return [(b - a, out) for a, b, out in zip(c0, c1, outs, strict=True)]


def start_cli(port: int, args: argparse.Namespace, kafka: str, topic: str) -> subprocess.Popen[str]:
    """``aftershock generate`` against the echo server, every event to Kafka."""
    tmp = Path(tempfile.mkdtemp())
    (tmp / "run.yaml").write_text(
        f"""targets:
  - {{name: echo, upstream: "127.0.0.1:{port}", protocol: ws}}
load:
  - target: echo
    duration_s: {args.compare_s}
    ramp: {{shape: constant}}
    tenants: [{{name: t1, users: {args.compare_users}}}]
    script:
      - do: connect
      - do: send
        rate_per_s: {args.compare_rate}
        size: {{dist: fixed, bytes: 100}}
"""
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aftershock.cli.main",
            "generate",
            "run.yaml",
            "--engine",
            args.compare_engine,
            "--kafka-bootstrap",
            kafka,
            "--quiet",
            "--trace-every",
            "0",
        ],
        cwd=tmp,
        env={**os.environ, "AFTERSHOCK_TOPIC_EVENTS": topic, "AFTERSHOCK_OTEL_EXPORTER": "none"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def cli_round_trips(out: str) -> int:
    m = re.search(r"recv=(\d+)", out)
    assert m, out[-3000:]
    return int(m.group(1))


def ensure_locust() -> Path | None:
    exe = LOCUST_VENV / "bin" / "locust"
    if exe.exists():
        return exe
    try:
        subprocess.run([sys.executable, "-m", "venv", str(LOCUST_VENV)], check=True)
        subprocess.run(
            [str(LOCUST_VENV / "bin" / "pip"), "install", "-q", "locust", "websocket-client"],
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"locust unavailable: {exc}")
        return None
    return exe


def start_locust(exe: Path, port: int, args: argparse.Namespace) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            str(exe),
            "-f",
            str(ROOT / "bench" / "locust_ws.py"),
            "--headless",
            "--only-summary",
            "-u",
            str(args.compare_users),
            "-r",
            str(args.compare_users),
            "--run-time",
            f"{int(args.compare_s)}s",
            "--host",
            f"ws://127.0.0.1:{port}/",
            "--stop-timeout",
            "5",
        ],
        env={**os.environ, "LOCUST_RATE": str(args.compare_rate)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def locust_round_trips(out: str) -> int:
    m = re.search(r"ROUND_TRIPS (\d+)", out)
    assert m, out[-3000:]
    return int(m.group(1))


def compare(port: int, args: argparse.Namespace, kafka: str, topic: str) -> None:
    """``--compare-rounds`` rounds of the same offered load from both tools; each round prints
    both, then the median ratio. Together (the default), both run at once and their CPU is
    read over the same window: whatever else the machine does then weighs on both alike.
    ``--compare-apart`` runs one after the other instead."""
    offered = float(args.compare_users * args.compare_rate)
    expected = offered * float(args.compare_s)
    in_window = offered * float(args.compare_window_s)
    exe = ensure_locust()
    how = "one after the other" if args.compare_apart or exe is None else "at the same time"
    print(
        f"[compare] {args.compare_users} sessions x {args.compare_rate:g} msg/s for "
        f"{args.compare_s:g} s, {how}; CPU over a {args.compare_window_s:g} s steady window "
        f"after {args.compare_warmup_s:g} s; aftershock: {args.compare_engine}, every event to "
        "Kafka",
        flush=True,
    )

    def rate(round_trips: int, cpu_s: float) -> float:
        """Messages per CPU-second in the window (a shortfall against the offered load
        counts against the tool)."""
        return in_window * min(1.0, round_trips / expected) / cpu_s

    ratios: list[float] = []
    for n in range(1, args.compare_rounds + 1):
        if exe is None:
            [(cpu, out)] = measured([start_cli(port, args, kafka, topic)], args)
            ours = cli_round_trips(out)
            print(
                f"[compare {n}] aftershock {ours} round trips, {cpu:.2f} CPU-s = "
                f"{rate(ours, cpu):.0f} msgs/CPU-s; locust unavailable",
                flush=True,
            )
            continue
        if args.compare_apart:
            [(cpu, out)] = measured([start_cli(port, args, kafka, topic)], args)
            [(their_cpu, their_out)] = measured([start_locust(exe, port, args)], args)
        else:
            procs = [start_cli(port, args, kafka, topic), start_locust(exe, port, args)]
            (cpu, out), (their_cpu, their_out) = measured(procs, args)
        ours, theirs = cli_round_trips(out), locust_round_trips(their_out)
        ratios.append(rate(ours, cpu) / rate(theirs, their_cpu))
        print(
            f"[compare {n}] aftershock {ours} round trips ({ours / expected:.0%} of offered), "
            f"{cpu:.2f} CPU-s = {rate(ours, cpu):.0f} msgs/CPU-s "
            f"({cpu / in_window * 1e6:.1f} µs/round trip); locust {theirs} "
            f"({theirs / expected:.0%}), {their_cpu:.2f} CPU-s = "
            f"{rate(theirs, their_cpu):.0f} msgs/CPU-s ({their_cpu / in_window * 1e6:.1f} "
            f"µs/round trip); ratio {ratios[-1]:.2f}x",
            flush=True,
        )
    if ratios:
        print(
            f"[compare] ratio over {len(ratios)} rounds: median {statistics.median(ratios):.2f}x "
            f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x)",
            flush=True,
        )


async def engine_child(args: argparse.Namespace) -> None:
    """One engine's figures, in a fresh process so memory per session is its own."""
    settings = Settings(state_dir=ROOT / ".aftershock" / "bench")
    async with Publisher(args.kafka_bootstrap, args.topic, state_dir=settings.state_dir) as pub:
        figures = await bench_engine(args.engines, args.port, args, pub)
        t0 = time.monotonic()
        await pub.flush(timeout_s=120)
        flush_s = time.monotonic() - t0
        st = pub.statistics()
    print(
        f"[{args.engines}] connects/s {figures['connects_per_s']:.0f} | idle "
        f"{figures['idle_kb_per_session']:.1f} KB/session | "
        f"{figures['msgs_per_s']:.0f} msgs/s, {figures['round_trips_per_s']:.0f} "
        f"round trips/s, CPU {figures['cpu_s_per_s']:.2f} s/s | p50 "
        f"{figures['p50_ms']:.1f} ms p99 {figures['p99_ms']:.1f} ms max "
        f"{figures['max_ms']:.1f} ms | errors {figures['errors']:.0f} | events "
        f"emitted {st.emitted} acked {st.sent} lost {st.emitted - st.sent} "
        f"(flush {flush_s:.1f} s) | run-queue wait {figures['runq_wait_s_per_s']:.2f} s/s | "
        f"gc.freeze {figures['gc_pause_ms']:.1f} ms",
        flush=True,
    )


async def main(args: argparse.Namespace) -> None:
    limit = raise_descriptor_limit(20_000)
    check_capacity(args.sessions, limit=limit)
    print(
        f"descriptor limit {limit}; {args.sessions} sessions at {args.rate} msg/s, "
        f"hold {args.hold_s} s; python {sys.version.split()[0]}; load average "
        f"{os.getloadavg()[0]:.1f}",
        flush=True,
    )
    settings = Settings(state_dir=ROOT / ".aftershock" / "bench")
    echo, port = start_echo()
    try:
        async with EmbeddedStack(settings) as stack:
            topic = f"bench-gen-{uuid.uuid4().hex[:8]}"
            await stack.create_topics([topic])
            # --sessions 0 runs only the side-by-side comparison.
            engines = [e for e in args.engines.split(",") if e] if args.sessions > 0 else []
            for engine in engines:
                child = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bench.bench_generators",
                    "--child",
                    "--engines",
                    engine,
                    "--port",
                    str(port),
                    "--kafka-bootstrap",
                    stack.kafka_bootstrap,
                    "--topic",
                    topic,
                    "--sessions",
                    str(args.sessions),
                    "--rate",
                    str(args.rate),
                    "--hold-s",
                    str(args.hold_s),
                    "--max-connecting",
                    str(args.max_connecting),
                    cwd=ROOT,
                )
                try:
                    await child.wait()
                except BaseException:
                    child.terminate()
                    await child.wait()
                    raise
            if args.compare_s > 0:
                # Blocking on purpose, as before: Ctrl-C or SIGTERM lands in its sleeps, which
                # stop both tools before the stack goes down.
                compare(port, args, stack.kafka_bootstrap, topic)
    finally:
        echo.terminate()
        echo.wait()


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--sessions", type=int, default=int(os.environ.get("GEN_BENCH_SESSIONS", 10_000))
    )
    p.add_argument("--rate", type=float, default=1.0)
    p.add_argument("--hold-s", type=float, default=float(os.environ.get("GEN_BENCH_HOLD_S", 60)))
    p.add_argument("--engines", default="ws,picows")
    p.add_argument("--max-connecting", type=int, default=1000)
    p.add_argument("--compare-users", type=int, default=1000)
    p.add_argument("--compare-rate", type=float, default=5.0)
    p.add_argument("--compare-s", type=float, default=25.0)
    p.add_argument("--compare-warmup-s", type=float, default=8.0)
    p.add_argument("--compare-window-s", type=float, default=12.0)
    p.add_argument("--compare-engine", default="picows")
    p.add_argument("--compare-rounds", type=int, default=3)
    p.add_argument(
        "--compare-apart",
        action="store_true",
        help="run aftershock and Locust one after the other, not at the same time",
    )
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--kafka-bootstrap", default="", help=argparse.SUPPRESS)
    p.add_argument("--topic", default="", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    try:
        import uvloop

        uvloop.run(engine_child(args) if args.child else main(args))
    except ImportError:
        asyncio.run(engine_child(args) if args.child else main(args))


if __name__ == "__main__":
    args = parse(sys.argv[1:])
    started = "its sessions" if args.child else "the echo server, engine runs and embedded stack"
    run_stoppable(lambda: run(args), started)
