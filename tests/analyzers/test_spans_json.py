"""Span records in OTLP's JSON form (what the Collector's Kafka exporter writes with
``encoding: otlp_json``) decode to the same spans as the protobuf form; anything else is a
``ValueError`` naming where, never another exception."""

from __future__ import annotations

import base64

import orjson
import pytest
from google.protobuf.json_format import MessageToDict
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from analyzers.spans import SpanGraphBuilder, decode_spans
from tests.analyzers.test_spans_cli import three_service_trace


def otlp_json(request_dict: dict[str, object]) -> bytes:
    """OTLP/JSON as the spec has it: the protobuf JSON mapping, but ids in hex, not base64."""

    def fix(node: object) -> object:
        if isinstance(node, dict):
            return {
                k: base64.b64decode(v).hex()
                if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str)
                else fix(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [fix(x) for x in node]
        return node

    return orjson.dumps(fix(request_dict))


def test_json_and_protobuf_records_give_the_same_spans_and_edges() -> None:
    request = encode_spans(three_service_trace())
    from_proto = decode_spans(request.SerializeToString())
    as_json = otlp_json(MessageToDict(request))
    from_json = decode_spans(as_json)
    assert from_json == from_proto
    assert len(from_json) == 4
    assert sum(s.parent_span_id is None for s in from_json) == 1
    assert sorted(SpanGraphBuilder().add(from_json)) == [
        ("gateway", "message"),
        ("message", "redis"),
    ]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (b"{not json", "not an OTLP/JSON"),
        (b"[]", "not an OTLP"),
        (b'{"resourceSpans": 3}', "resourceSpans: not a list"),
        (b'{"resourceSpans": [{"scopeSpans": 5}]}', r"resourceSpans\[0\].scopeSpans: not a list"),
        (b'{"resourceSpans": [{"resource": 5}]}', r"resourceSpans\[0\].resource: not an object"),
        (
            b'{"resourceSpans": [{"resource": {"attributes": [7]}}]}',
            r"resource.attributes\[0\]: not an object",
        ),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz"}]}]}]}', "traceId"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "'
            + b"a" * 32
            + b'", "spanId": "'
            + b"b" * 15
            + b'"}]}]}]}',
            r"resourceSpans\[0\].scopeSpans\[0\].spans\[0\].spanId",
        ),
    ],
)
def test_bad_json_records_are_named(record: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_spans(record)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


hexes = st.sampled_from(["a" * 32, "b" * 16, "", "0x12", "zz" * 8]) | json_values
span_like = st.fixed_dictionaries(
    {}, optional={"traceId": hexes, "spanId": hexes, "parentSpanId": hexes}
)
shaped = st.fixed_dictionaries(
    {
        "resourceSpans": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "resource": json_values,
                    "scopeSpans": st.lists(
                        st.fixed_dictionaries(
                            {}, optional={"spans": st.lists(span_like) | json_values}
                        )
                        | json_values,
                        max_size=2,
                    ),
                },
            )
            | json_values,
            max_size=3,
        )
    }
)


@settings(max_examples=400)
@given(
    st.one_of(
        shaped.map(orjson.dumps),
        st.binary(max_size=200),
        json_values.map(orjson.dumps),
        st.dictionaries(
            st.sampled_from(["resourceSpans", "scopeSpans", "spans", "resource"]),
            json_values,
            max_size=3,
        ).map(orjson.dumps),
    )
)
def test_any_record_decodes_or_raises_value_error(record: bytes) -> None:
    try:
        spans = decode_spans(record)
    except ValueError:
        return
    assert all(len(s.trace_id) == 32 and len(s.span_id) == 16 for s in spans)
