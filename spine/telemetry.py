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
from typing import TYPE_CHECKING, TextIO

from opentelemetry import trace
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from spine import __version__

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path

    from opentelemetry.sdk.trace import ReadableSpan

    from spine.settings import Settings

SPANS_FILE = "spans.jsonl"
OTLP_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
log = logging.getLogger(__name__)


class JsonlSpanExporter(SpanExporter):
    """Appends one JSON object per finished span to a file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: TextIO | None = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(s.to_json(indent=None) + "\n" for s in spans)
        with self._lock:
            if self._file is None:
                return SpanExportResult.FAILURE
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
