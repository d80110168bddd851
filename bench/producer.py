"""A steady producer for the durability benchmark: ``python -m bench.producer``.

Emits ``session.send`` events at ``--rate`` per second through the project's
:class:`~spine.eventlog.publisher.Publisher` until SIGTERM/SIGINT, then closes the publisher
(flush) and prints its statistics as one JSON line. Event ids are ``<prefix><n as 16 hex>``;
before emitting events up to ``n`` it appends ``"<n> <wall ns>"`` to ``--progress`` (one
unbuffered write), so whoever kills it knows what it may have emitted and when, even after
``kill -9``. Exit status 1 when the publisher reports events lost for good.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

from schemas.events import Send
from spine.eventlog.codec import encode_event, partition_key
from spine.eventlog.publisher import Publisher

TICK_S = 0.01


def event(prefix: str, n: int, experiment_id: str) -> Send:
    return Send(
        event_id=f"{prefix}{n:016x}",
        experiment_id=experiment_id,
        run_id=prefix,
        generator_id="durability",
        ts_ns=time.time_ns(),
        tenant=f"t{n % 4}",
        user="u",
        session=f"s{n % 16}",
        target="bench",
        protocol="ws",  # type: ignore[arg-type]
        seq=n,
        bytes=100,
    )


async def produce(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    fd = os.open(args.progress, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    pub = Publisher(
        args.bootstrap,
        args.topic,
        state_dir=Path(args.state_dir),
        delivery_timeout_s=args.delivery_timeout_s,
        retry_backoff_s=0.2,
        flush_timeout_s=args.flush_timeout_s,
    )
    await pub.start()
    print("ready", flush=True)
    n = 0
    t0 = time.monotonic()
    try:
        while not stop.is_set():
            target = int((time.monotonic() - t0) * args.rate)
            if target > n:
                os.write(fd, b"%d %d\n" % (target, time.time_ns()))
                for i in range(n, target):
                    ev = event(args.prefix, i, args.experiment)
                    pub.emit_encoded(partition_key(ev), encode_event(ev))
                n = target
            try:
                async with asyncio.timeout(TICK_S):
                    await stop.wait()
            except TimeoutError:
                pass
    finally:
        await pub.aclose()
        os.close(fd)
    stats = pub.statistics()
    print(json.dumps(asdict(stats)), flush=True)
    return 1 if stats.unrepaired else 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.producer", description=__doc__)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", default="aftershock.events")
    p.add_argument("--state-dir", required=True)
    p.add_argument("--progress", required=True)
    p.add_argument("--prefix", required=True, help="16 hex characters")
    p.add_argument("--experiment", default="durability")
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--delivery-timeout-s", type=float, default=5.0)
    p.add_argument("--flush-timeout-s", type=float, default=30.0)
    args = p.parse_args(argv)
    # aiokafka logs every failed reconnection while the broker is down; the publisher's own
    # warnings (outage, loss found, events sent again) are what the benchmark shows.
    logging.basicConfig(level=logging.WARNING, format="  producer: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    return asyncio.run(produce(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
