"""A run's local event log: zstd batches in segment files, read back in order, each id once."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import Send
from spine.errors import EventFileError
from spine.eventlog import codec
from spine.eventlog.publisher import Publisher
from spine.eventlog.runlog import RunLogWriter, iter_raw, iter_run_events, read_run_batches
from spine.stack import free_port
from tests.eventlog.samples import every_kind, sample

if TYPE_CHECKING:
    from pathlib import Path

    from schemas.events import Event


def _sends(n: int) -> list[Event]:
    return [sample(Send, session="s1", seq=i, bytes=10) for i in range(n)]


def test_every_kind_round_trips_in_emit_order_across_segments(tmp_path: Path) -> None:
    events = every_kind() * 3 + _sends(500)
    log = RunLogWriter(tmp_path / "events", batch_events=7, segment_bytes=2000)
    for i, e in enumerate(events):
        if i % 2:  # bytes a producer encoded, or a model: the same record
            log.emit_encoded(codec.partition_key(e), codec.encode_event(e))
        else:
            log.emit(e)
    log.close()
    log.close()
    assert log.events == len(events)
    assert log.errors == 0
    assert len(list((tmp_path / "events").glob("*.seg"))) > 1
    unique = list({e.event_id: e for e in events}.values())
    assert list(iter_run_events(tmp_path / "events")) == unique  # every_kind() * 3: ids repeat
    assert [r["event_id"] for r in iter_raw(tmp_path / "events")] == [e.event_id for e in unique]

    big = RunLogWriter(tmp_path / "big")
    for e in _sends(4000):
        big.emit(e)
    big.close()
    assert big.bytes < 60 * 4000  # compressed: not the ~350 bytes of each event's JSON


async def test_a_batch_is_written_within_the_window_without_more_events(tmp_path: Path) -> None:
    log = RunLogWriter(tmp_path / "events", window_s=0.05)
    for e in _sends(3):
        log.emit(e)
    assert log.events == 0
    async with asyncio.timeout(10):
        while log.events < 3:  # the loop's timer seals it
            await asyncio.sleep(0.01)
    assert len(list(iter_run_events(tmp_path / "events"))) == 3
    log.close()


def test_a_torn_tail_keeps_what_was_whole_and_a_bad_batch_names_the_segment(
    tmp_path: Path,
) -> None:
    log = RunLogWriter(tmp_path / "events", batch_events=10)
    for e in _sends(25):
        log.emit(e)
    log.close()
    (seg,) = (tmp_path / "events").glob("*.seg")
    data = seg.read_bytes()
    seg.write_bytes(data[:-5])  # killed in the middle of the last batch
    assert [e.seq for e in iter_run_events(tmp_path / "events")] == list(range(20))  # type: ignore[attr-defined]

    frames = data.split(b"ASJ1")
    assert len(frames) == 4
    bad = tmp_path / "bad"
    bad.mkdir()
    from spine.eventlog.spool import pack

    env = codec.Envelope(b"", b"not zstd nor json", codec.headers_for(1), 1)
    (bad / "00000000000000000001.seg").write_bytes(pack(1, env))
    with pytest.raises(EventFileError, match=r"00000000000000000001\.seg: batch 1"):
        list(read_run_batches(bad))
    with pytest.raises(EventFileError, match="no such directory"):
        list(read_run_batches(tmp_path / "missing"))


@settings(max_examples=40, deadline=None)
@given(
    picks=st.lists(st.integers(min_value=0, max_value=29), min_size=1, max_size=120),
    batch=st.integers(min_value=1, max_value=17),
    cut=st.integers(min_value=0, max_value=400),
)
def test_any_sequence_with_repeats_reads_back_first_copies_in_order(
    tmp_path_factory: pytest.TempPathFactory, picks: list[int], batch: int, cut: int
) -> None:
    pool = _sends(30)
    d = tmp_path_factory.mktemp("runlog") / "events"
    log = RunLogWriter(d, batch_events=batch)
    for i in picks:
        log.emit(pool[i])
    log.close()
    first: dict[str, Event] = {}
    for i in picks:
        first.setdefault(pool[i].event_id, pool[i])
    assert list(iter_run_events(d)) == list(first.values())
    # Any truncation: a prefix of that, never an error.
    (seg,) = d.glob("*.seg")
    data = seg.read_bytes()
    seg.write_bytes(data[: max(len(data) - cut, 0)])
    got = list(iter_run_events(d))
    assert got == list(first.values())[: len(got)]


@settings(max_examples=60, deadline=None)
@given(flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(1, 255)), max_size=4))
def test_corrupt_bytes_yield_a_prefix_of_the_frames_never_an_error(
    flips: list[tuple[int, int]],
) -> None:
    from spine.eventlog.spool import pack, read_frames

    envs = [codec.encode_envelope(f"k{i}", _sends(3)) for i in range(6)]
    data = bytearray(b"".join(pack(i + 1, env) for i, env in enumerate(envs)))
    for pos, bit in flips:
        data[pos % len(data)] ^= bit
    frames, torn = read_frames(bytes(data))
    assert [seq for seq, _ in frames] == list(range(1, len(frames) + 1))
    assert [env for _, env in frames] == envs[: len(frames)]  # crc32 caught every change
    assert torn == (len(frames) < len(envs))


def test_reap_reads_a_runs_local_log(tmp_path: Path) -> None:
    from injector.reap import read_events

    events = every_kind()
    log = RunLogWriter(tmp_path / "events")
    for e in events + events[:3]:  # a repeat is read once
        log.emit(e)
    log.close()
    assert list(read_events(tmp_path / "events")) == events


async def test_a_run_log_keeps_the_publishers_batches(tmp_path: Path) -> None:
    """As a game day wires it: the publisher hands each batch it seals to the run's log, which
    then holds every event once, in emit order within each partition key (as Kafka does), in
    the same batches as the publisher's own log. The broker is unreachable: sealing never
    waits for it."""
    events = [
        sample(Send, session=f"s{i % 3}", tenant=f"t{i % 2}", seq=i, bytes=10) for i in range(900)
    ]
    events += every_kind()
    dead = f"127.0.0.1:{free_port('127.0.0.1')}"
    log = RunLogWriter(tmp_path / "events")
    pub = Publisher(dead, "events", state_dir=tmp_path / "state", batch_events=100,
                    delivery_timeout_s=1, flush_timeout_s=0.2)  # fmt: skip
    sealed: list[codec.Envelope] = []

    def keep(env: codec.Envelope) -> None:
        sealed.append(env)
        log.write_batch(env)

    pub.on_sealed = keep
    await pub.start()
    try:
        for i, e in enumerate(events):
            if i % 2:
                pub.emit_encoded(codec.partition_key(e), codec.encode_event(e))
            else:
                pub.emit(e)
        pub.seal()
    finally:
        pub.on_sealed = None
        log.close()
        await pub.aclose()
    got = list(iter_run_events(tmp_path / "events"))
    assert sorted(e.event_id for e in got) == sorted(e.event_id for e in events)
    by_key: dict[str, list[str]] = {}
    for e in got:
        by_key.setdefault(codec.partition_key(e), []).append(e.event_id)
    for key, ids in by_key.items():
        assert ids == [e.event_id for e in events if codec.partition_key(e) == key], key
    assert [(env.count, len(env.value)) for env in sealed] == _frame_counts(tmp_path / "events")
    assert log.events == len(events) == sum(env.count for env in sealed)


def _frame_counts(directory: Path) -> list[tuple[int, int]]:
    """(events, bytes of the compressed value) of each frame of a run log, in order."""
    from spine.eventlog.spool import read_frames

    out = []
    for seg in sorted(directory.glob("*.seg")):
        frames, torn = read_frames(seg.read_bytes())
        assert not torn
        out += [(env.count, len(env.value)) for _, env in frames]
    return out
