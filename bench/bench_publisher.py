"""Publisher throughput to the embedded broker, serialization cost, and stack start time.

``python -m bench publisher`` (env ``BENCH_EVENTS`` sets how many events to publish).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer

from bench import run_stoppable
from schemas.events import Event, Send
from spine.eventlog import codec
from spine.eventlog.publisher import Publisher
from spine.settings import Settings
from spine.stack import EmbeddedStack

N_EVENTS = int(os.environ.get("BENCH_EVENTS", "1000000"))
POOL = 50_000


def make_events(n: int) -> list[Event]:
    """Send events of about 200 bytes of JSON, spread over 4 tenants and 400 sessions."""
    t0 = time.time_ns()
    return [
        Send(
            experiment_id="exp-bench",
            run_id="r1",
            generator_id="gen-1",
            ts_ns=t0 + i,
            mono_ns=i * 1000,
            tenant=f"tenant-{i % 4}",
            user=f"u{i % 100}",
            session=f"s{i % 400}",
            target="gateway",
            protocol="ws",
            seq=i,
            bytes=128,
        )
        for i in range(n)
    ]


def per_event_us(fn: object, events: list[Event], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(events)  # type: ignore[operator]
        best = min(best, time.perf_counter() - t0)
    return best / len(events) * 1e6


def bench_serialization(events: list[Event]) -> None:
    sample = events[:20_000]
    size = len(sample[0].model_dump_json())
    rows = {
        "json.dumps(model_dump(mode='json'))": lambda es: [
            json.dumps(e.model_dump(mode="json")) for e in es
        ],
        "pydantic model_dump_json": lambda es: [e.model_dump_json() for e in es],
        "codec, batches of 1000, no compression": lambda es: [
            codec.encode_batch(es[i : i + 1000], codec.Compression.NONE)
            for i in range(0, len(es), 1000)
        ],
        "codec, batches of 1000, zstd": lambda es: [
            codec.encode_batch(es[i : i + 1000]) for i in range(0, len(es), 1000)
        ],
    }
    print(f"serialization, {size}-byte events (JSON), best of 3 over {len(sample)} events:")
    base = None
    for name, fn in rows.items():
        us = per_event_us(fn, sample)
        base = base or us
        print(f"  {name:<42} {us:6.3f} µs/event  ({base / us:5.1f}x json)")
    values = [codec.encode_batch(sample[i : i + 1000]) for i in range(0, len(sample), 1000)]
    wire = sum(len(v) for v in values) / len(sample)
    print(f"  on the wire with zstd: {wire:.1f} bytes/event ({size / wire:.0f}x smaller)")
    t0 = time.perf_counter()
    for v in values:
        codec.decode_batch(v)
    print(f"  decode + validate: {(time.perf_counter() - t0) / len(sample) * 1e6:.3f} µs/event")


async def bench_start(tmp: Path) -> None:
    times = []
    for i in range(3):
        stack = EmbeddedStack(
            Settings(state_dir=tmp / f"start{i}", kafka_bootstrap=None, redis_url=None)
        )
        await stack.start()
        times.append(stack.started_in_s or 0.0)
        t0 = time.perf_counter()
        await stack.stop()
        stop_s = time.perf_counter() - t0
    print(
        "stack start to healthy (broker + valkey + 4 topics): "
        f"median {statistics.median(times):.3f} s, max {max(times):.3f} s over 3 starts; "
        f"stop {stop_s:.3f} s"
    )


async def bench_publisher(stack: EmbeddedStack, events: list[Event], tmp: Path) -> None:
    topic = "bench.publisher"
    await stack.create_topics([topic], partitions=4)
    cpu0, t0 = time.process_time(), time.perf_counter()
    async with Publisher(stack.kafka_bootstrap, topic, state_dir=tmp, batch_events=2000) as pub:
        for i in range(N_EVENTS):
            pub.emit(events[i % len(events)])
            if i % 1000 == 999:
                await asyncio.sleep(0)  # a load loop yields now and then
        emit_s = time.perf_counter() - t0
        await pub.flush(120)
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        stats = pub.statistics()
    assert stats.sent == N_EVENTS, stats
    print(
        f"publisher: {N_EVENTS} events acknowledged in {elapsed:.2f} s = "
        f"{N_EVENTS / elapsed:,.0f} events/s (emit loop alone {N_EVENTS / emit_s:,.0f}/s); "
        f"CPU {cpu / N_EVENTS * 1e6:.2f} µs/event (process), "
        f"encode {stats.encode_s / N_EVENTS * 1e6:.2f} µs/event; {stats.batches_sent} records, "
        f"{stats.bytes_sent / N_EVENTS:.1f} bytes/event on the wire, spooled {stats.spooled}"
    )
    await stack.drop_topics([topic])


async def bench_plain_send(stack: EmbeddedStack, events: list[Event]) -> None:
    """Reference: one Kafka record per event with aiokafka send()."""
    topic = "bench.plain"
    await stack.create_topics([topic], partitions=4)
    n = min(100_000, N_EVENTS // 5)
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.kafka_bootstrap, linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    try:
        cpu0, t0 = time.process_time(), time.perf_counter()
        futs = []
        for i in range(n):
            e = events[i % len(events)]
            futs.append(
                await producer.send(topic, e.model_dump_json().encode(), key=b"k%d" % (i % 16))
            )
        await asyncio.gather(*futs)
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    finally:
        await producer.stop()
    print(
        "reference, aiokafka send() one record per event (model_dump_json): "
        f"{n} in {elapsed:.2f} s = "
        f"{n / elapsed:,.0f} events/s, CPU {cpu / n * 1e6:.2f} µs/event"
    )
    await stack.drop_topics([topic])


async def main() -> None:
    events = make_events(POOL)
    bench_serialization(events)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        await bench_start(tmp)
        settings = Settings(state_dir=tmp / "stack", kafka_bootstrap=None, redis_url=None)
        async with EmbeddedStack(settings) as stack:
            await bench_publisher(stack, events, tmp)
            await bench_plain_send(stack, events)
            await bench_publisher(stack, events, tmp)


if __name__ == "__main__":
    run_stoppable(lambda: asyncio.run(main()), "the embedded stack")
