"""Tracing set-up for entry points. Library code uses only the OpenTelemetry API.

``configure_tracing`` installs an SDK tracer provider exporting spans to a JSONL file under the
run directory (default), to an OTLP/HTTP collector (``otel_exporter="otlp"``), or nowhere, and
returns the function that flushes and shuts it down. Exporting never breaks a run: a failing
exporter drops spans, it does not raise into the load loop.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, TextIO

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from opentelemetry.sdk.trace import ReadableSpan

    from spine.settings import Settings

SPANS_FILE = "spans.jsonl"


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
    ``otel_exporter="none"`` nothing is installed and the API stays a no-op.
    """
    if settings.otel_exporter == "none":
        return None, lambda: None
    exporter: SpanExporter
    if settings.otel_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        if not settings.otel_endpoint:
            raise ValueError("otel_exporter is 'otlp' but otel_endpoint is not set")
        exporter = OTLPSpanExporter(endpoint=settings.otel_endpoint.rstrip("/") + "/v1/traces")
    else:
        directory = run_dir if run_dir is not None else settings.state_dir / "runs" / "latest"
        exporter = JsonlSpanExporter(directory / SPANS_FILE)
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}),
        sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
    )
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
