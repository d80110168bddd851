"""Builds session events on the hot path and hands them to an :class:`EventSink`.

Events are built without validation from values this module controls: :func:`_construct` does
what pydantic's ``model_construct`` does for a complete set of fields, minus its per-field
default handling, which made it the most expensive call per message. ``tests/generators``
checks every kind emitted here against the schema (JSON round trip equals the original).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Literal, TypeVar

from schemas.base import SCHEMA_VERSION
from schemas.events import (
    Connected,
    ConnectStart,
    Disconnect,
    Receive,
    Send,
    SessionError,
)

if TYPE_CHECKING:
    from pydantic import BaseModel

    from aftershock.eventlog.sink import EventSink
    from schemas.events import Protocol as WireProtocol

M = TypeVar("M", bound="BaseModel")
_setattr = object.__setattr__
_FIELDS_SET: dict[type[BaseModel], set[str]] = {}


def _construct(cls: type[M], values: dict[str, object]) -> M:
    """``cls.model_construct(**values)`` for a ``values`` holding every field of ``cls``."""
    obj = cls.__new__(cls)
    _setattr(obj, "__dict__", values)
    fields_set = _FIELDS_SET.get(cls)
    if fields_set is None:
        fields_set = _FIELDS_SET[cls] = set(cls.model_fields)
    # Shared per class: frozen events never change their set of fields.
    _setattr(obj, "__pydantic_fields_set__", fields_set)
    _setattr(obj, "__pydantic_extra__", None)
    _setattr(obj, "__pydantic_private__", None)
    return obj


Phase = Literal["connect", "auth", "send", "receive", "close"]
Expect = Literal["echo", "broadcast", "response", "none"]


class Recorder:
    __slots__ = (
        "_base",
        "_counter",
        "_id_tail",
        "_mono0",
        "emitted",
        "sink",
    )

    def __init__(
        self,
        sink: EventSink,
        *,
        experiment_id: str,
        run_id: str,
        generator_id: str,
        target: str,
        protocol: WireProtocol,
    ) -> None:
        self.sink = sink
        self._mono0 = time.monotonic_ns()
        self._id_tail = os.urandom(4).hex()
        self._counter = 0
        self.emitted = 0
        self._base = {
            "schema_version": SCHEMA_VERSION,
            "experiment_id": experiment_id,
            "run_id": run_id,
            "generator_id": generator_id,
            "target": target,
            "protocol": protocol,
        }

    def _common(
        self, tenant: str, user: str, session: str, trace_id: str | None, span_id: str | None
    ) -> dict[str, object]:
        ts = time.time_ns()
        self._counter += 1
        self.emitted += 1
        d = dict(self._base)
        d["event_id"] = f"{ts:016x}{self._id_tail}{self._counter & 0xFFFFFFFF:08x}"
        d["ts_ns"] = ts
        d["mono_ns"] = time.monotonic_ns() - self._mono0
        d["trace_id"] = trace_id
        d["span_id"] = span_id
        d["tenant"] = tenant
        d["user"] = user
        d["session"] = session
        return d

    def connect_start(
        self, who: tuple[str, str, str], attempt: int, trace: tuple[str | None, str | None]
    ) -> None:
        d = self._common(*who, *trace)
        d["kind"] = "session.connect_start"
        d["attempt"] = attempt
        self.sink.emit(_construct(ConnectStart, d))

    def connected(
        self,
        who: tuple[str, str, str],
        attempt: int,
        connect_ms: float,
        trace: tuple[str | None, str | None],
    ) -> None:
        d = self._common(*who, *trace)
        d["kind"] = "session.connected"
        d["attempt"] = attempt
        d["connect_ms"] = connect_ms
        self.sink.emit(_construct(Connected, d))

    def send(
        self,
        who: tuple[str, str, str],
        seq: int,
        nbytes: int,
        channel: str | None,
        expect: Expect,
        trace: tuple[str | None, str | None],
    ) -> None:
        d = self._common(*who, *trace)
        d["kind"] = "session.send"
        d["seq"] = seq
        d["bytes"] = nbytes
        d["channel"] = channel
        d["expect"] = expect
        self.sink.emit(_construct(Send, d))

    def receive(
        self,
        who: tuple[str, str, str],
        *,
        seq: int | None,
        nbytes: int,
        latency_ms: float | None,
        origin: tuple[str, str, str, int] | None,
        checksum_ok: bool | None,
        status: int | None,
        channel: str | None,
        trace: tuple[str | None, str | None],
    ) -> None:
        d = self._common(*who, *trace)
        d["kind"] = "session.receive"
        d["seq"] = seq
        d["bytes"] = nbytes
        d["latency_ms"] = latency_ms
        if origin is None:
            d["origin_tenant"] = d["origin_user"] = d["origin_session"] = d["origin_seq"] = None
        else:
            d["origin_tenant"], d["origin_user"], d["origin_session"], d["origin_seq"] = origin
        d["checksum_ok"] = checksum_ok
        d["status"] = status
        d["channel"] = channel
        self.sink.emit(_construct(Receive, d))

    def error(
        self,
        who: tuple[str, str, str],
        error_class: str,
        message: str,
        phase: Phase,
        trace: tuple[str | None, str | None],
        seq: int | None = None,
    ) -> None:
        d = self._common(*who, *trace)
        d["kind"] = "session.error"
        d["error_class"] = error_class or "Error"
        d["message"] = message[:4000]
        d["phase"] = phase
        d["seq"] = seq
        self.sink.emit(_construct(SessionError, d))

    def disconnect(
        self,
        who: tuple[str, str, str],
        by: Literal["client", "server", "error"],
        code: int | None,
        reason: str,
        trace: tuple[str | None, str | None],
    ) -> None:
        d = self._common(*who, *trace)
        d["kind"] = "session.disconnect"
        d["by"] = by
        d["code"] = code
        d["reason"] = reason
        self.sink.emit(_construct(Disconnect, d))
