"""Tracing set-up for entry points. Library code uses only the OpenTelemetry API.

``configure_tracing`` installs an SDK tracer provider and returns the function that flushes and
shuts it down. Spans always go to ``spans.jsonl`` in the run directory (what ``aftershock
traces`` reads) and, when an OTLP endpoint is configured, to an OTLP/HTTP collector as well.
The collector is configured by the standard variables (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``_HEADERS``, ``_TIMEOUT``, ``_COMPRESSION``,
``_CERTIFICATE``), with ``AFTERSHOCK_OTEL_ENDPOINT`` as the base endpoint when neither is set;
``OTEL_TRACES_EXPORTER=none`` turns the OTLP copy off and ``OTEL_SDK_DISABLED=true`` all tracing.
The resource names the service (``OTEL_SERVICE_NAME`` wins over the entry point's name) and its
version, merged with ``OTEL_RESOURCE_ATTRIBUTES``. Exporting never breaks a run: a failing
exporter drops spans, it does not raise into the load loop.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import TYPE_CHECKING, BinaryIO

import orjson
from opentelemetry import trace
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.sdk.util import ns_to_iso_str
from opentelemetry.trace import StatusCode

from spine import __version__
from spine.text import utf8_safe

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path

    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext

    from spine.settings import Settings

SPANS_FILE = "spans.jsonl"
OTLP_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
log = logging.getLogger(__name__)


def _hex_id(value: int, width: int) -> str:
    return f"0x{value:0{width}x}"


def _context(ctx: SpanContext) -> dict[str, object]:
    out: dict[str, object] = {
        "trace_id": _hex_id(ctx.trace_id, 32),
        "span_id": _hex_id(ctx.span_id, 16),
    }
    if ctx.trace_state:
        out["trace_state"] = ctx.trace_state.to_header()
    return out


def span_record(span: ReadableSpan) -> dict[str, object]:
    """One span as the span files hold it: the OpenTelemetry SDK's JSON form
    (``ReadableSpan.to_json``), written compact and without what says nothing about this
    span — an unset status, empty events and links, an empty trace state, and the resource
    (the same for every span of a file: :class:`JsonlSpanExporter` writes it once)."""
    ctx = span.get_span_context()
    out: dict[str, object] = {"name": span.name}
    if ctx is not None:
        out["context"] = _context(ctx)
    out["kind"] = str(span.kind)
    out["parent_id"] = _hex_id(span.parent.span_id, 16) if span.parent is not None else None
    out["start_time"] = ns_to_iso_str(span.start_time or 0)
    out["end_time"] = ns_to_iso_str(span.end_time or 0)
    if span.status.status_code is not StatusCode.UNSET:
        status: dict[str, object] = {"status_code": span.status.status_code.name}
        if span.status.description:
            status["description"] = span.status.description
        out["status"] = status
    if span.attributes:
        out["attributes"] = dict(span.attributes)
    if span.events:
        out["events"] = [
            {
                "name": e.name,
                "timestamp": ns_to_iso_str(e.timestamp),
                "attributes": dict(e.attributes or {}),
            }
            for e in span.events
        ]
    if span.links:
        out["links"] = [
            {"context": _context(link.context), "attributes": dict(link.attributes or {})}
            for link in span.links
        ]
    return out


def _line(record: dict[str, object]) -> bytes:
    try:
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        return orjson.dumps(json_writable(record), option=orjson.OPT_APPEND_NEWLINE)


def json_writable(value: object) -> object:
    """``value`` with what JSON (UTF-8, 64-bit integers) cannot hold made writable: a
    surrogate (text a server sent as a ``\\ud800`` escape) becomes U+FFFD
    (:func:`spine.text.utf8_safe`), an integer beyond 64 bits its decimal text."""
    if isinstance(value, str):
        return utf8_safe(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        return str(value)
    if isinstance(value, dict):
        return {json_writable(k): json_writable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_writable(v) for v in value]
    return value


class JsonlSpanExporter(SpanExporter):
    """Appends one compact JSON object per finished span to a file (:func:`span_record`).
    The first span the exporter writes also carries the spans' resource (``"resource":
    {"attributes": ...}``), which is the same for all of them.

    Every span is written: text JSON cannot hold (a lone surrogate) is written as U+FFFD and
    an integer beyond 64 bits as its decimal text (:func:`json_writable`), rather than the batch
    holding such a span failing to encode and every span in it being dropped."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: BinaryIO | None = path.open("ab")
        self._lock = threading.Lock()
        self._resource_written = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        records = [span_record(s) for s in spans]
        with self._lock:
            if self._file is None:
                return SpanExportResult.FAILURE
            if not self._resource_written and spans:
                records[0]["resource"] = {"attributes": dict(spans[0].resource.attributes)}
                self._resource_written = True
            lines = b"".join(_line(r) for r in records)
            try:
                self._file.write(lines)
                self._file.flush()
            except OSError:
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def otlp_endpoint(settings: Settings, environ: Mapping[str, str] | None = None) -> str | None:
    """The OTLP/HTTP traces URL spans are exported to, or None when none is configured."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return None
    if traces := env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return traces
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or settings.otel_endpoint
    return None if not base else base.rstrip("/") + "/v1/traces"


def service_resource(service_name: str) -> Resource:
    """The service's resource: its name and version, overridden by ``OTEL_SERVICE_NAME`` and
    ``OTEL_RESOURCE_ATTRIBUTES``."""
    ours = Resource.create({"service.name": service_name, "service.version": __version__})
    return ours.merge(OTELResourceDetector().detect())


def configure_tracing(
    settings: Settings,
    service_name: str,
    *,
    run_dir: Path | None = None,
    sample_ratio: float = 1.0,
    set_global: bool = True,
) -> tuple[TracerProvider | None, Callable[[], None]]:
    """Install tracing for an entry point; returns ``(provider, shutdown)``.

    ``run_dir`` is where the JSONL file goes (``<state_dir>/runs/latest`` when None).
    ``sample_ratio`` samples whole traces (a session is one trace). With
    ``otel_exporter="none"`` (or ``OTEL_SDK_DISABLED=true``) nothing is installed and the API
    stays a no-op; ``otel_exporter="otlp"`` without an endpoint is an error.
    """
    if settings.otel_exporter == "none" or _true(os.environ.get("OTEL_SDK_DISABLED")):
        return None, lambda: None
    endpoint = otlp_endpoint(settings)
    if settings.otel_exporter == "otlp" and endpoint is None:
        raise ValueError(
            "otel_exporter is 'otlp' but no endpoint is set "
            "(OTEL_EXPORTER_OTLP_ENDPOINT or AFTERSHOCK_OTEL_ENDPOINT)"
        )
    directory = run_dir if run_dir is not None else settings.state_dir / "runs" / "latest"
    exporters: list[SpanExporter] = [JsonlSpanExporter(directory / SPANS_FILE)]
    if endpoint is not None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
        )
        if protocol != "http/protobuf":
            log.warning("OTLP protocol %r is not supported; exporting http/protobuf", protocol)
        exporters.append(OTLPSpanExporter(endpoint=endpoint))
    provider = TracerProvider(
        resource=service_resource(service_name),
        sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
    )
    for exporter in exporters:  # one queue each: a slow collector never holds up the file
        provider.add_span_processor(
            BatchSpanProcessor(exporter, max_queue_size=65_536, max_export_batch_size=2048)
        )
    if set_global:
        trace.set_tracer_provider(provider)
    done = False

    def shutdown() -> None:
        nonlocal done
        if not done:
            done = True
            provider.shutdown()

    return provider, shutdown


def trace_link(trace_id: str, template: str | None = None) -> str | None:
    """The trace viewer's URL of a trace: ``template`` (default: the
    ``trace_url_template`` setting) with ``{trace_id}`` replaced; None when no template is
    set or ``trace_id`` is not a 32-digit lowercase hex trace id."""
    if template is None:
        from spine.settings import Settings

        template = Settings().trace_url_template
    if template is None or not _TRACE_ID.fullmatch(trace_id):
        return None
    return template.replace("{trace_id}", trace_id)
