"""Common base of every event: identity, provenance, time and trace context."""

from __future__ import annotations

import os
import time
import uuid
from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

SCHEMA_VERSION = 3
"""Version of the event schemas. Bumped on any incompatible change; readers reject unknown
versions with a clear error instead of guessing.

2: ``session.send`` has ``late_ms``; new kind ``session.skipped`` (a reader of version 1,
which forbids unknown fields and kinds, cannot read them; version 1 events read as before).
3: new kind ``log.loss`` (events the event log lost for good; earlier events read as before)."""

HexTraceId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
HexSpanId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=200)]


# How a target is spoken to (no docstring: it would change the committed JSON schemas).
class Protocol(StrEnum):
    WS = "ws"
    HTTP = "http"
    TCP = "tcp"


def new_event_id() -> str:
    """A unique, roughly time-ordered event id (32 hex chars: ns clock + random)."""
    return f"{time.time_ns():016x}{int.from_bytes(os.urandom(8), 'big'):016x}"


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


class Frozen(BaseModel):
    """Base of all schema models: immutable, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class EventBase(Frozen):
    """Fields every event carries.

    ``event_id`` is unique per event and is what consumers de-duplicate on under
    at-least-once delivery. ``ts_ns`` is the wall clock (ns since the epoch) of the producing
    process; ``mono_ns`` is a monotonic offset (ns) since that producer started, so intervals
    measured by one producer are immune to wall-clock steps.
    """

    KIND: ClassVar[str] = ""

    schema_version: int = SCHEMA_VERSION
    event_id: str = Field(default_factory=new_event_id, min_length=1, max_length=64)
    experiment_id: Identifier
    run_id: Identifier
    generator_id: Identifier
    ts_ns: int = Field(ge=0)
    mono_ns: int = Field(default=0, ge=0)
    trace_id: HexTraceId | None = None
    span_id: HexSpanId | None = None
