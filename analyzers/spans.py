"""Dependency edges from traces, and an OpenTelemetry span exporter that publishes to Kafka.

The spans topic carries OTLP: each record is one ``ExportTraceServiceRequest``, in protobuf
(what OTLP/HTTP posts, what :class:`KafkaSpanExporter` and the Collector's Kafka exporter with
``encoding: otlp_proto`` publish) or in OTLP's JSON form (``encoding: otlp_json``: camelCase
names, ids as hex strings); :func:`decode_spans` reads both. A span whose parent span
belongs to another service (``service.name`` of the resource) is a call from the parent's
service to the span's: the edge ``caller → callee`` that cascade analysis walks.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from aiokafka import AIOKafkaProducer
    from opentelemetry.sdk.trace import ReadableSpan


_HEX = re.compile(r"[0-9a-fA-F]+")


@dataclass(frozen=True, slots=True)
class SpanRef:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    service: str


def _hex_id(raw: object, size: int, where: str) -> str:
    if not isinstance(raw, str) or not _HEX.fullmatch(raw) or len(raw) != size:
        raise ValueError(f"{where}: not a {size}-digit hex id: {raw!r}")
    return raw.lower()


def _list(raw: object, where: str) -> list[object]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError(f"{where}: not a list")
    return raw


def _obj(raw: object, where: str) -> dict[str, object]:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: not an object")
    return raw


def _decode_json(value: bytes) -> list[SpanRef]:
    """The spans of one OTLP/JSON record."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not an OTLP/JSON ExportTraceServiceRequest: {exc}") from exc
    out: list[SpanRef] = []
    top = _obj(doc, "not an OTLP/JSON ExportTraceServiceRequest")
    for i, rs_raw in enumerate(_list(top.get("resourceSpans"), "resourceSpans")):
        where = f"resourceSpans[{i}]"
        rs = _obj(rs_raw, where)
        service = "unknown"
        resource = _obj(rs.get("resource") or {}, f"{where}.resource")
        for n, attr_raw in enumerate(_list(resource.get("attributes"), f"{where}.resource")):
            attr = _obj(attr_raw, f"{where}.resource.attributes[{n}]")
            if attr.get("key") == "service.name":
                value_ = attr.get("value")
                name = value_.get("stringValue") if isinstance(value_, dict) else None
                if isinstance(name, str) and name:
                    service = name
        for j, ss_raw in enumerate(_list(rs.get("scopeSpans"), f"{where}.scopeSpans")):
            ss = _obj(ss_raw, f"{where}.scopeSpans[{j}]")
            for k, span_raw in enumerate(_list(ss.get("spans"), f"{where}.scopeSpans[{j}].spans")):
                at = f"{where}.scopeSpans[{j}].spans[{k}]"
                span = _obj(span_raw, at)
                parent = span.get("parentSpanId") or None
                out.append(
                    SpanRef(
                        trace_id=_hex_id(span.get("traceId"), 32, f"{at}.traceId"),
                        span_id=_hex_id(span.get("spanId"), 16, f"{at}.spanId"),
                        parent_span_id=None
                        if parent is None
                        else _hex_id(parent, 16, f"{at}.parentSpanId"),
                        service=service,
                    )
                )
    return out


def decode_spans(value: bytes) -> list[SpanRef]:
    """The spans of one OTLP record, protobuf or JSON; raises ``ValueError`` if it is
    neither. (A protobuf request never starts with ``{``: its first byte is field 1's tag.)"""
    if value.lstrip()[:1] == b"{":
        return _decode_json(value)
    req = ExportTraceServiceRequest()
    try:
        req.ParseFromString(value)
    except Exception as exc:  # protobuf's DecodeError; its stubs are not installed
        raise ValueError(f"not an OTLP ExportTraceServiceRequest: {exc}") from exc
    out: list[SpanRef] = []
    for rs in req.resource_spans:
        service = "unknown"
        for attr in rs.resource.attributes:
            if attr.key == "service.name":
                service = attr.value.string_value or service
        for ss in rs.scope_spans:
            for span in ss.spans:
                out.append(
                    SpanRef(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() or None,
                        service=service,
                    )
                )
    return out


class SpanGraphBuilder:
    """Turns spans into caller → callee edges; remembers a bounded number of spans so a
    parent may arrive after its child."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._service: OrderedDict[str, str] = OrderedDict()
        self._orphans: OrderedDict[str, list[str]] = OrderedDict()
        self.edges: set[tuple[str, str]] = set()

    def add(self, spans: Iterable[SpanRef]) -> list[tuple[str, str]]:
        """Fold spans in; returns edges not seen before."""
        new: list[tuple[str, str]] = []
        for s in spans:
            self._remember(self._service, s.span_id, s.service)
            for child_service in self._orphans.pop(s.span_id, []):
                self._edge(s.service, child_service, new)
            if s.parent_span_id is None:
                continue
            parent = self._service.get(s.parent_span_id)
            if parent is None:
                self._orphans.setdefault(s.parent_span_id, []).append(s.service)
                while len(self._orphans) > self._capacity:
                    self._orphans.popitem(last=False)
            else:
                self._edge(parent, s.service, new)
        return new

    def _edge(self, caller: str, callee: str, new: list[tuple[str, str]]) -> None:
        if caller != callee and (caller, callee) not in self.edges:
            self.edges.add((caller, callee))
            new.append((caller, callee))

    def _remember(self, table: OrderedDict[str, str], key: str, value: str) -> None:
        table[key] = value
        if len(table) > self._capacity:
            table.popitem(last=False)


class KafkaSpanExporter(SpanExporter):
    """Publishes finished spans as OTLP protobuf records to a Kafka topic.

    The SDK calls :meth:`export` from its batch processor thread; a private event loop in a
    daemon thread owns the producer. Export never raises: delivery problems return FAILURE.
    """

    def __init__(self, bootstrap: str, topic: str, timeout_s: float = 10.0) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.timeout_s = timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._producer: AIOKafkaProducer | None = None
        self._closed = False

    async def _ensure(self) -> AIOKafkaProducer:
        if self._producer is None:
            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap, enable_idempotence=False, linger_ms=50
            )
            await producer.start()
            self._producer = producer
        return self._producer

    async def _send(self, value: bytes) -> None:
        producer = await self._ensure()
        await producer.send_and_wait(self.topic, value)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._closed or not spans:
            return SpanExportResult.SUCCESS if not spans else SpanExportResult.FAILURE
        value = encode_spans(spans).SerializeToString()
        fut = asyncio.run_coroutine_threadsafe(self._send(value), self._loop)
        try:
            fut.result(self.timeout_s)
        except Exception:
            fut.cancel()
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True

        async def stop() -> None:
            if self._producer is not None:
                await self._producer.stop()

        with contextlib.suppress(Exception):  # shutting down: nothing left to report to
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(self.timeout_s)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self.timeout_s)
        self._loop.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True
