"""One valid, fully populated event of every kind in ``schemas.events.EVENT_TYPES``.

Required fields are filled from their annotations, so kinds added later are covered too;
``RICH`` sets optional fields of the known kinds so nested models, lists, dicts, floats and
None all travel through the codec.
"""

from __future__ import annotations

import enum
import types
import typing
from typing import Any

from pydantic import BaseModel

from schemas.events import EVENT_TYPES, Event, EventAdapter, ToxicSpec

COMMON: dict[str, Any] = {
    "experiment_id": "exp-samples",
    "run_id": "run-1",
    "generator_id": "gen-1",
    "ts_ns": 1_763_800_000_123_456_789,
    "mono_ns": 42_000,
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "span_id": "00f067aa0ba902b7",
}
SESSION = {
    "tenant": "acme",
    "user": "u-7",
    "session": "s-7-1",
    "target": "gateway",
    "protocol": "ws",
}

RICH: dict[str, dict[str, Any]] = {
    "session.send": {
        **SESSION, "seq": 3, "bytes": 180, "channel": "general", "expect": "broadcast",
    },
    "session.receive": {
        **SESSION, "seq": 3, "bytes": 180, "latency_ms": 1.25, "origin_tenant": "acme",
        "origin_user": "u-7", "origin_session": "s-7-1", "origin_seq": 3, "checksum_ok": True,
        "status": None, "channel": "général",
    },
    "session.error": {
        **SESSION, "error_class": "ConnectionResetError", "message": "peer reset \"x\"\n",
        "phase": "send", "seq": 9,
    },
    "fault.toxic_added": {
        "proxy": "redis", "source": "injector", "fault_id": "f-1", "ttl_ms": 5000,
        "toxic": ToxicSpec(
            name="f-1", type="latency", stream="upstream", toxicity=0.5,
            attributes={"latency": 100, "jitter": 5.5, "mode": "flip", "on": True, "l": ["a"]},
        ),
    },
    "proxy.connection_closed": {
        "proxy": "redis", "connection_id": "c1", "client": "127.0.0.1:5555", "bytes_up": 10,
        "bytes_down": 20, "toxics_hit": ["f-1"],
    },
    "result.episode": {
        "episode_id": "e1", "started_ns": 5, "ended_ns": 9, "duration_ms": 4e-6,
        "faults_active": ["f-1"], "error_classes": {"Timeout": 3}, "scope": "target",
        "scope_key": "gateway",
    },
}  # fmt: skip


def _value(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _value(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return typing.get_args(annotation)[0]
    if origin in (typing.Union, types.UnionType):
        return _value(next(a for a in typing.get_args(annotation) if a is not type(None)))
    if origin is list:
        return []
    if origin is dict:
        return {}
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            return next(iter(annotation))
        if issubclass(annotation, BaseModel):
            return annotation(**_required(annotation))
        if annotation is bool:
            return True
        if annotation in (int, float):
            return annotation(1)
        if annotation is str:
            return "x"
    raise TypeError(f"no sample value for {annotation!r}")


def _required(model: type[BaseModel]) -> dict[str, Any]:
    return {
        name: _value(field.annotation)
        for name, field in model.model_fields.items()
        if field.is_required() and name not in COMMON
    }


def sample(model: type[BaseModel], **overrides: Any) -> Event:
    kind = model.model_fields["kind"].default
    fields = {**COMMON, **_required(model), **RICH.get(kind, {}), **overrides}
    return EventAdapter.validate_python(model(**fields))


def every_kind(**overrides: Any) -> list[Event]:
    return [sample(t, **overrides) for t in EVENT_TYPES]
