"""A session whose queued send cannot be written records that it never left (an error in phase
``send`` for that seq, no timeout for it later) and stops sending on that connection."""

from __future__ import annotations

import asyncio

from generators.errors import ConnectionLost
from schemas.events import Send, SessionError
from spine.eventlog import MemorySink
from tests.generators.conftest import profile
from tests.generators.fakes import FakeConnection, FakeEngine, fake_generator


class FailsOnSecond(FakeConnection):
    """Says it is open, but the write of the second message fails."""

    def send(self, data: str, seq: int, traceparent: str | None = None) -> None:
        if seq == 2:
            raise ConnectionLost("reset while writing")
        super().send(data, seq, traceparent)


async def test_a_send_the_outbox_could_not_write_is_recorded_as_not_sent() -> None:
    prof = profile(
        tenants=[{"name": "acme", "users": 1}],
        duration_s=0.5,
        script=[
            {"do": "connect"},
            {"do": "send", "count": 5, "rate_per_s": 50, "timeout_ms": 100},
        ],
    )
    sink = MemorySink()
    engine = FakeEngine(connection=FailsOnSecond)
    gen = fake_generator(prof, engine, tick_s=0.002, sink=sink)
    stats = await asyncio.wait_for(gen.run(), 10)
    sends = [e.seq for e in sink.events if isinstance(e, Send)]
    errors = [e for e in sink.events if isinstance(e, SessionError)]
    assert sends == [1, 2]  # queued (and recorded) twice, then no more sends
    assert [(e.error_class, e.phase, e.seq) for e in errors] == [("ConnectionLost", "send", 2)]
    assert stats.round_trips == 1
    assert stats.timeouts == 0
    assert len(engine.connections[0].sent) == 1
