"""Analyzer benchmarks: core throughput, worker throughput, result latency in Redis, memory.

``python -m bench analyzers`` (add ``--quick`` for a short run). Prints figures; nothing is
asserted. The machine is shared, so ratios within one run say more than absolute figures.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from aftershock.eventlog import codec
from aftershock.settings import Settings
from aftershock.stack import EmbeddedStack
from analyzers.core import Analyzer
from analyzers.store import prefix
from analyzers.synth import synthetic_events
from schemas.events import ExperimentPhase

QUICK = "--quick" in sys.argv
BATCH = 500


def bench_core(n: int) -> tuple[float, float]:
    """Events/s through every analysis: pre-built events, and decoding envelopes first."""
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
    b = Analyzer("bench")
    t0 = time.perf_counter()
    for env in envelopes:
        b.ingest(codec.decode_batch(env.value, dict(env.headers)))
    b.finish()
    b.results()
    with_decode = n / (time.perf_counter() - t0)
    return core, with_decode


def bench_memory(seconds: int, rate: int) -> list[tuple[int, float, int]]:
    """(event-time s, RSS MiB, snapshot bytes) every 30 s of event time."""
    proc = psutil.Process()
    a = Analyzer("bench")
    points = []
    step = 30 * rate
    batch: list = []
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


async def produce(bootstrap: str, topic: str, events: list, per_record: int) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=False,
        linger_ms=20,
        max_request_size=16 * 2**20,
    )
    await producer.start()
    try:
        for i in range(0, len(events), per_record):
            chunk = events[i : i + per_record]
            env = codec.encode_envelope(codec.partition_key(chunk[0]), chunk)
            await producer.send(topic, env.value, key=env.key, headers=list(env.headers))
        await producer.flush()
    finally:
        await producer.stop()


def stop(worker: subprocess.Popen[bytes]) -> None:
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(10)


def start_worker(env: dict[str, str], app_id: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "aftershock.cli.main", "analyze", "--app-id", app_id],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


async def bench_worker(stack: EmbeddedStack, env: dict[str, str], tmp: Path, n: int) -> float:
    """Events/s through one worker from a backlog of ``n`` events in 500-event records."""
    events = list(synthetic_events(n, experiment_id="wbench"))
    await produce(stack.kafka_bootstrap, env["AFTERSHOCK_TOPIC_EVENTS"], events, BATCH)
    redis = Redis.from_url(stack.redis_url)
    worker = start_worker(env, "bench-throughput", tmp / "worker-throughput.log")
    try:
        first = last = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            raw = await redis.hget(f"{prefix('wbench')}:stats", "accepted")
            seen = int(raw or 0)
            now = time.monotonic()
            if seen and first is None:
                first = (now, seen)
            if seen >= n:
                last = (now, seen)
                break
            await asyncio.sleep(0.02)
        if first is None or last is None:
            raise RuntimeError(f"worker did not finish; see {tmp / 'worker-throughput.log'}")
        return (last[1] - first[1]) / (last[0] - first[0])
    finally:
        stop(worker)
        await redis.aclose()


async def bench_latency(
    stack: EmbeddedStack, env: dict[str, str], tmp: Path, rate: int, seconds: int
) -> list[float]:
    """Seconds from an event's creation to its effect in Redis, at ``rate`` events/s."""
    exp = "lbench"
    redis = Redis.from_url(stack.redis_url)
    worker = start_worker(env, "bench-latency", tmp / "worker-latency.log")
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, enable_idempotence=False)
    await producer.start()
    topic = env["AFTERSHOCK_TOPIC_EVENTS"]
    latencies: list[float] = []
    try:
        # warm up: the worker joins the group and starts reading
        await asyncio.sleep(12)
        gen = synthetic_events(
            10**9, experiment_id=exp, rate_per_s=rate, start_ns=time.time_ns(), sessions=500
        )
        marks: dict[str, int] = {}
        t_end = time.monotonic() + seconds
        tick = 0
        while time.monotonic() < t_end:
            t0 = time.monotonic()
            now_ns = time.time_ns()
            batch = []
            for ev in gen:  # the publisher flushes every 100 ms
                batch.append(ev.model_copy(update={"ts_ns": now_ns, "mono_ns": 0}))
                if len(batch) >= rate // 10:
                    break
            by_key: dict[str, list] = {}
            for ev in batch:
                by_key.setdefault(codec.partition_key(ev), []).append(ev)
            if tick % 5 == 0:
                name = f"mark-{tick}"
                mark = ExperimentPhase(
                    experiment_id=exp, run_id="r1", generator_id="bench", ts_ns=now_ns, phase=name
                )
                by_key.setdefault(codec.partition_key(mark), []).append(mark)
                marks[name] = now_ns
            for key, evs in by_key.items():
                env_ = codec.encode_envelope(key, evs)
                await producer.send(topic, env_.value, key=env_.key, headers=list(env_.headers))
            tick += 1
            seen = await redis.hkeys(f"{prefix(exp)}:verdict")
            for field in seen:
                name = field.decode().rsplit("/", 1)[-1]
                if name in marks:
                    latencies.append((time.time_ns() - marks.pop(name)) / 1e9)
            await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - t0)))
        return latencies
    finally:
        await producer.stop()
        stop(worker)
        await redis.aclose()


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


async def main() -> None:
    # Memory first, in a fresh process: later sections allocate hundreds of MB.
    seconds = 120 if QUICK else 240
    points = bench_memory(seconds, 10_000)
    print("memory at 10k events/s, 1000 sessions (event-time s, RSS, state snapshot):")
    for s, rss, snap in points:
        print(f"  {s:>5} s  {rss:7.1f} MiB  {snap:>10,} B")
    if len(points) >= 3:
        growth = (points[-1][1] - points[1][1]) / (points[-1][0] - points[1][0])
        print(
            f"  RSS growth after warm-up: {growth * 60:.2f} MiB/min "
            f"(30 min extrapolation: {points[-1][1] + growth * (1800 - points[-1][0]):.0f} MiB)"
        )
    n_core = 100_000 if QUICK else 200_000
    core, with_decode = bench_core(n_core)
    print(
        f"core: {core:,.0f} events/s through all analyses ({n_core:,} events, batches of {BATCH})"
    )
    print(f"core + envelope decode: {with_decode:,.0f} events/s (ratio {with_decode / core:.2f})")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        settings = Settings(state_dir=tmp / "state", kafka_bootstrap=None, redis_url=None)
        async with EmbeddedStack(settings) as stack:
            await stack.create_topics(["bench.events", "bench.results", "bench.spans"])
            env = {
                **os.environ,
                "AFTERSHOCK_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
                "AFTERSHOCK_REDIS_URL": stack.redis_url,
                "AFTERSHOCK_TOPIC_EVENTS": "bench.events",
                "AFTERSHOCK_TOPIC_RESULTS": "bench.results",
                "AFTERSHOCK_TOPIC_SPANS": "bench.spans",
                "AFTERSHOCK_STATE_DIR": str(tmp / "state"),
            }
            n_worker = 50_000 if QUICK else 100_000
            w = await bench_worker(stack, env, tmp, n_worker)
            print(
                f"worker: {w:,.0f} events/s, one Faust worker, {BATCH}-event records, "
                f"{n_worker:,} events backlog (ratio to core {w / core:.2f})"
            )
            rate = 2_000
            lat = await bench_latency(stack, env, tmp, rate, 20 if QUICK else 30)
            if lat:
                print(
                    f"result visible in Redis at {rate:,} events/s: p50 {pct(lat, 0.5):.2f} s "
                    f"p99 {pct(lat, 0.99):.2f} s max {max(lat):.2f} s ({len(lat)} marks)"
                )
            else:
                print("result latency: no mark reached Redis")


if __name__ == "__main__":
    asyncio.run(main())
