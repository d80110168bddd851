"""Runs one load profile against one target: population, ramp, sessions, ticker, auth.

``Generator.run()`` returns when every session has finished its script or the load phase
(``duration_s``) is over and sessions have wound down; :meth:`Generator.stop` ends it early.
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from opentelemetry import trace

from generators.auth import AuthManager
from generators.clock import SystemClock, wait_any
from generators.codec import ChatCodec, Codec, RawCodec
from generators.context import RunContext
from generators.engines.base import Endpoint
from generators.engines.http import BODY_METHODS
from generators.engines.registry import engine_for
from generators.errors import PlanError
from generators.limits import check_capacity
from generators.outbox import Outbox
from generators.population import SessionPlan, build_population, shard
from generators.recorder import Recorder
from generators.session import Session
from generators.shapes import start_offsets
from generators.spanattrs import SpanAttributes
from generators.stamp import experiment_key
from generators.stats import FOLD_EVERY_S, Counters, GeneratorStats
from generators.ticker import Ticker
from schemas.base import new_run_id
from schemas.events import Protocol as WireProtocol
from schemas.load import HttpOptions, SendStep, SubscribeStep

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from generators.clock import Clock
    from generators.engines.base import Engine
    from schemas.load import HttpRequestSpec, LoadProfile, SizeDist
    from schemas.targets import Target
    from spine.activefaults import ActiveFaults
    from spine.eventlog.sink import EventSink


def default_generator_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class GeneratorOptions:
    experiment_id: str
    run_id: str = field(default_factory=new_run_id)
    generator_id: str = field(default_factory=default_generator_id)
    session_tag: str = ""
    """Appended to every session name (``<tenant>-u<k>-s<j><tag>``): keeps apart the sessions
    of load profiles that share a target and tenant names (a stamp names its origin session
    by name only, so two sessions of one name on one target would take each other's
    broadcasts for their own)."""
    engine: str | None = None
    """Engine name (``ws``, ``picows``, ``http``, ``tcp``); None: the target protocol's default."""
    compression: str | None = None
    stamp_key: bytes | None = None
    member: int = 0
    members: int = 1
    limit: int | None = None
    """Run only the first ``limit`` sessions of this member's share (stability search)."""
    max_connecting: int = 500
    tick_s: float = 0.005
    trace_every: int = 1
    connect_timeout_s: float = 10.0
    drain_s: float = 2.0
    late_ms: float = 50.0
    """A send leaving more than this after its scheduled time is recorded as late
    (``session.send`` ``late_ms``; counted in the live line)."""
    auth_password: str = "aftershock"
    check_fds: bool = True


def validate_plan(profile: LoadProfile, target: Target) -> None:
    """Reject profiles the target's protocol cannot run, naming the offending step."""
    if profile.target != target.name:
        raise PlanError(f"load profile is for target {profile.target!r}, not {target.name!r}")
    try:
        Endpoint.parse(target.address, target.path)
    except PlanError as exc:
        raise PlanError(f"target {target.name!r}: {exc}") from None
    ws = target.protocol is WireProtocol.WS
    for i, step in enumerate(profile.script):
        where = f"script[{i}] ({step.do})"
        if isinstance(step, SubscribeStep) and not ws:
            raise PlanError(f"{where}: a {target.protocol.value} target has no channels")
        if isinstance(step, SendStep):
            if step.expect == "broadcast" and not ws:
                raise PlanError(f"{where}: broadcast needs a WebSocket target")
            if step.expect == "response" and target.protocol is not WireProtocol.HTTP:
                raise PlanError(f"{where}: expect=response is for HTTP targets; use echo")
    if profile.http_mix and target.protocol is not WireProtocol.HTTP:
        raise PlanError("http_mix is set but the target is not HTTP")
    if profile.http != HttpOptions() and target.protocol is not WireProtocol.HTTP:
        raise PlanError("http (connect, pipelining) is set but the target is not HTTP")


class Generator:
    def __init__(
        self,
        profile: LoadProfile,
        target: Target,
        sink: EventSink,
        options: GeneratorOptions,
        *,
        clock: Clock | None = None,
        engine: Engine | None = None,
        tracer_provider: TracerProvider | None = None,
        faults: ActiveFaults | None = None,
    ) -> None:
        validate_plan(profile, target)
        self.profile = profile
        self.target = target
        self.options = options
        self._sink = sink
        self._clock: Clock = clock or SystemClock()
        self._engine = engine or engine_for(
            target.protocol, profile, options.engine, options.compression
        )
        self.plans: list[SessionPlan] = shard(
            build_population(profile, options.session_tag), options.member, options.members
        )
        if options.limit is not None:
            self.plans = self.plans[: options.limit]
        all_offsets = start_offsets(profile.ramp, profile.total_sessions)
        self.offsets = [all_offsets[p.index] for p in self.plans]
        self.counters = Counters()
        self.recorder = Recorder(
            sink,
            experiment_id=options.experiment_id,
            run_id=options.run_id,
            generator_id=options.generator_id,
            target=target.name,
            protocol=target.protocol,
        )
        self._tracer = trace.get_tracer("aftershock.generators", tracer_provider=tracer_provider)
        self._faults = faults
        self._ctx: RunContext | None = None
        self._t0: float | None = None
        self._stop_requested = False
        self._abort = False
        if options.check_fds:
            check_capacity(len(self.plans), 1 + (profile.auth is not None))

    def statistics(self) -> GeneratorStats:
        elapsed = self._clock.monotonic() - self._t0 if self._t0 is not None else 0.0
        return self.counters.snapshot(elapsed, self.recorder.emitted)

    async def _fold_latencies(self) -> None:
        """Until cancelled: keep the round trips appended since in the sketch (bounded memory
        on a run of any length, whether or not anyone reads the statistics)."""
        clock = self._clock
        while True:
            await wait_any(clock, (), clock.monotonic() + FOLD_EVERY_S)
            self.counters.fold_latencies()

    def stop(self, *, drain: bool = True) -> None:
        """End the load phase now: sessions stop sending, wait up to ``drain_s`` for answers
        still due (not at all when ``drain`` is False, i.e. an abort) and disconnect."""
        self._stop_requested = True
        self._abort = self._abort or not drain
        if self._ctx is not None:
            if self._abort:
                self._ctx.drain_s = 0.0
            self._ctx.stop()

    async def run(self, start_at: float | None = None) -> GeneratorStats:
        """Run the load phase; ``start_at`` (this clock's monotonic time) delays the start."""
        opts = self.options
        clock = self._clock
        codec: Codec = ChatCodec() if self.target.protocol is WireProtocol.WS else RawCodec()
        auth = (
            AuthManager(self.profile.auth, self.recorder, clock, password=opts.auth_password)
            if self.profile.auth is not None
            else None
        )
        outbox = Outbox()
        endpoint = Endpoint.parse(self.target.address, self.target.path)
        ctx = self._ctx = RunContext(
            target=self.target.name,
            endpoint=endpoint,
            engine=self._engine,
            codec=codec,
            recorder=self.recorder,
            counters=self.counters,
            clock=clock,
            ticker=Ticker(clock, opts.tick_s, flush=outbox.flush),
            outbox=outbox,
            tracer=self._tracer,
            span_attributes=SpanAttributes.of(
                self.target.name, self.target.protocol, endpoint, self.profile.http_mix
            ),
            body_sizes=_body_sizes(self.target.protocol, self.profile.http_mix),
            bodiless=_bodiless(self.target.protocol, self.profile.http_mix),
            faults=self._faults,
            key=opts.stamp_key or experiment_key(opts.experiment_id),
            script=tuple(self.profile.script),
            backoff=self.profile.reconnect,
            seed=self.profile.seed if self.profile.seed is not None else 0,
            auth=auth,
            connect_limit=asyncio.Semaphore(opts.max_connecting),
            connect_timeout_s=opts.connect_timeout_s,
            drain_s=opts.drain_s,
            trace_every=opts.trace_every,
            late_s=opts.late_ms / 1000,
        )
        if self._stop_requested:
            self.stop(drain=not self._abort)
        try:
            async with asyncio.TaskGroup() as tg:
                ticker = tg.create_task(ctx.ticker.run())
                folder = tg.create_task(self._fold_latencies())
                refresher = tg.create_task(auth.run()) if auth is not None else None
                try:
                    if start_at is not None:
                        await wait_any(clock, [ctx.stopped], start_at)
                    t0 = self._t0 = clock.monotonic()
                    end = clock.call_at(t0 + self.profile.duration_s, ctx.stop)
                    try:
                        async with asyncio.TaskGroup() as sessions:
                            for plan, offset in zip(self.plans, self.offsets, strict=True):
                                if ctx.stopping:
                                    break
                                if offset > clock.monotonic() - t0:
                                    await wait_any(clock, [ctx.stopped], t0 + offset)
                                    if ctx.stopping:
                                        break
                                sessions.create_task(Session(ctx, plan).run())
                    finally:
                        end.cancel()
                finally:
                    ticker.cancel()
                    folder.cancel()
                    if refresher is not None:
                        refresher.cancel()
        finally:
            if auth is not None:
                await auth.aclose()
        return self.statistics()


def _bodiless(protocol: WireProtocol, mix: list[HttpRequestSpec]) -> tuple[bool, ...]:
    """Whether each mix entry's requests carry no body (see :attr:`RunContext.bodiless`)."""
    flags = tuple(m.method not in BODY_METHODS for m in mix)
    return flags if protocol is WireProtocol.HTTP and any(flags) else ()


def _body_sizes(protocol: WireProtocol, mix: list[HttpRequestSpec]) -> tuple[SizeDist | None, ...]:
    """The ``body_size`` of each mix entry (see :attr:`RunContext.body_sizes`)."""
    if protocol is not WireProtocol.HTTP or all(m.body_size is None for m in mix):
        return ()
    return tuple(m.body_size for m in mix)
