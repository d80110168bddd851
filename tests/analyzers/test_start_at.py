"""Inputs of the worker's start point: ``--start-at`` and the stored spans it reads."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from analyzers.cli import parse_start
from analyzers.errors import InputError
from spine.store import Span, _span, resume_point_ns, write_span

if TYPE_CHECKING:
    from spine.stack import EmbeddedStack


@given(st.text(max_size=30))
def test_start_at_is_a_keyword_or_a_time_else_a_clear_error(text: str) -> None:
    valid = text in ("stored", "earliest") or (
        text.isascii() and text.isdigit() and len(text) <= 16
    )
    if not valid:
        with pytest.raises(InputError, match="--start-at"):
            parse_start(text)
        return
    start = parse_start(text)
    assert start == (text if text in ("stored", "earliest") else int(text))


def test_start_at_values() -> None:
    assert parse_start("stored") == "stored"
    assert parse_start("earliest") == "earliest"
    assert parse_start("1700000000000") == 1_700_000_000_000
    with pytest.raises(InputError, match="--start-at"):
        parse_start("-5")


values = st.one_of(st.binary(max_size=12), st.text(max_size=12))


@given(st.dictionaries(st.sampled_from(["run_id", "first_ns", "end_ns", "final", "x"]), values))
def test_a_stored_span_is_read_or_ignored_never_a_crash(raw: dict[str, bytes | str]) -> None:
    span = _span(raw)  # type: ignore[arg-type]
    assert span is None or isinstance(span, Span)


def test_a_stored_span_round_trips_its_fields() -> None:
    raw = {b"run_id": b"r1", b"first_ns": b"5", b"end_ns": b"9", b"final": b"1"}
    assert _span(raw) == Span("r1", 5, 9, True)  # type: ignore[arg-type]


def test_a_stored_span_reads_its_topic_or_none() -> None:
    raw = {b"run_id": b"r1", b"first_ns": b"5", b"end_ns": b"9", b"final": b"0", b"topic": b"ev"}
    assert _span(raw) == Span("r1", 5, 9, False, "ev")  # type: ignore[arg-type]
    del raw[b"topic"]
    assert _span(raw) == Span("r1", 5, 9, False, "")  # type: ignore[arg-type]


async def test_the_resume_point_of_a_topic_ignores_runs_of_other_topics(
    stack: EmbeddedStack,
) -> None:
    """A finished run logged to another topic (here one whose event times are ahead of this
    log's records) must not move where a worker on this topic starts reading."""
    redis = Redis.from_url(stack.redis_url.rsplit("/", 1)[0] + "/9")  # a database of its own
    try:
        await redis.flushdb()
        tag = uuid.uuid4().hex[:8]
        assert await resume_point_ns(redis, f"ev-{tag}") is None
        await write_span(redis, f"other-{tag}", Span("r", 10**20, 2 * 10**20, True, "ev-other"))
        assert await resume_point_ns(redis, f"ev-{tag}") is None
        assert await resume_point_ns(redis, "ev-other") == 2 * 10**20
        await write_span(redis, f"mine-{tag}", Span("r", 100, 200, True, f"ev-{tag}"))
        await write_span(redis, f"open-{tag}", Span("r", 300, 400, False, "ev-other"))
        assert await resume_point_ns(redis, f"ev-{tag}") == 200
        # a span that does not say its topic (written before spans recorded it) still counts
        await write_span(redis, f"legacy-{tag}", Span("r", 150, 250, False))
        assert await resume_point_ns(redis, f"ev-{tag}") == 150
        assert await resume_point_ns(redis, "ev-other") == 150
    finally:
        await redis.flushdb()
        await redis.aclose()
