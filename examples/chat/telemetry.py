"""OpenTelemetry API helpers: W3C trace context in and out of headers and link frames.

Library code only; the SDK is configured by the entry point (``__main__``) or the embedding
application. Without an SDK every span here is a cheap no-op.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry import propagate, trace

if TYPE_CHECKING:
    from collections.abc import Mapping

    from opentelemetry.context import Context

tracer = trace.get_tracer("examples.chat")


def context_from_headers(headers: Mapping[str, str]) -> Context:
    """The caller's trace context from ``traceparent``/``tracestate`` headers (if any)."""
    carrier = {k.lower(): v for k, v in headers.items() if k.lower() in _TRACE_HEADERS}
    return propagate.extract(carrier)


def context_from_traceparent(traceparent: str | None) -> Context | None:
    if not traceparent:
        return None
    return propagate.extract({"traceparent": traceparent})


def current_traceparent() -> str | None:
    """The current span as a W3C ``traceparent`` value, for the link framing."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


_TRACE_HEADERS = frozenset({"traceparent", "tracestate"})
