"""The game day's own CPU per session event on the run path: ``python -m bench runpath``.

What ``aftershock run`` does with each session event in its own process: the recorder encodes
it, the run's fan-out hands it to the Kafka publisher (embedded broker; the run's local log
keeps its batches), and to the live analysis (folded every 0.25 s of events, as the run does;
the dashboard and the report render its results). ``before`` is the fan-out as it was (each
event parsed into a model by the recorder, written to ``events.jsonl`` one line at a time with
a flush, encoded again by the publisher); ``after`` is :class:`spine.eventlog.sink.Fanout` (the
same bytes to the publisher and the analysis, which decodes them in batches straight into its
analysis form; the local log keeps the publisher's sealed batches). Each path runs in a fresh
process; the figure is process CPU time (``time.process_time``) over the events, flush, close
and the analysis's drain included (every event is folded: without the drain, the events of the
last ``allowed_lateness_s`` would be left out, a larger share of a faster path's events).
``workers`` is ``after`` as ``aftershock run --workers N`` has it: the analysis runs in worker
processes (not counted), the run's process only counts the experiment's events. ``--events N``
(default 300 000), ``--sessions N`` (default 200).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench import run_stoppable

if TYPE_CHECKING:
    from schemas.events import Event
    from spine.eventlog import EventSink

EXPERIMENT = "bench-runpath"


class _BeforeFanout:
    """The run's fan-out before the encoded path: models only."""

    def __init__(self, sinks: list[EventSink]) -> None:
        self.sinks = sinks

    def emit(self, event: Event) -> None:
        for s in self.sinks:
            s.emit(event)


async def _measure(path: str, n_events: int, n_sessions: int, workdir: Path) -> dict[str, float]:
    from redis.asyncio import Redis

    from aftershock.gameday.analysis import LiveAnalysis
    from aftershock.gameday.workers import WorkerAnalysis
    from analyzers.core.config import AnalyzerConfig
    from generators.recorder import Recorder
    from schemas.events import Protocol
    from spine.eventlog.publisher import Publisher
    from spine.eventlog.runlog import RunLogWriter
    from spine.eventlog.sink import Fanout, JsonlSink
    from spine.settings import Settings
    from spine.stack import EmbeddedStack

    settings = Settings(state_dir=workdir / "state")
    async with EmbeddedStack(settings) as stack:
        analysis = LiveAnalysis(EXPERIMENT, AnalyzerConfig())
        live: LiveAnalysis | None = analysis
        redis: Redis | None = None
        pub = Publisher(stack.kafka_bootstrap, settings.topic_events, state_dir=settings.state_dir)
        await pub.start()
        run_dir = workdir / "run"
        fanout: EventSink
        closers = []
        if path == "before":
            jsonl = JsonlSink(run_dir / "events.jsonl")
            closers.append(jsonl.close)
            fanout = _BeforeFanout([jsonl, pub, analysis])
        else:
            # As the run: its log keeps the publisher's batches as they are sealed.
            local = RunLogWriter(run_dir / "events")
            pub.on_sealed = local.write_batch
            closers.extend([pub.seal, local.close])
            if path == "workers":
                # `run --workers N`: the analysis runs in worker processes; the run's own
                # process only counts the experiment's events (for the workers' drain).
                redis = Redis.from_url(stack.redis_url)  # counting does not use it
                fanout = Fanout(pub, WorkerAnalysis(EXPERIMENT, AnalyzerConfig(), redis))
                live = None
            else:
                fanout = Fanout(pub, analysis)
        rec = Recorder(
            fanout,
            experiment_id=EXPERIMENT,
            run_id="r",
            generator_id="g",
            target="gateway",
            protocol=Protocol.WS,
        )
        sessions = [rec.session((f"t{i % 4}", f"u{i}", f"s{i}")) for i in range(n_sessions)]
        trace = (None, None)
        for s in sessions:
            s.use_trace(trace)  # as a session does with its root span's ids
        cpu0, t0 = time.process_time(), time.perf_counter()
        seq = 0
        while rec.emitted < n_events:
            for s in sessions:
                s.send(seq, 100, None, "echo", trace)
                s.receive_own(seq, 100, 1.5, trace)
            seq += 1
            if seq % 10 == 0:
                if live is not None:
                    await live.step()  # the run folds every 0.25 s
                await asyncio.sleep(0)  # the publisher's delivery task runs
        if live is not None:
            await live.drain(60)  # every event folded, as at the end of a run
        await pub.flush(60)
        for close in closers:
            close()
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - t0
        await pub.aclose()
        if redis is not None:
            await redis.aclose()
        size = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())
    return {
        "events": rec.emitted,
        "cpu_us_per_event": cpu / rec.emitted * 1e6,
        "wall_s": wall,
        "log_bytes_per_event": size / rec.emitted,
    }


def _child(path: str, n_events: int, n_sessions: int) -> None:
    with tempfile.TemporaryDirectory(prefix="aftershock-runpath-") as tmp:
        figures = asyncio.run(_measure(path, n_events, n_sessions, Path(tmp)))
    print(json.dumps(figures))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench runpath", description=__doc__)
    p.add_argument("--events", type=int, default=300_000)
    p.add_argument("--sessions", type=int, default=200)
    p.add_argument("--path", choices=["before", "after", "workers"], help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="50 000 events")
    args = p.parse_args(argv)
    if args.quick:
        args.events = 50_000
    if args.path:
        _child(args.path, args.events, args.sessions)
        return 0
    got = {}
    for path in ("before", "after", "workers"):
        out = subprocess.run(
            [sys.executable, "-m", "bench.bench_runpath", "--path", path,
             "--events", str(args.events), "--sessions", str(args.sessions)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        got[path] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{args.events} session events, {args.sessions} sessions")
    print(f"{'path':<8} {'CPU µs/event':>13} {'wall s':>8} {'local log B/event':>18}")
    for path, f in got.items():
        print(
            f"{path:<8} {f['cpu_us_per_event']:>13.2f} {f['wall_s']:>8.1f} "
            f"{f['log_bytes_per_event']:>18.1f}"
        )
    before = got["before"]["cpu_us_per_event"]
    print(f"after / before CPU per event: {got['after']['cpu_us_per_event'] / before:.2f}")
    print(f"workers / before CPU per event: {got['workers']['cpu_us_per_event'] / before:.2f}")
    return 0


if __name__ == "__main__":
    run_stoppable(lambda: sys.exit(main(sys.argv[1:])), "the embedded stack")
