"""The run's analysis as the last sink of its fan-out: what it takes as bytes counts and folds
exactly as what it takes as models; other experiments' events, results and bytes that are not
an event are left out."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from aftershock.gameday.analysis import LiveAnalysis
from aftershock.gameday.workers import WorkerAnalysis
from analyzers.core import AnalyzerConfig
from spine.eventlog import EncodedEventSink
from spine.eventlog.codec import encode_event, partition_key
from spine.eventlog.sink import Fanout
from tests.analyzers.live_scenario import CONFIG, scenario
from tests.eventlog.samples import every_kind

if TYPE_CHECKING:
    from schemas.events import Event

EXP = "sinks"
NOT_EVENTS = [b"", b"not json", b"{}", b'{"experiment_id":"sinks","kind":"session.send"}']


def _mixed() -> list[Event]:
    ours = every_kind(experiment_id=EXP)
    theirs = every_kind(experiment_id="another")
    return [e for pair in zip(ours, theirs, strict=True) for e in pair]


async def test_the_worker_analysis_counts_bytes_as_it_counts_models() -> None:
    events = _mixed()
    redis = Redis.from_url("redis://127.0.0.1:1")  # counting never talks to Redis
    try:
        models = WorkerAnalysis(EXP, AnalyzerConfig(), redis)
        encoded = WorkerAnalysis(EXP, AnalyzerConfig(), redis)
        assert isinstance(encoded, EncodedEventSink)
        for ev in events:
            models.emit(ev)
            encoded.emit_encoded(partition_key(ev), encode_event(ev))
        for data in NOT_EVENTS[:3]:  # not even whose: not counted (the workers drop them)
            encoded.emit_encoded("", data)
    finally:
        await redis.aclose()
    kinds = {e.kind for e in events if e.experiment_id == EXP}
    expected = len([k for k in kinds if not k.startswith("result.")])
    assert models.emitted == encoded.emitted == expected > 0


async def test_the_live_analysis_folds_bytes_as_it_folds_models() -> None:
    events = scenario()
    exp = events[0].experiment_id
    by_model = LiveAnalysis(exp, CONFIG)
    by_bytes = LiveAnalysis(exp, CONFIG)
    fanout = Fanout(by_bytes)
    assert fanout.logs == [by_bytes]  # an encoded sink: it gets the bytes
    foreign = every_kind(experiment_id="another")
    for i, ev in enumerate(events):
        by_model.emit(ev)
        fanout.emit(ev)
        if i % 50 == 0:
            fanout.emit(foreign[i % len(foreign)])
            by_bytes.emit_encoded("", NOT_EVENTS[i % len(NOT_EVENTS)])
            await by_model.step()
            await by_bytes.step()
    want = await by_model.drain(10.0)
    got = await by_bytes.drain(10.0)
    assert [r.model_dump_json() for r in got] == [r.model_dump_json() for r in want]
    assert by_bytes.invalid == len([i for i in range(len(events)) if i % 50 == 0])
    # the same, but the other experiment's events it was handed are counted as left out
    foreign_fed = len([i for i in range(len(events)) if i % 50 == 0])
    assert by_bytes.analyzer.stats() == replace(by_model.analyzer.stats(), foreign=foreign_fed)
