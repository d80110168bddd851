"""Analyzer benchmarks: core throughput, worker throughput, result latency in Redis, memory.

``python -m bench analyzers`` runs the default sections once. ``python -m
bench.bench_analyzers`` takes options: ``--sections core,memory,worker,latency``, ``--runs N``
(worker throughput runs), ``--quick``, and ``--soak-s S [--rate R] [--sample-s X]`` for a
real worker fed in real time for ``S`` seconds, sampling memory as it goes. Prints figures;
nothing is asserted. The machine is shared, so ratios within one run say more than absolute
figures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from analyzers.core import Analyzer
from analyzers.decode import decode_record
from analyzers.synth import synthetic_events
from bench import run_stoppable
from schemas.events import ExperimentPhase
from spine.eventlog import codec
from spine.localhost import free_port
from spine.settings import Settings
from spine.stack import EmbeddedStack
from spine.store import prefix

if TYPE_CHECKING:
    from collections.abc import Iterable

    from aiokafka.structs import RecordMetadata

    from schemas.events import Event

BATCH = 500


def bench_core(n: int) -> tuple[float, float, float]:
    """Events/s through every analysis: pre-built events; decoding envelopes as the worker
    does (:func:`analyzers.decode.decode_record`); decoding them into pydantic models."""
    events = list(synthetic_events(n))
    a = Analyzer("bench")
    t0 = time.perf_counter()
    for i in range(0, n, BATCH):
        a.ingest(events[i : i + BATCH])
    a.finish()
    a.results()
    core = n / (time.perf_counter() - t0)
    envelopes = [
        codec.encode_envelope("bench/x/y", events[i : i + BATCH]) for i in range(0, n, BATCH)
    ]
    rates = []
    for decode in (decode_record, codec.decode_batch):
        b = Analyzer("bench")
        gc.collect()
        t0 = time.perf_counter()
        for env in envelopes:
            b.ingest(decode(env.value, dict(env.headers)))
        b.finish()
        b.results()
        rates.append(n / (time.perf_counter() - t0))
    return core, rates[0], rates[1]


def bench_memory(seconds: int, rate: int) -> list[tuple[int, float, int]]:
    """(event-time s, RSS MiB, snapshot bytes) every 30 s of event time."""
    proc = psutil.Process()
    a = Analyzer("bench")
    points = []
    step = 30 * rate
    batch: list[Event] = []
    stream = synthetic_events(seconds * rate, rate_per_s=rate, sessions=1000, tenants=10)
    for made, ev in enumerate(stream, 1):
        batch.append(ev)
        if len(batch) == BATCH:
            a.ingest(batch)
            batch = []
        if made % step == 0:
            gc.collect()
            points.append((made // rate, proc.memory_info().rss / 2**20, len(a.snapshot())))
    return points


def records(events: Iterable[Event], per_record: int) -> list[codec.Envelope]:
    """As publishers write them: consecutive events grouped by partition key, at most
    ``per_record`` events per record."""
    out: list[codec.Envelope] = []
    groups: dict[str, list[Event]] = {}
    for ev in events:
        key = codec.partition_key(ev)
        group = groups.setdefault(key, [])
        group.append(ev)
        if len(group) >= per_record:
            out.append(codec.encode_envelope(key, group))
            groups[key] = []
    out += [codec.encode_envelope(k, g) for k, g in groups.items() if g]
    return out


def new_producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=False,
        linger_ms=5,
        max_request_size=16 * 2**20,
    )


async def send_all(
    producer: AIOKafkaProducer, topic: str, envs: Iterable[codec.Envelope]
) -> list[asyncio.Future[RecordMetadata]]:
    return [
        await producer.send(topic, env.value, key=env.key, headers=list(env.headers))
        for env in envs
    ]


def stop(worker: subprocess.Popen[bytes]) -> None:
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(10)


def start_worker(
    env: dict[str, str], app_id: str, log: Path, metrics_port: int | None = None
) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "aftershock.cli.main", "analyze", "--app-id", app_id]
    if metrics_port is not None:
        argv += ["--metrics-port", str(metrics_port)]
    return subprocess.Popen(argv, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


@dataclass
class Bench:
    stack: EmbeddedStack
    tmp: Path
    redis: Redis

    def env(self, topic_events: str) -> dict[str, str]:
        return {
            **os.environ,
            "AFTERSHOCK_KAFKA_BOOTSTRAP": self.stack.kafka_bootstrap,
            "AFTERSHOCK_REDIS_URL": self.stack.redis_url,
            "AFTERSHOCK_TOPIC_EVENTS": topic_events,
            "AFTERSHOCK_TOPIC_RESULTS": "bench.results",
            "AFTERSHOCK_TOPIC_SPANS": "bench.spans",
            "AFTERSHOCK_STATE_DIR": str(self.tmp / "state"),
        }

    async def stat(self, exp: str, name: str) -> int:
        raw = await self.redis.hget(f"{prefix(exp)}:stats", name)
        return int(raw or 0)


@dataclass(frozen=True)
class WorkerRun:
    rate: float
    """Events/s: 80 % of the backlog over the time from 10 % decoded and buffered to 90 %
    applied through every analysis."""
    to90_s: float
    """Seconds from worker start to 90 % applied."""
    partitions: int
    """Partitions that held events."""
    worker_cpu_us: float
    """Worker CPU (user + system, all threads) per event over the measured window."""
    broker_cpu_us: float
    """The same for the broker."""


def cpu_s(pid: int | None) -> float:
    if pid is None:
        return float("nan")
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


async def bench_worker(b: Bench, n: int, run: int) -> WorkerRun:
    """One worker over a backlog of ``n`` events in records of up to 500 events."""
    exp, topic = f"wbench{run}", f"bench.events.{run}"
    await b.stack.create_topics([topic])
    events = synthetic_events(n, experiment_id=exp, sessions=1000, tenants=10)
    envs = records(events, BATCH)
    producer = new_producer(b.stack.kafka_bootstrap)
    await producer.start()
    try:
        sent = await asyncio.gather(*await send_all(producer, topic, envs))
    finally:
        await producer.stop()
    used = len({md.partition for md in sent})
    broker = {p.name: p.pid for p in b.stack.processes}.get("kafka")
    log = b.tmp / f"worker-throughput-{run}.log"
    started = time.monotonic()
    worker = start_worker(b.env(topic), f"bench-throughput-{run}", log)
    t_lo = t_hi = None
    cpu_lo = cpu_hi = (0.0, 0.0)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and t_hi is None:
            if t_lo is None and await b.stat(exp, "accepted") >= n * 0.1:
                t_lo = time.monotonic()
                cpu_lo = (cpu_s(worker.pid), cpu_s(broker))
            if await b.stat(exp, "released") >= n * 0.9:
                t_hi = time.monotonic()
                cpu_hi = (cpu_s(worker.pid), cpu_s(broker))
            await asyncio.sleep(0.02)
        if t_lo is None or t_hi is None:
            raise RuntimeError(f"worker did not get through the backlog; see {log}")
        per_event = [(hi - lo) / (0.8 * n) * 1e6 for lo, hi in zip(cpu_lo, cpu_hi, strict=True)]
        return WorkerRun(0.8 * n / (t_hi - t_lo), t_hi - started, used, *per_event)
    finally:
        stop(worker)


async def bench_latency(
    b: Bench, rate: int, seconds: int
) -> tuple[list[tuple[float, float]], int, float | None]:
    """Seconds from an event's creation to its effect in Redis, at ``rate`` events/s.

    Load starts with the worker. Every 0.5 s an ``experiment.phase`` mark is sent with the
    load; its latency is the time until the verdict of that phase is in Redis. Returns
    ((mark created, s after worker start; latency s) for every mark that arrived, marks sent,
    s after worker start when the first result reached Redis)."""
    exp, topic = "lbench", "bench.events.latency"
    await b.stack.create_topics([topic])
    producer = new_producer(b.stack.kafka_bootstrap)
    await producer.start()
    started = time.monotonic()
    worker = start_worker(b.env(topic), "bench-latency", b.tmp / "worker-latency.log")
    out: list[tuple[float, float]] = []
    marks: dict[str, tuple[float, int]] = {}
    sent_marks = 0
    first_result: float | None = None
    try:
        gen = synthetic_events(
            10**9, experiment_id=exp, rate_per_s=rate, start_ns=time.time_ns(), sessions=500
        )
        tick = 0
        while time.monotonic() - started < seconds:
            t0 = time.monotonic()
            now_ns = time.time_ns()
            batch: list[Event] = []
            for ev in gen:  # publishers flush every 100 ms
                batch.append(ev.model_copy(update={"ts_ns": now_ns, "mono_ns": 0}))
                if len(batch) >= rate // 10:
                    break
            if tick % 5 == 0:
                name = f"mark-{tick}"
                batch.append(
                    ExperimentPhase(
                        experiment_id=exp,
                        run_id="r1",
                        generator_id="bench",
                        ts_ns=now_ns,
                        phase=name,
                    )
                )
                marks[name] = (t0 - started, now_ns)
                sent_marks += 1
            await send_all(producer, topic, records(batch, BATCH))
            tick += 1
            if first_result is None and await b.redis.exists(f"{prefix(exp)}:updated_ns"):
                first_result = time.monotonic() - started
            for field in await b.redis.hkeys(f"{prefix(exp)}:verdict"):
                text = field.decode() if isinstance(field, bytes) else field
                name = text.rsplit("/", 1)[-1]
                if name in marks:
                    created, ns = marks.pop(name)
                    out.append((created, (time.time_ns() - ns) / 1e9))
            await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - t0)))
        return out, sent_marks, first_result
    finally:
        await producer.stop()
        stop(worker)


def scrape(port: int) -> dict[str, float]:
    """The worker's Prometheus metrics without labels, by name."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, value = line.partition(" ")
            out[name] = float(value)
    return out


def rss_mib(pid: int) -> float:
    try:
        return float(psutil.Process(pid).memory_info().rss) / 2**20
    except psutil.Error:
        return float("nan")


async def soak(b: Bench, seconds: int, rate: int, sample_s: int) -> None:
    """A real worker fed ``rate`` events/s in real time for ``seconds``; prints a sample of
    memory and state every ``sample_s`` seconds."""
    exp, topic = "soak", "bench.events.soak"
    await b.stack.create_topics([topic])
    port = free_port()
    worker = start_worker(b.env(topic), "bench-soak", b.tmp / "worker-soak.log", port)
    pids = {p.name: p.pid for p in b.stack.processes}
    broker, valkey = pids.get("kafka"), pids.get("redis")
    producer = new_producer(b.stack.kafka_bootstrap)
    await producer.start()
    proc = psutil.Process(worker.pid)
    print(
        "  elapsed s | sent | applied | buffered | worker RSS MiB | worker CPU % | "
        "snapshot B | remembered ids | pending replies | broker RSS MiB | valkey RSS MiB",
        flush=True,
    )

    async def sample(elapsed: float, sent: int) -> None:
        stats = await b.redis.hgetall(f"{prefix(exp)}:stats")
        try:
            m = await asyncio.to_thread(scrape, port)
        except OSError:
            m = {}
        print(
            f"  {elapsed:9.0f} | {sent:>10,} | {int(stats.get(b'released', 0)):>10,} | "
            f"{int(stats.get(b'buffered', 0)):>8,} | {rss_mib(worker.pid):8.1f} | "
            f"{proc.cpu_percent():5.1f} | "
            f"{int(m.get('aftershock_analyzer_snapshot_bytes', 0)):>10,} | "
            f"{int(stats.get(b'remembered_ids', 0)):>8,} | "
            f"{int(stats.get(b'pending_replies', 0)):>7,} | "
            f"{rss_mib(broker) if broker else float('nan'):8.1f} | "
            f"{rss_mib(valkey) if valkey else float('nan'):6.1f}",
            flush=True,
        )

    try:
        start_ns = time.time_ns()
        gen = synthetic_events(
            rate * seconds,
            experiment_id=exp,
            rate_per_s=rate,
            start_ns=start_ns,
            sessions=1000,
            tenants=10,
        )
        started = time.monotonic()
        next_sample = started + sample_s
        sent = 0
        proc.cpu_percent()
        tick_s = 0.1
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate) + int(tick_s * rate)
            batch = [ev for _, ev in zip(range(due - sent), gen, strict=False)]
            sent += len(batch)
            await send_all(producer, topic, records(batch, BATCH))
            if time.monotonic() >= next_sample:
                next_sample += sample_s
                await sample(elapsed, sent)
            await asyncio.sleep(max(0.0, started + elapsed + tick_s - time.monotonic()))
        await sample(time.monotonic() - started, sent)
    finally:
        await producer.stop()
        stop(worker)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def spread(values: list[float]) -> str:
    s = sorted(values)
    return f"median {pct(s, 0.5):,.0f} (min {s[0]:,.0f}, max {s[-1]:,.0f}, {len(s)} runs)"


def print_latency(lat: list[tuple[float, float]], sent: int, first: float | None) -> None:
    if not lat:
        print("result latency: no mark reached Redis")
        return
    steady = [x for c, x in lat if first is not None and c >= first]
    every = [x for _, x in lat]
    print(
        f"  including start-up (marks from worker start): p50 {pct(every, 0.5):.2f} s "
        f"p99 {pct(every, 0.99):.2f} s max {max(every):.2f} s "
        f"({len(every)} of {sent} marks arrived)"
    )
    if first is not None:
        print(f"  worker start → first result in Redis: {first:.1f} s")
    if steady:
        print(
            f"  steady state (marks created after the first result): p50 {pct(steady, 0.5):.2f} s "
            f"p99 {pct(steady, 0.99):.2f} s max {max(steady):.2f} s ({len(steady)} marks)"
        )
    print("  by creation time (s after worker start: marks, max latency):")
    for lo in range(0, int(max(c for c, _ in lat)) + 5, 5):
        xs = [x for c, x in lat if lo <= c < lo + 5]
        if xs:
            print(f"    {lo:>3}-{lo + 5:<3} {len(xs):>3}  {max(xs):.2f} s")


async def with_stack(quick: bool, sections: set[str], runs: int, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        settings = Settings(state_dir=tmp / "state", kafka_bootstrap=None, redis_url=None)
        async with EmbeddedStack(settings) as stack:
            await stack.create_topics(["bench.results", "bench.spans"])
            redis = Redis.from_url(stack.redis_url)
            b = Bench(stack, tmp, redis)
            try:
                if args.soak_s:
                    print(
                        f"soak: one worker, {args.rate:,} events/s in real time for "
                        f"{args.soak_s} s, 1000 sessions, 10 tenants",
                        flush=True,
                    )
                    await soak(b, args.soak_s, args.rate, args.sample_s)
                    return
                if "worker" in sections:
                    n = 200_000 if quick else 500_000
                    figures = []
                    for run in range(runs):
                        w = await bench_worker(b, n, run)
                        figures.append(w.rate)
                        print(
                            f"  run {run + 1} ({time.strftime('%H:%M:%S', time.gmtime())} UTC, "
                            f"load {os.getloadavg()[0]:.2f}): {w.rate:,.0f} events/s (10 % "
                            f"decoded → 90 % applied, of {n:,}); CPU per event: worker "
                            f"{w.worker_cpu_us:.1f} µs, broker {w.broker_cpu_us:.1f} µs; worker "
                            f"start → 90 % applied {w.to90_s:.1f} s; {w.partitions} partitions "
                            "with events",
                            flush=True,
                        )
                    print(f"worker: {spread(figures)} events/s through all analyses")
                if "latency" in sections:
                    rate = 2_000
                    seconds = 45 if quick else 75
                    print(f"result visible in Redis at {rate:,} events/s, {seconds} s:")
                    print_latency(*await bench_latency(b, rate, seconds))
            finally:
                await redis.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_analyzers")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sections", default="memory,core,worker,latency")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--soak-s", type=int, default=0)
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--sample-s", type=int, default=60)
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    if not args.soak_s and "memory" in sections:
        # Memory first, in a fresh process: later sections allocate hundreds of MB.
        seconds = 120 if args.quick else 240
        points = bench_memory(seconds, 10_000)
        print("core memory at 10k events/s, 1000 sessions (event-time s, RSS, state snapshot):")
        for s, rss, snap in points:
            print(f"  {s:>5} s  {rss:7.1f} MiB  {snap:>10,} B")
    if not args.soak_s and "core" in sections:
        n_core = 100_000 if args.quick else 200_000
        core, fast, pydantic = bench_core(n_core)
        print(f"core: {core:,.0f} events/s through all analyses ({n_core:,} events)")
        print(
            f"core + envelope decode as the worker does: {fast:,.0f} events/s ({fast / core:.2f})"
        )
        print(
            f"core + decode into pydantic models: {pydantic:,.0f} events/s ({pydantic / core:.2f})"
        )
    if args.soak_s or sections & {"worker", "latency"}:
        await with_stack(args.quick, sections, args.runs, args)


if __name__ == "__main__":
    run_stoppable(lambda: asyncio.run(main()), "workers and the embedded stack")
