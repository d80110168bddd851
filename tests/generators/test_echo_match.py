"""An echo identical to a stamp the session sent is matched by equality, without parsing the
frame or checking the MAC; everything else (other JSON spellings, duplicates, forgeries) goes
through the decoder and the stamp check and must be recorded exactly as before."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson

from schemas.events import Receive
from spine.eventlog import MemorySink
from tests.generators.conftest import profile
from tests.generators.fakes import FakeEngine, fake_generator

if TYPE_CHECKING:
    import pytest

    from generators.stats import GeneratorStats

Replies = Callable[[str], list[str]]


async def _run(replies: Replies, timeout_ms: int = 5000) -> tuple[list[Receive], GeneratorStats]:
    prof = profile(
        tenants=[{"name": "acme", "users": 1}],
        script=[
            {"do": "connect"},
            {"do": "send", "count": 3, "rate_per_s": 50, "timeout_ms": timeout_ms},
            {"do": "disconnect"},
        ],
    )
    sink = MemorySink()
    gen = fake_generator(prof, FakeEngine(replies=replies), tick_s=0.002, sink=sink)
    stats = await asyncio.wait_for(gen.run(), 10)
    return [e for e in sink.events if isinstance(e, Receive)], stats


def _shape(e: Receive) -> tuple[object, ...]:
    return (
        e.seq,
        e.bytes,
        e.latency_ms is not None,
        e.origin_tenant,
        e.origin_user,
        e.origin_session,
        e.origin_seq,
        e.checksum_ok,
        e.status,
        e.channel,
    )


def _respaced(frame: str) -> list[str]:
    data = orjson.loads(frame)["data"]
    return ['{"op": "echo", "data": "' + data + '"}']


async def test_own_echo_events_equal_those_of_the_decoding_path() -> None:
    fast, fast_stats = await _run(lambda frame: [frame])
    slow, slow_stats = await _run(_respaced)
    assert [e.seq for e in fast] == [1, 2, 3]
    assert all(e.origin_tenant == "acme" and e.origin_seq == e.seq for e in fast)
    assert all(e.checksum_ok and e.latency_ms is not None for e in fast)
    assert [_shape(e)[2:] for e in fast] == [_shape(e)[2:] for e in slow]
    assert [e.bytes + 3 for e in fast] == [e.bytes for e in slow]  # the three spaces
    assert fast_stats.round_trips == slow_stats.round_trips == 3
    assert fast_stats.checksum_failures == slow_stats.checksum_failures == 0


async def test_a_duplicate_echo_is_recorded_but_counted_once() -> None:
    recv, stats = await _run(lambda frame: [frame, frame])
    assert len(recv) == 6
    assert stats.round_trips == 3
    assert [e.seq for e in recv] == [1, 1, 2, 2, 3, 3]
    assert all(e.checksum_ok and e.origin_seq == e.seq for e in recv)


async def test_a_forged_stamp_is_not_matched_by_equality() -> None:
    def forged_then_genuine(frame: str) -> list[str]:
        mac = frame[-18:-2]
        bad = frame[:-18] + ("0" if mac[0] != "0" else "1") + mac[1:] + '"}'
        return [bad, frame]

    recv, stats = await _run(forged_then_genuine)
    assert [e.checksum_ok for e in recv] == [False, True] * 3
    assert stats.checksum_failures == 3
    assert stats.round_trips == 3


async def test_an_echo_after_its_timeout_is_recorded_but_not_a_round_trip() -> None:
    held: list[str] = []

    def hold_the_first(frame: str) -> list[str]:
        # seq 1 is answered only with seq 3, two send intervals after its 5 ms timeout; the
        # ticker expires it in the tick that sends seq 3, before that tick's replies run.
        if not held:
            held.append(frame)
            return []
        return [frame, held.pop()] if "|3|" in frame else [frame]

    recv, stats = await _run(hold_the_first, timeout_ms=5)
    assert stats.timeouts == 1
    assert stats.round_trips == 2
    assert sorted(e.seq for e in recv if e.seq is not None) == [1, 2, 3]
    late = next(e for e in recv if e.seq == 1)
    assert late.checksum_ok
    assert late.origin_seq == 1


async def test_own_echoes_skip_the_stamp_check_and_others_do_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import generators.session as session_module

    checked: list[str] = []

    def counting_verify(key: bytes, text: str, channel: str | None = None) -> object:
        checked.append(text)
        return real_verify(key, text, channel)

    real_verify = session_module.verify
    monkeypatch.setattr(session_module, "verify", counting_verify)
    recv, stats = await _run(lambda frame: [frame])
    assert (len(recv), stats.round_trips, checked) == (3, 3, [])
    recv, stats = await _run(_respaced)
    assert (len(recv), stats.round_trips, len(checked)) == (3, 3, 3)
