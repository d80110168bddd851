"""Fixtures for generator tests: small protocol servers on loopback, profiles, an SDK tracer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from schemas.load import LoadProfile
from tests.generators.servers import ChatLikeServer, TcpEcho

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

SESSION_KINDS = frozenset(
    {
        "session.connect_start",
        "session.connected",
        "session.subscribed",
        "session.send",
        "session.skipped",
        "session.receive",
        "session.error",
        "session.disconnect",
    }
)
"""Every kind of session event a generator records."""
ON_SCHEDULE_KINDS = SESSION_KINDS - {"session.skipped"}
"""The kinds of a run whose generator kept to its schedule (it skipped no send)."""


@pytest.fixture
async def chat() -> AsyncIterator[ChatLikeServer]:
    async with ChatLikeServer() as server:
        yield server


@pytest.fixture
async def tcp_echo() -> AsyncIterator[TcpEcho]:
    async with TcpEcho() as server:
        yield server


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def profile(**over: Any) -> LoadProfile:
    data: dict[str, Any] = {
        "target": "gw",
        "tenants": [{"name": "acme", "users": 2}, {"name": "globex", "users": 2}],
        "duration_s": 5,
        "ramp": {"shape": "constant"},
        "seed": 7,
        "script": [
            {"do": "connect"},
            {"do": "subscribe"},
            {"do": "send", "count": 3, "rate_per_s": 50, "expect": "broadcast"},
            {"do": "send", "count": 2, "rate_per_s": 50, "expect": "echo"},
            {"do": "disconnect"},
        ],
    }
    data.update(over)
    return LoadProfile.model_validate(data)
