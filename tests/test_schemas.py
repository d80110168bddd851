"""Event schemas: every kind round-trips, bad input is named, committed JSON Schema is current."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from schemas import SCHEMA_VERSION, parse_event
from schemas.events import EVENT_TYPES, Receive, Send, ToxicAdded, ToxicSpec
from schemas.export import FAMILIES, OUT_DIR, render
from schemas.load import LoadProfile
from schemas.targets import Target, TargetGraph

COMMON = {
    "experiment_id": "exp-1",
    "run_id": "run-1",
    "generator_id": "gen-1",
    "ts_ns": 1_700_000_000_000_000_000,
}


def test_every_event_kind_has_a_unique_kind() -> None:
    kinds = [t.model_fields["kind"].default for t in EVENT_TYPES]
    assert len(kinds) == len(set(kinds))
    assert all(isinstance(k, str) and "." in k for k in kinds)


def test_round_trip_through_json_keeps_type_and_values() -> None:
    send = Send(
        **COMMON,
        tenant="t1",
        user="u1",
        session="s1",
        target="gateway",
        protocol="ws",
        seq=7,
        bytes=128,
        trace_id="0" * 31 + "1",
        span_id="0" * 15 + "2",
    )
    back = parse_event(send.model_dump_json())
    assert back == send
    assert isinstance(back, Send)
    assert back.schema_version == SCHEMA_VERSION


def test_nested_toxic_spec_round_trips() -> None:
    ev = ToxicAdded(
        **COMMON,
        proxy="redis",
        toxic=ToxicSpec(name="lat", type="latency", attributes={"latency": 100, "jitter": 5}),
        ttl_ms=5000,
    )
    assert parse_event(ev.model_dump_json()) == ev


def test_event_ids_are_unique() -> None:
    ids = {
        Receive(
            **COMMON, tenant="t", user="u", session="s", target="x", protocol="tcp", bytes=1
        ).event_id
        for _ in range(2000)
    }
    assert len(ids) == 2000


def test_unknown_kind_is_rejected_with_the_tag_named() -> None:
    with pytest.raises(ValidationError) as info:
        parse_event({**COMMON, "kind": "session.teleport"})
    assert "session.teleport" in str(info.value)


def test_events_are_frozen_and_reject_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="bogus"):
        parse_event({**COMMON, "kind": "experiment.aborted", "reason": "x", "bogus": 1})
    ev = parse_event({**COMMON, "kind": "experiment.aborted", "reason": "x"})
    with pytest.raises(ValidationError):
        ev.reason = "y"  # type: ignore[union-attr]


def test_bad_trace_id_is_rejected() -> None:
    with pytest.raises(ValidationError, match="trace_id"):
        parse_event({**COMMON, "kind": "experiment.aborted", "reason": "x", "trace_id": "xyz"})


def test_target_graph_rejects_cycles_and_unknown_dependencies() -> None:
    a = Target(name="a", upstream="127.0.0.1:1", depends_on=["b"])
    b = Target(name="b", upstream="127.0.0.1:2", depends_on=["a"])
    with pytest.raises(ValidationError, match="cycle"):
        TargetGraph(targets=[a, b])
    with pytest.raises(ValidationError, match="unknown c"):
        TargetGraph(targets=[Target(name="a", upstream="127.0.0.1:1", depends_on=["c"])])
    g = TargetGraph(
        targets=[
            a.model_copy(update={"depends_on": ["b"]}),
            b.model_copy(update={"depends_on": []}),
        ]
    )
    assert g.dependents_of("b") == ["a"]


def test_load_profile_counts_sessions_and_requires_connect() -> None:
    lp = LoadProfile(
        target="gw",
        tenants=[{"name": "a", "users": 3, "sessions_per_user": 2}, {"name": "b", "users": 4}],
    )
    assert lp.total_sessions == 10
    with pytest.raises(ValidationError, match="connect step"):
        LoadProfile(target="gw", tenants=[{"name": "a", "users": 1}], script=[{"do": "send"}])


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_committed_json_schema_matches_models(name: str) -> None:
    committed = (OUT_DIR / f"{name}.schema.json").read_text()
    assert json.loads(committed) == json.loads(render(name)), (
        f"schemas/jsonschema/{name}.schema.json is stale: run `python -m schemas.export`"
    )
