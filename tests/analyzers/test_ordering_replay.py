"""Out-of-order arrival, redelivery, snapshots, and the property that replay equals live."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzers.core import Analyzer, AnalyzerConfig
from analyzers.core.clock import ManualClock
from analyzers.decode import decode_record, fast_decode
from spine.eventlog import codec
from tests.analyzers.build import (
    EXP,
    disabled,
    enabled,
    fail,
    ok,
    phase,
    probe,
    receive,
    send,
    toxic_added,
    toxic_removed,
)

if TYPE_CHECKING:
    from schemas.events import Event


def scenario() -> list[Event]:
    """Two targets, three tenants, two faults, phases, traffic with replies and errors."""
    events: list[Event] = [
        phase(0, "baseline"),
        phase(15_000, "fault:gw"),
        phase(30_000, "recovery"),
        toxic_added(15_000, "gw-proxy", "f1", "reset_peer", fault_id="f1"),
        toxic_removed(25_000, "gw-proxy", "f1"),
        disabled(35_000, "db-proxy", fault_id="f2"),
        enabled(38_000, "db-proxy"),
    ]
    for i, (tenant, target) in enumerate([("a", "gw"), ("b", "gw"), ("c", "db")]):
        down = [(15_200 + 100 * i, 26_000)] if target == "gw" else [(35_000, 39_000)]
        events += probe(0, 45_000, down, session=f"p{i}", tenant=tenant, target=target)
    for seq, t in enumerate(range(0, 45_000, 250)):
        s = f"s{seq % 4}"
        events.append(send(t, seq, s, "a", expect="broadcast", channel="general"))
        if not 15_000 <= t < 25_000:
            for r in ("s0", "s1", "s2", "s3"):
                events.append(receive(t + 7, r, s, seq, "a", channel="general", latency_ms=7.0))
    return sorted(events, key=lambda e: (e.ts_ns, e.event_id))


def results_of(events: list[Event], chunk: int = 97, **cfg: Any) -> list[Any]:
    a = Analyzer(EXP, AnalyzerConfig(**cfg))
    for i in range(0, len(events), chunk):
        a.ingest(events[i : i + chunk])
    a.finish()
    return [r.model_dump() for r in a.results()]


def partitioned(events: list[Event], parts: int, rng: random.Random) -> list[Event]:
    """Split by session (as a keyed producer would) and interleave the partitions randomly;
    each partition stays in order, so lag between partitions is bounded by the mix."""
    queues: list[list[Event]] = [[] for _ in range(parts)]
    for ev in events:
        key = getattr(ev, "session", ev.generator_id)
        queues[hash(key) % parts].append(ev)
    out: list[Event] = []
    idx = [0] * parts
    while any(idx[p] < len(queues[p]) for p in range(parts)):
        # a partition is only picked while it is less than the 0.5 s lateness ahead
        live = [p for p in range(parts) if idx[p] < len(queues[p])]
        heads = {p: queues[p][idx[p]].ts_ns for p in live}
        slowest = min(heads.values())
        allowed = [p for p in live if heads[p] - slowest < 450_000_000]
        p = rng.choice(allowed)
        out.append(queues[p][idx[p]])
        idx[p] += 1
    return out


BASE = scenario()
EXPECTED = results_of(BASE)


def test_scenario_produces_every_kind_of_result() -> None:
    kinds = {r["kind"] for r in EXPECTED}
    assert {
        "result.episode",
        "result.availability",
        "result.integrity",
        "result.latency",
        "result.load",
        "result.cascade",
        "result.error_burst",
        "result.fingerprint",
        "result.verdict",
    } <= kinds


def test_out_of_order_arrival_across_partitions_gives_the_same_results() -> None:
    shuffled = partitioned(BASE, 4, random.Random(7))
    assert shuffled != BASE
    assert results_of(shuffled) == EXPECTED


def test_a_lagging_partition_holds_the_watermark_instead_of_arriving_late() -> None:
    """A consumer catching up on a backlog reads one partition far ahead of another."""
    clock = ManualClock()
    parts: dict[str, list[Event]] = {"0": [], "1": []}
    for ev in BASE:
        parts["0" if hash(getattr(ev, "session", ev.generator_id)) % 2 else "1"].append(ev)
    a = Analyzer(EXP, clock=clock)
    a.expect_sources(["0", "1"])
    for i in range(0, len(parts["0"]), 200):  # all of partition 0 first
        a.ingest(parts["0"][i : i + 200], source="0")
        clock.advance(0.1)
    for i in range(0, len(parts["1"]), 200):
        a.ingest(parts["1"][i : i + 200], source="1")
        clock.advance(0.1)
    a.finish()
    assert a.stats().late == 0
    assert [r.model_dump() for r in a.results()] == EXPECTED


def test_an_expected_source_that_stays_silent_stops_holding_the_watermark() -> None:
    clock = ManualClock()
    a = Analyzer(EXP, AnalyzerConfig(source_idle_s=1, idle_flush_s=100), clock=clock)
    a.expect_sources(["0", "1"])
    a.ingest(BASE[:500], source="0")
    assert a.stats().released == 0
    clock.advance(1.5)
    a.ingest(BASE[500:1000], source="0")
    assert a.stats().released > 0


def test_redelivered_duplicates_are_dropped_and_change_nothing() -> None:
    rng = random.Random(3)
    retried = {i: i + rng.randint(1, 20) for i in rng.sample(range(len(BASE)), 50)}
    stream: list[Event] = []
    for i, ev in enumerate(BASE):
        stream.append(ev)
        # a producer retry repeats an event a little later
        stream += [BASE[j] for j, at in sorted(retried.items()) if at == i]
        if i == 1999:  # a consumer restart redelivers the last 500 records
            stream += BASE[1500:2000]
    a = Analyzer(EXP)
    a.ingest(stream)
    a.finish()
    assert [r.model_dump() for r in a.results()] == EXPECTED
    assert a.stats().duplicates == 500 + sum(at < len(BASE) for at in retried.values())
    assert a.stats().late == 0


def test_snapshot_and_restore_mid_stream_resumes_exactly() -> None:
    a = Analyzer(EXP)
    half = len(BASE) // 2
    a.ingest(BASE[:half])
    restored = Analyzer.restore(a.snapshot())
    restored.ingest(BASE[half:])
    restored.finish()
    assert [r.model_dump() for r in restored.results()] == EXPECTED


def test_idle_flush_releases_buffered_events_by_the_processing_clock() -> None:
    clock = ManualClock()
    a = Analyzer(EXP, AnalyzerConfig(allowed_lateness_s=5, idle_flush_s=2), clock=clock)
    a.ingest([fail(0), fail(10), fail(20)])
    assert a.stats().buffered == 3
    a.tick()
    assert a.stats().buffered == 3
    clock.advance(2.5)
    a.tick()
    assert a.stats().buffered == 0
    assert a.stats().released == 3


def test_events_of_other_experiments_and_results_are_ignored() -> None:
    a = Analyzer("other")
    a.ingest([ok(0), ok(1)])
    assert a.stats().foreign == 2
    b = Analyzer(EXP)
    b.ingest(BASE[:10])
    b.ingest(b.results())
    assert b.stats().foreign > 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    parts=st.integers(1, 6),
    dup_fraction=st.floats(0, 0.3),
    chunk=st.integers(1, 400),
)
def test_replay_equals_live_for_any_interleaving_and_duplication(
    seed: int, parts: int, dup_fraction: float, chunk: int
) -> None:
    rng = random.Random(seed)
    # a random stream: random faults and outages on random targets
    events: list[Event] = []
    for f in range(rng.randint(0, 3)):
        start = rng.uniform(0, 20_000)
        events.append(toxic_added(start, f"p{f}", f"f{f}", fault_id=f"f{f}"))
        events.append(toxic_removed(start + rng.uniform(100, 8_000), f"p{f}", f"f{f}"))
    for s in range(rng.randint(1, 5)):
        a0 = rng.uniform(0, 25_000)
        down = [(a0, a0 + rng.uniform(0, 6_000))]
        events += probe(
            0,
            30_000,
            down,
            session=f"s{s}",
            tenant=rng.choice("ab"),
            target=rng.choice(["gw", "db"]),
            every_ms=rng.choice([50.0, 100.0, 250.0]),
        )
    events.sort(key=lambda e: (e.ts_ns, e.event_id))
    replay = results_of(events, chunk=len(events))
    live = partitioned(events, parts, rng)
    for i in rng.sample(range(len(live)), int(dup_fraction * len(live))):
        live.insert(min(len(live), i + rng.randint(1, 30)), live[i])
    assert results_of(live, chunk=chunk) == replay


def test_records_decoded_as_the_worker_does_give_the_same_results() -> None:
    """The worker decodes records straight into the analysis form; replay and these tests
    feed pydantic models. Both fold to the same results."""
    events = partitioned(BASE, 3, random.Random(11))
    a = Analyzer(EXP)
    fast = slow = 0
    for i in range(0, len(events), 20):
        env = codec.encode_envelope("x", events[i : i + 20])
        if fast_decode(env.value, dict(env.headers)) is None:
            slow += 1  # a record with fault or phase events: the pydantic path
        else:
            fast += 1
        a.ingest(decode_record(env.value, dict(env.headers)))
    a.finish()
    assert fast > 0
    assert slow > 0
    assert [r.model_dump() for r in a.results()] == EXPECTED


def held_up(events: list[Event], kind: str, by_ms: float) -> list[Event]:
    """``events`` with the first ``kind`` event arriving ``by_ms`` after it was stamped (its
    producer was held up, e.g. by a busy machine, between stamping and emitting it)."""
    out = list(events)
    ev = out.pop(next(i for i, e in enumerate(out) if e.kind == kind))
    at = ev.ts_ns + round(by_ms * 1e6)
    out.insert(next((i for i, e in enumerate(out) if e.ts_ns >= at), len(out)), ev)
    return out


def test_an_event_behind_the_watermark_folds_the_same_however_arrivals_are_batched() -> None:
    """A fault's start arriving 1.5 s after it was stamped is late; where it folds must depend
    on the order of arrival only, not on how many events each ingest call held (live folds a
    quarter second of events at a time, replay thousands)."""
    events = held_up(scenario(), "fault.toxic_added", 1_500)
    one_by_one = results_of(events, chunk=1)
    for chunk in (2, 7, 97, 500, len(events)):
        assert results_of(events, chunk=chunk) == one_by_one, chunk


def _delayed(seed: int) -> list[Event]:
    """The base stream with up to 12 events arriving up to 3 s after they were stamped."""
    rng = random.Random(seed)
    events = list(BASE)
    for _ in range(rng.randint(1, 12)):
        i = rng.randrange(len(events))
        ev = events.pop(i)
        at = ev.ts_ns + rng.randint(0, 3_000) * 1_000_000
        events.insert(next((k for k, e in enumerate(events) if e.ts_ns >= at), len(events)), ev)
    return events


# Derandomized: the same examples on every machine and run (a seed that fails is a defect to
# fix, see the known one below, not a chance for CI to fail).
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 10_000),
    chunks=st.lists(st.integers(1, 300), min_size=2, max_size=3),
)
def test_late_arrivals_fold_the_same_for_any_batching(seed: int, chunks: list[int]) -> None:
    """Events delayed past the allowed lateness (up to 3 s) give the same records whatever
    the ingest batches."""
    events = _delayed(seed)
    first = results_of(events, chunk=chunks[0])
    for chunk in chunks[1:]:
        assert results_of(events, chunk=chunk) == first


def test_late_errors_end_an_error_burst_the_same_for_any_batching() -> None:
    """Found by the property above: a late error folded into an open burst had moved the
    burst's end back to its own time, so when the burst closed depended on the batches."""
    events = _delayed(927)
    assert results_of(events, chunk=2) == results_of(events, chunk=1)


def test_a_late_error_lies_inside_its_burst() -> None:
    from analyzers.core.patterns import PatternTracker

    p = PatternTracker(gap_ns=1_000, min_errors=2)
    for t in (5_000, 5_600, 5_200, 4_900):  # the last two arrive late
        p.error(t, "gw", "timeout", [], [])
    p.advance(6_500)  # 900 after the newest error: still open
    (b,) = p.all_bursts()
    assert (b.started_ns, b.ended_ns, b.errors) == (4_900, 5_600, 4)
    assert p.bursts == []


class _Stamped:
    """What :class:`~analyzers.core.ordering.TimeBase` reads of an event."""

    def __init__(self, generator_id: str, run_id: str, ts_ns: int, mono_ns: int) -> None:
        self.generator_id = generator_id
        self.run_id = run_id
        self.ts_ns = ts_ns
        self.mono_ns = mono_ns


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["g1", "g2"]),
            st.sampled_from(["r1", "r2"]),
            st.integers(0, 10_000),
            st.integers(0, 5_000),
        ),
        max_size=40,
    ),
    st.integers(0, 3_000),
)
def test_a_batch_gets_the_event_times_of_one_event_at_a_time(
    stamps: list[tuple[str, str, int, int]], max_step: int
) -> None:
    """Runs of one generator and run, interleaved runs, unmonotonic stamps and clock steps
    beyond ``max_step`` (re-anchoring): the batch gives every value, anchor and count the
    per-event path gives."""
    from analyzers.core.ordering import TimeBase

    events: list[Any] = [_Stamped(*s) for s in stamps]
    one = TimeBase({"g2": 7}, max_step)
    batch = TimeBase({"g2": 7}, max_step)
    expected = [one.time_of(ev) for ev in events]
    assert batch.times_of(events[:5]) + batch.times_of(events[5:]) == expected
    assert batch.reanchored == one.reanchored
    assert batch._anchors == one._anchors


class _Identified:
    def __init__(self, event_id: str) -> None:
        self.event_id = event_id


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 30), st.integers(0, 5_000_000_000)),
        max_size=40,
    ),
    st.integers(0, 40),
    st.integers(0, 5_000_000_000),
)
def test_a_batch_is_buffered_as_one_event_at_a_time(
    pushes: list[tuple[int, int]], cut: int, limit: int
) -> None:
    """Duplicate ids (hex and not), events late or too late after a release: a batch gives the
    late events, the statistics and what is buffered exactly as pushing each event does."""
    from analyzers.core.ordering import ReorderBuffer

    ids = [f"{n:032x}" if n % 3 else f"id-{n}" for n, _ in pushes]
    events: list[Any] = [_Identified(i) for i in ids]
    times = [t for _, t in pushes]
    one = ReorderBuffer(lateness_ns=0, horizon_ns=2_000_000_000)
    batch = ReorderBuffer(lateness_ns=0, horizon_ns=2_000_000_000)
    late_one: list[tuple[int, Any]] = []
    late_batch: list[tuple[int, Any]] = []
    for lo, hi in ((0, cut), (cut, len(events))):
        for t, ev in zip(times[lo:hi], events[lo:hi], strict=True):
            if one.push(t, ev, "p0", 5) is not None:
                late_one.append((t, ev))
        batch.push_many(
            times[lo:hi], events[lo:hi], "p0", 5, lambda t, ev: late_batch.append((t, ev))
        )
        assert one.pop_ready(limit) == batch.pop_ready(limit)
    assert late_batch == late_one
    assert batch.stats == one.stats
    assert batch.drain() == one.drain()
