"""A run's span file (``spans.jsonl``) read back by ``aftershock traces``: every span the
exporter wrote comes back with its fields, whatever its text holds; a file cut short by a
crash gives the spans before the cut; any other bad line is a ``RunDirError`` naming the file
and the line."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from aftershock.gameday.traces import Span, read_spans
from aftershock.report.errors import RunDirError
from spine.telemetry import JsonlSpanExporter, json_writable

if TYPE_CHECKING:
    from pathlib import Path

    from opentelemetry.sdk.trace import ReadableSpan

# Text with the line breaks other than "\n" that JSON does not escape (U+2028, U+2029, NEL)
# and those it does.
text = st.text(
    st.characters(codec="utf-8") | st.sampled_from(["\u2028", "\u2029", "\x85", "\r", "\x0b"]),
    max_size=12,
)
attribute_values = (
    text
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)  # what JSON (orjson) writes
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.lists(text, max_size=3)
    | st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3)
)
span_plans = st.lists(
    st.tuples(
        text,  # name
        st.dictionaries(text.filter(bool), attribute_values, max_size=3),  # keys: not empty
        st.sampled_from(StatusCode),
        text,  # error description
        st.integers(0, 10),  # parent: one of the spans before, if any
    ),
    min_size=1,
    max_size=6,
)


def _write(path: Path, plans: list[Any]) -> list[ReadableSpan]:
    """The spans of ``plans`` through the SDK into ``path``, as a run writes them."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonlSpanExporter(path)))
    tracer = provider.get_tracer("test")
    spans: list[Any] = []
    for name, attributes, code, description, parent in plans:
        context = trace.set_span_in_context(spans[parent]) if parent < len(spans) else None
        span = tracer.start_span(name, context=context, attributes=attributes)
        span.set_status(Status(code, description if code is StatusCode.ERROR else None))
        spans.append(span)
    for span in spans:
        span.end()
    provider.shutdown()
    return spans


def _expected(span: ReadableSpan) -> Span:
    ctx = span.get_span_context()
    assert ctx is not None
    assert span.start_time is not None
    assert span.end_time is not None
    return Span(
        trace_id=trace.format_trace_id(ctx.trace_id),
        span_id=trace.format_span_id(ctx.span_id),
        parent_id=None if span.parent is None else trace.format_span_id(span.parent.span_id),
        name=span.name,
        start_ns=span.start_time,
        end_ns=span.end_time,
        status=span.status.status_code.name,
        description=span.status.description or "",
        attributes={
            k: list(v) if isinstance(v, tuple) else v for k, v in (span.attributes or {}).items()
        },
    )


@settings(max_examples=100, deadline=None)
@given(plans=span_plans)
def test_every_span_written_reads_back_with_its_fields(
    tmp_path_factory: pytest.TempPathFactory, plans: list[Any]
) -> None:
    path = tmp_path_factory.mktemp("run") / "spans.jsonl"
    written = [_expected(s) for s in _write(path, plans)]
    got = read_spans(path)
    # The file has the times to the microsecond (ISO 8601, as the SDK writes them).
    for g, w in zip(got, written, strict=True):
        assert abs(g.start_ns - w.start_ns) <= 1000
        assert abs(g.end_ns - w.end_ns) <= 1000
        g.start_ns, g.end_ns = w.start_ns, w.end_ns
    assert got == written


# What a server's answer or an escape in a frame may put in a span's text (lone surrogates),
# and integers of any size.
wild_text = st.text(
    st.characters(codec="utf-8") | st.sampled_from(["\ud800", "\udfff", "\ud83d"]), max_size=8
)
wild_values = (
    wild_text
    | st.integers()
    | st.lists(wild_text, max_size=3)
    | st.lists(st.integers(), max_size=3)
)


@settings(max_examples=100, deadline=None)
@given(
    name=wild_text,
    attributes=st.dictionaries(text.filter(bool), wild_values, max_size=4),
    description=wild_text,
)
@example(name="\ud83d\ude00", attributes={"big": 2**64, "small": -(2**63) - 1}, description="")
def test_every_span_is_written_whatever_its_text_and_numbers_hold(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    attributes: dict[str, Any],
    description: str,
) -> None:
    """Text JSON cannot hold reads back as U+FFFD, an escaped pair as its character, an
    integer beyond 64 bits as its decimal text; the span is never dropped."""
    path = tmp_path_factory.mktemp("run") / "spans.jsonl"
    [span] = _write(path, [(name, attributes, StatusCode.ERROR, description, 0)])
    [got] = read_spans(path)
    expected = _expected(span)
    assert (got.trace_id, got.span_id) == (expected.trace_id, expected.span_id)
    assert got.name == json_writable(expected.name)
    assert got.description == json_writable(expected.description)
    assert got.attributes == json_writable(expected.attributes)


@settings(max_examples=100, deadline=None)
@given(plans=span_plans, data=st.data())
def test_a_file_cut_short_gives_the_spans_before_the_cut(
    tmp_path_factory: pytest.TempPathFactory, plans: list[Any], data: st.DataObject
) -> None:
    path = tmp_path_factory.mktemp("run") / "spans.jsonl"
    _write(path, plans)
    whole = path.read_bytes()
    full = read_spans(path)
    cut = data.draw(st.integers(0, len(whole)), label="cut")
    path.write_bytes(whole[:cut])
    got = read_spans(path)
    assert got == full[: len(got)]
    # Every line that is there in full, the last one also when only its newline is missing.
    whole_lines = whole[:cut].count(b"\n") + (whole[cut : cut + 1] == b"\n" and cut > 0)
    assert len(got) == whole_lines


def _dumps(value: object) -> bytes:
    return json.dumps(value).encode()


def _not_a_time(value: object) -> bool:
    try:
        dt.datetime.fromisoformat(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True
    return False


valid_context = {"trace_id": "0" * 31 + "1", "span_id": "0" * 15 + "1"}
times = {"start_time": "2024-01-01T00:00:00.000001Z", "end_time": "2024-01-01T00:00:01Z"}
not_objects = st.none() | st.booleans() | st.integers() | text | st.lists(st.integers())
truthy_non_objects = (
    st.just(True) | st.integers().filter(bool) | text.filter(bool) | st.lists(text, min_size=1)
)
# Lines that are JSON but not a span, each way a span can be wrong.
broken_spans = st.one_of(
    not_objects.map(_dumps),
    st.fixed_dictionaries({"context": not_objects}).map(_dumps),
    st.fixed_dictionaries(
        {"context": st.fixed_dictionaries({"trace_id": not_objects, "span_id": not_objects})}
    ).map(_dumps),
    st.fixed_dictionaries({"context": st.just(valid_context), "status": truthy_non_objects}).map(
        lambda d: _dumps(d | times)
    ),
    st.fixed_dictionaries(
        {"context": st.just(valid_context), "attributes": truthy_non_objects}
    ).map(lambda d: _dumps(d | times)),
    st.fixed_dictionaries(
        {"context": st.just(valid_context), "start_time": not_objects.filter(_not_a_time)}
    ).map(lambda d: _dumps(d | {"end_time": times["end_time"]})),
)
# Lines that are not JSON (or not UTF-8).
not_json = st.binary(min_size=1, max_size=30).filter(lambda b: b"\n" not in b and not _is_json(b))


def _is_json(line: bytes) -> bool:
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return True


@settings(max_examples=200, deadline=None)
@given(plans=span_plans, bad=broken_spans | not_json, data=st.data())
def test_a_bad_line_is_named_with_its_number(
    tmp_path_factory: pytest.TempPathFactory, plans: list[Any], bad: bytes, data: st.DataObject
) -> None:
    path = tmp_path_factory.mktemp("run") / "spans.jsonl"
    _write(path, plans)
    lines = path.read_bytes().split(b"\n")  # the last one empty: the file ends in a newline
    at = data.draw(st.integers(0, len(lines) - 2), label="line")
    lines[at] = bad
    path.write_bytes(b"\n".join(lines))
    if not bad.strip():  # a blank line is passed over
        assert len(read_spans(path)) == len(plans) - 1
        return
    with pytest.raises(RunDirError) as caught:
        read_spans(path)
    assert str(caught.value).startswith(f"{path}:{at + 1}: "), caught.value


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"name": "x"}', ":1: not a span: no context object"),
        (b"[1]\n", ":1: not a span: a span is a JSON object"),
        (b"\xff\n{}", ":1: not JSON: "),
        (
            _dumps({"context": valid_context, "status": "ok"} | times),
            ":1: the span's status is not an object",
        ),
        (
            json.dumps({"context": valid_context, "start_time": "soon"}).encode(),
            ":1: bad time 'soon'",
        ),
    ],
)
def test_bad_lines_say_what_is_wrong(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "spans.jsonl"
    path.write_bytes(content)
    with pytest.raises(RunDirError, match=re.escape(f"{path}{message}")):
        read_spans(path)


def test_a_missing_span_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match=f"cannot read {tmp_path / 'spans.jsonl'}: No such"):
        read_spans(tmp_path / "spans.jsonl")
