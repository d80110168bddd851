"""Prometheus metrics of an analyzer worker (served with ``aftershock analyze --metrics-port``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

RECORDS = Counter(
    "aftershock_analyzer_records_total", "Records consumed, by stage", ["stage"], registry=REGISTRY
)
EVENTS = Counter("aftershock_analyzer_events_total", "Events fed to analyzers", registry=REGISTRY)
SKIPPED = Counter(
    "aftershock_analyzer_redelivered_records_total",
    "Records skipped because their source offset was already applied",
    registry=REGISTRY,
)
DEADLETTER = Counter(
    "aftershock_analyzer_undecodable_records_total",
    "Records that could not be decoded (events and spans)",
    registry=REGISTRY,
)
RESULTS = Counter(
    "aftershock_analyzer_results_published_total",
    "Result records published (changed ones only)",
    ["kind"],
    registry=REGISTRY,
)
CHECKPOINTS = Counter(
    "aftershock_analyzer_checkpoints_total", "State snapshots written", registry=REGISTRY
)
SNAPSHOT_BYTES = Gauge(
    "aftershock_analyzer_snapshot_bytes", "Size of the last snapshot", registry=REGISTRY
)
EXPERIMENTS = Gauge(
    "aftershock_analyzer_experiments", "Experiments this worker analyzes", registry=REGISTRY
)
BUFFERED = Gauge(
    "aftershock_analyzer_buffered_events", "Events waiting for the watermark", registry=REGISTRY
)
DUPLICATES = Gauge(
    "aftershock_analyzer_duplicate_events",
    "Duplicate events dropped (by event id)",
    ["experiment"],
    registry=REGISTRY,
)
LATE = Gauge(
    "aftershock_analyzer_late_events",
    "Events applied after their place had passed",
    ["experiment"],
    registry=REGISTRY,
)
PUBLISH_SECONDS = Histogram(
    "aftershock_analyzer_publish_seconds",
    "Time to compute and publish changed results",
    registry=REGISTRY,
)
