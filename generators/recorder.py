"""Builds session events on the hot path and hands them to an :class:`EventSink`.

Events are created with ``model_construct`` (no validation: ~10× cheaper) from values this
module controls; ``tests/generators`` validates every kind it emits against the schema.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Literal

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
    from aftershock.eventlog.sink import EventSink
    from schemas.events import Protocol as WireProtocol

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
        self.sink.emit(ConnectStart.model_construct(**d))  # type: ignore[arg-type]

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
        self.sink.emit(Connected.model_construct(**d))  # type: ignore[arg-type]

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
        self.sink.emit(Send.model_construct(**d))  # type: ignore[arg-type]

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
        self.sink.emit(Receive.model_construct(**d))  # type: ignore[arg-type]

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
        self.sink.emit(SessionError.model_construct(**d))  # type: ignore[arg-type]

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
        self.sink.emit(Disconnect.model_construct(**d))  # type: ignore[arg-type]
