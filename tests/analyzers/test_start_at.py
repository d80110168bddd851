"""Inputs of the worker's start point: ``--start-at`` and the stored spans it reads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from analyzers.cli import parse_start
from analyzers.errors import InputError
from spine.store import Span, _span


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
