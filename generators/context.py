"""What every session of one generator run shares."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from generators.auth import AuthManager
    from generators.clock import Clock
    from generators.codec import Codec
    from generators.engines.base import Endpoint, Engine
    from generators.outbox import Outbox
    from generators.recorder import Recorder
    from generators.spanattrs import SpanAttributes
    from generators.stats import Counters
    from generators.ticker import Ticker
    from schemas.load import Backoff, ScriptStep, SizeDist
    from spine.activefaults import ActiveFaults


@dataclass(eq=False)
class RunContext:
    target: str
    endpoint: Endpoint
    engine: Engine
    codec: Codec
    recorder: Recorder
    counters: Counters
    clock: Clock
    ticker: Ticker
    outbox: Outbox
    """Where the ticker's sessions queue their sends; the ticker flushes it after each tick."""
    tracer: Tracer
    span_attributes: SpanAttributes
    """What the spans say about the target (OpenTelemetry semantic conventions)."""
    key: bytes
    script: tuple[ScriptStep, ...]
    backoff: Backoff
    seed: int
    auth: AuthManager | None
    connect_limit: asyncio.Semaphore
    connect_timeout_s: float
    drain_s: float
    trace_every: int
    """Trace every n-th round trip (0: none); connects and reconnects are always traced."""
    late_s: float
    """A send leaving more than this after its scheduled time is recorded as late."""
    body_sizes: tuple[SizeDist | None, ...] = ()
    """HTTP: the ``body_size`` of each ``http_mix`` entry, in its order (None: the send step's
    ``size``); empty when no entry has one."""
    bodiless: tuple[bool, ...] = ()
    """HTTP: for each ``http_mix`` entry, in its order, whether its requests carry no body (a
    GET, say: its sends record 0 bytes); empty when every entry has one, or not HTTP."""
    faults: ActiveFaults | None = None
    """The faults in force, to mark the spans that run under them (None: not followed)."""
    stopped: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    stopping: bool = False

    def stop(self) -> None:
        self.stopping = True
        if not self.stopped.done():
            self.stopped.set_result(None)
