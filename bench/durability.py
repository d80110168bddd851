"""Fault injection against our own event log, shared by ``python -m bench durability`` and
``tests/eventlog/test_durability.py``.

A detached embedded stack on fixed ports (``aftershock stack up -d``), steady producers
(``python -m bench.producer``, the project's publisher) and the faults: the broker killed with
SIGKILL and started again (``stack up -d`` starts what is gone), the stack stopped cleanly and
started again (``stack down --keep-producers``), a producer killed with SIGKILL while the broker
is up or down (the next one takes its local log over). At the end every producer is stopped and
the topic is read back: each emitted ``event_id`` is looked up, duplicates are counted in the
raw records and in ``aftershock export``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition

from spine import stackstate
from spine.eventlog import codec
from spine.localhost import free_port

if TYPE_CHECKING:
    from pathlib import Path

CLI = [sys.executable, "-m", "aftershock.cli.main"]
EXPERIMENT = "durability"
TOPIC = "aftershock.events"


@dataclass
class Producer:
    prefix: str
    proc: subprocess.Popen[str]
    progress: Path
    killed_at_ns: int | None = None
    stats: dict[str, object] | None = None

    def intents(self) -> list[tuple[int, int]]:
        """``(events up to n may have been emitted, at wall ns)``, in order."""
        out = []
        for line in self.progress.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                out.append((int(parts[0]), int(parts[1])))
        return out

    def emitted(self) -> int:
        intents = self.intents()
        return intents[-1][0] if intents else 0

    def safe_before(self, window_ms: float) -> int:
        """Events below this index were emitted more than ``window_ms`` before the kill (all
        of them for a producer that was not killed)."""
        if self.killed_at_ns is None:
            return self.emitted()
        limit = self.killed_at_ns - int(window_ms * 1e6)
        return max((n for n, t in self.intents() if t <= limit), default=0)


@dataclass
class Tally:
    emitted: int = 0
    read: int = 0
    """Distinct emitted ids found in the topic."""
    lost: int = 0
    lost_in_window: int = 0
    """Lost events of killed producers emitted within the window before the kill."""
    lost_beyond_window: int = 0
    duplicates_raw: int = 0
    """Extra copies in the topic (at least once delivery), before de-duplication."""
    exported: int = 0
    exported_duplicates: int = 0
    unrepaired_reported: int = 0
    losses_detected: int = 0
    resent: int = 0
    events: list[str] = field(default_factory=list)
    """What was done, in order."""


class Harness:
    def __init__(
        self,
        workdir: Path,
        *,
        rate: float = 1000.0,
        window_ms: float = 100.0,
        outage_s: float = 1.0,
        steady_s: float = 1.5,
        log: bool = False,
    ) -> None:
        self.workdir = workdir
        self.state = workdir / "state"
        self.rate = rate
        self.window_ms = window_ms
        self.outage_s = outage_s
        self.steady_s = steady_s
        self.log = log
        self.kafka_port = free_port("127.0.0.1")
        self.redis_port = free_port("127.0.0.1")
        self.bootstrap = f"127.0.0.1:{self.kafka_port}"
        self.producers: list[Producer] = []
        self.tally = Tally()

    # --- the stack, through the CLI -----------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AFTERSHOCK_")}
        env["AFTERSHOCK_STATE_DIR"] = str(self.state)
        return env

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            [*CLI, *args], env=self._env(), capture_output=True, text=True, timeout=120
        )
        if out.returncode != 0:
            raise RuntimeError(f"aftershock {' '.join(args)} failed: {out.stderr}")
        return out.stdout

    def note(self, what: str) -> None:
        self.tally.events.append(what)
        if self.log:
            print(f"  {time.strftime('%H:%M:%S')} {what}", flush=True)

    def up(self) -> None:
        self.cli(
            "stack", "up", "-d",
            "--kafka-port", str(self.kafka_port), "--redis-port", str(self.redis_port),
        )  # fmt: skip

    def _broker_pid(self) -> int:
        for _, rec in stackstate.read_records(self.state):
            for p in rec.processes if rec else ():
                if p.name == "kafka" and stackstate.is_alive(p.pid, p.create_time):
                    return p.pid
        raise RuntimeError("no broker is running")

    def kill_broker(self) -> None:
        pid = self._broker_pid()
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid)

    # --- producers ----------------------------------------------------------------------------

    def start_producer(self) -> Producer:
        prefix = os.urandom(8).hex()
        progress = self.workdir / f"progress-{prefix}"
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "bench.producer", "--bootstrap", self.bootstrap,
                "--topic", TOPIC, "--state-dir", str(self.state), "--progress", str(progress),
                "--prefix", prefix, "--experiment", EXPERIMENT, "--rate", str(self.rate),
            ],
            env=self._env(), stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            proc.kill()
            proc.wait()
            raise RuntimeError(f"the producer did not start: {line!r}")
        producer = Producer(prefix, proc, progress)
        self.producers.append(producer)
        return producer

    def kill_producer(self, producer: Producer) -> None:
        producer.killed_at_ns = time.time_ns()
        producer.proc.kill()
        producer.proc.wait()
        if producer.proc.stdout is not None:
            producer.proc.stdout.close()

    def stop_producer(self, producer: Producer, timeout_s: float = 60.0) -> None:
        if producer.proc.poll() is None:
            producer.proc.send_signal(signal.SIGTERM)
        out, _ = producer.proc.communicate(timeout=timeout_s)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if lines:
            producer.stats = json.loads(lines[-1])

    def stop_all(self) -> None:
        for p in self.producers:
            if p.killed_at_ns is None and p.stats is None:
                self.stop_producer(p)

    def cleanup(self) -> None:
        for p in self.producers:
            if p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait()
            if p.proc.stdout is not None:
                p.proc.stdout.close()
        subprocess.run(
            [*CLI, "stack", "down"], env=self._env(), capture_output=True, timeout=120, check=False
        )

    # --- the faults ---------------------------------------------------------------------------

    def steady(self) -> None:
        time.sleep(self.steady_s)  # produce at the steady rate meanwhile

    def broker_kill_restart(self) -> None:
        self.steady()
        self.kill_broker()
        self.note("broker killed (SIGKILL)")
        time.sleep(self.outage_s)
        self.up()
        self.note("broker started again (stack up -d)")

    def clean_stop(self) -> None:
        self.steady()
        self.cli("stack", "down", "--keep-producers")
        self.note("stack stopped (stack down --keep-producers)")
        time.sleep(self.outage_s)
        self.up()
        self.note("stack started again (stack up -d)")

    def publisher_kill(self, *, broker_down: bool) -> None:
        self.steady()
        victim = next(p for p in reversed(self.producers) if p.proc.poll() is None)
        if broker_down:
            self.kill_broker()
            self.note("broker killed (SIGKILL)")
            time.sleep(self.outage_s)
        self.kill_producer(victim)
        self.note(f"producer killed (SIGKILL), broker {'down' if broker_down else 'up'}")
        if broker_down:
            self.up()
            self.note("broker started again (stack up -d)")
        self.start_producer()
        self.note("a new producer started (adopts the killed one's local log)")

    # --- counting -----------------------------------------------------------------------------

    async def read_ids(self, idle_s: float = 3.0) -> Counter[str]:
        """Every event id in the topic, with its number of copies (no de-duplication)."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100
        )
        await consumer.start()
        ids: Counter[str] = Counter()
        try:
            await consumer.topics()
            parts = consumer.partitions_for_topic(TOPIC) or set()
            tps = [TopicPartition(TOPIC, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            idle = time.monotonic()
            while time.monotonic() - idle < idle_s:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for r in records:
                        assert r.value is not None
                        for ev in codec.decode_batch(r.value, dict(r.headers or ())):
                            ids[ev.event_id] += 1
                    if records:
                        idle = time.monotonic()
        finally:
            await consumer.stop()
        return ids

    def count(self) -> Tally:
        t = self.tally
        ids = asyncio.run(self.read_ids())
        for p in self.producers:
            n = p.emitted()
            safe = p.safe_before(self.window_ms)
            t.emitted += n
            for i in range(n):
                if f"{p.prefix}{i:016x}" in ids:
                    t.read += 1
                elif i < safe:
                    t.lost_beyond_window += 1
                else:
                    t.lost_in_window += 1
            if p.stats is not None:
                t.unrepaired_reported += int(p.stats.get("unrepaired", 0))  # type: ignore[call-overload]
                t.losses_detected += int(p.stats.get("losses_detected", 0))  # type: ignore[call-overload]
                t.resent += int(p.stats.get("resent", 0))  # type: ignore[call-overload]
        t.lost = t.lost_in_window + t.lost_beyond_window
        t.duplicates_raw = sum(c - 1 for c in ids.values())
        out = self.workdir / "export.jsonl"
        env = {**self._env(), "AFTERSHOCK_KAFKA_BOOTSTRAP": self.bootstrap}
        subprocess.run(
            [*CLI, "export", EXPERIMENT, "--output", str(out)],
            env=env, capture_output=True, timeout=300, check=True,
        )  # fmt: skip
        exported = [json.loads(line)["event_id"] for line in out.read_text().splitlines() if line]
        t.exported = len(exported)
        t.exported_duplicates = len(exported) - len(set(exported))
        return t


def _wait_gone(pid: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.02)
    raise RuntimeError(f"process {pid} did not exit")
