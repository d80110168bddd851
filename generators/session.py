"""One virtual user's session: runs its script over a connection and records what it saw.

A session is a :class:`~generators.engines.base.MessageHandler` (receipts arrive as callbacks)
and a :class:`~generators.ticker.Tickable` (the shared ticker calls :meth:`Session.fire`, which
stamps, records and queues one message in the tick's :class:`~generators.outbox.Outbox`).
Its script runs in one task that only waits on futures: the connection being lost, a send step
being complete, the subscribe acknowledgement, the load phase ending.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import time
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.trace import SpanKind, Status, StatusCode

from generators.clock import wait_any
from generators.errors import AuthError, ConnectionLost, GeneratorError
from generators.stamp import Stamper, verify
from schemas.load import (
    ConnectStep,
    DisconnectStep,
    FixedSize,
    NormalSize,
    SendStep,
    SubscribeStep,
    ThinkStep,
    UniformSize,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from generators.context import RunContext
    from generators.engines.base import Closed, Connection
    from generators.population import SessionPlan
    from generators.recorder import Expect, SkipReason
    from schemas.load import Backoff, SizeDist

SUBSCRIBE_TIMEOUT_S = 5.0
Trace = tuple[str | None, str | None]
NO_TRACE: Trace = (None, None)


class _Stop(Exception):
    """The load phase ended (or the session gave up reconnecting): wind down."""


def span_ids(span: trace.Span) -> Trace:
    """The span's (trace id, span id), for the session's events; none for a span that is not
    recorded (no tracing, or a session left out by the sampler), so every trace id an event
    names is a trace that was written."""
    ctx = span.get_span_context()
    if not ctx.is_valid or not ctx.trace_flags.sampled:
        return NO_TRACE
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def end_span(
    ctx: RunContext, span: trace.Span, error: str | None = None, error_type: str = ""
) -> None:
    """End ``span``: an error status when ``error`` is set (``error.type`` naming what kind),
    and the faults that were in force while it ran (see :mod:`spine.activefaults`)."""
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, error))
        span.set_attribute("error.type", error_type or "_OTHER")
    if ctx.faults is not None:
        start_ns = getattr(span, "start_time", None)
        if isinstance(start_ns, int):
            ctx.faults.mark(span, start_ns, time.time_ns())
    span.end()


def backoff_delay_s(policy: Backoff, attempt: int, rng: random.Random) -> float:
    """Delay before reconnect attempt ``attempt`` (1-based): exponential, capped, jittered."""
    base = min(policy.max_ms, policy.initial_ms * policy.multiplier ** (attempt - 1))
    jitter = base * policy.jitter * (2 * rng.random() - 1)
    return max(0.0, base + jitter) / 1000.0


def size_sampler(dist: SizeDist, rng_of: Callable[[], random.Random]) -> Callable[[], int]:
    """A function drawing message sizes from ``dist`` (decided once per send step). A fixed
    size draws nothing; the others take their generator from ``rng_of()``."""
    if isinstance(dist, FixedSize):
        fixed = dist.bytes
        return lambda: fixed
    rng = rng_of()
    if isinstance(dist, UniformSize):
        lo, hi = dist.min_bytes, dist.max_bytes
        return lambda: rng.randint(lo, hi)
    assert isinstance(dist, NormalSize)
    mean, sd, top = dist.mean_bytes, dist.stddev_bytes, dist.max_bytes
    return lambda: max(0, min(top, round(rng.gauss(mean, sd))))


def unit_fraction(key: str) -> float:
    """A number in [0, 1) that is a fixed function of ``key``: spread evenly over keys, the
    same in every process (unlike ``hash()``), and no generator kept for it."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class Session:
    __slots__ = (
        "_active",
        "_drain",
        "_due",
        "_entry_size",
        "_interval_s",
        "_lost",
        "_remaining",
        "_rng",
        "_send_channel",
        "_send_done",
        "_send_expect",
        "_send_timeout_s",
        "_send_tracked",
        "_sent",
        "_size",
        "_step",
        "_sub_ack",
        "channels",
        "conn",
        "ctx",
        "due_tick",
        "errors",
        "log",
        "pending",
        "plan",
        "root",
        "root_ctx",
        "seq",
        "stamper",
        "trace",
        "who",
    )

    def __init__(self, ctx: RunContext, plan: SessionPlan) -> None:
        self.ctx = ctx
        self.plan = plan
        self.who = (plan.tenant, plan.user, plan.session)
        self.stamper = Stamper(ctx.key, *self.who)
        self.log = ctx.recorder.session(self.who)
        self._rng: random.Random | None = None
        self.conn: Connection | None = None
        self.seq = 0
        self.errors = 0
        """Errors this session met (its root span ends as an error when there were any)."""
        self.pending: dict[int, tuple[float, trace.Span | None, Trace, str]] = {}
        """Unanswered sends by seq: (sent at, round-trip span, trace ids, frame if an echo is
        expected else "")."""
        self._sent: dict[str, int] = {}
        """Frames of unanswered echo sends -> seq: an echo equal to one is matched exactly
        (equality with what this session sent) without parsing or a MAC check."""
        self.channels: tuple[str, ...] = ()
        self.trace: Trace = NO_TRACE
        self.root: trace.Span = trace.INVALID_SPAN
        self.root_ctx = trace.set_span_in_context(trace.INVALID_SPAN)
        self.due_tick = -1
        self._active = False
        self._step: SendStep | None = None
        self._remaining: int | None = None
        self._interval_s = 1.0
        self._due = 0.0
        self._send_done: asyncio.Future[None] | None = None
        self._send_channel: str | None = None
        """Broadcast channel of the current send step (None: echo or no answer)."""
        self._send_expect: Expect = "echo"
        self._send_timeout_s = 0.0
        self._send_tracked = False
        """The current send step expects an answer."""
        self._size: Callable[[], int] = lambda: 0
        self._entry_size: tuple[Callable[[], int] | None, ...] | None = None
        """HTTP: a size sampler per ``http_mix`` entry with a ``body_size`` (None: the step's)."""
        self._lost: asyncio.Future[None] | None = None
        self._sub_ack: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None

    @property
    def rng(self) -> random.Random:
        """The session's own generator (seeded from the run's seed and the session's index),
        made on first use: a Mersenne Twister holds 2.5 KB, which a session that draws nothing
        (fixed sizes, fixed think times, no reconnects) does not carry."""
        if self._rng is None:
            self._rng = random.Random(f"{self.ctx.seed}:{self.plan.index}")
        return self._rng

    # script ----------------------------------------------------------------------------------

    async def run(self) -> None:
        ctx = self.ctx
        ctx.counters.started += 1
        self.root = ctx.tracer.start_span(
            "session",
            attributes={
                **ctx.span_attributes.session,
                "aftershock.tenant": self.plan.tenant,
                "aftershock.user": self.plan.user,
                "aftershock.session": self.plan.session,
            },
        )
        self.root_ctx = trace.set_span_in_context(self.root)
        self.trace = span_ids(self.root)
        self.log.use_trace(self.trace)
        try:
            for step in ctx.script:
                if ctx.stopping:
                    break
                if isinstance(step, ConnectStep):
                    if self.conn is None:
                        await self._connect(reconnect=False)
                elif isinstance(step, SubscribeStep):
                    await self._ensure_connected()
                    await self._subscribe(tuple(step.channels) or self.plan.channels)
                elif isinstance(step, SendStep):
                    await self._ensure_connected()
                    await self._run_send(step)
                elif isinstance(step, ThinkStep):
                    pause = (
                        self.rng.uniform(step.min_ms, step.max_ms)
                        if step.max_ms > step.min_ms
                        else step.min_ms
                    ) / 1000
                    await wait_any(ctx.clock, [ctx.stopped], ctx.clock.monotonic() + pause)
                elif isinstance(step, DisconnectStep):
                    await self._close()
        except _Stop:
            pass
        finally:
            self.ctx.ticker.cancel(self)
            await self._close()
            self.root.set_attribute("aftershock.errors", self.errors)
            failed = f"{self.errors} errors" if self.errors else None
            end_span(self.ctx, self.root, failed, "aftershock.session_errors")

    async def _ensure_connected(self) -> None:
        if self.conn is None or not self.conn.is_open:
            self.conn = None
            await self._connect(reconnect=True)

    async def _connect(self, *, reconnect: bool) -> None:
        ctx = self.ctx
        span = (
            ctx.tracer.start_span(
                "reconnect", context=self.root_ctx, attributes=ctx.span_attributes.session
            )
            if reconnect
            else None
        )
        attempt = 0
        try:
            while True:
                if ctx.stopping:
                    raise _Stop
                attempt += 1
                if reconnect or attempt > 1:
                    delay = backoff_delay_s(ctx.backoff, attempt, self.rng)
                    await wait_any(ctx.clock, [ctx.stopped], ctx.clock.monotonic() + delay)
                    if ctx.stopping:
                        raise _Stop
                if await self._connect_once(attempt, reconnect):
                    return
                if ctx.backoff.max_attempts and attempt >= ctx.backoff.max_attempts:
                    raise _Stop
        finally:
            if span is not None:
                span.set_attribute("aftershock.attempts", attempt)
                end_span(ctx, span)

    async def _connect_once(self, attempt: int, reconnect: bool) -> bool:
        ctx = self.ctx
        log = self.log
        headers: dict[str, str] = {}
        if ctx.auth is not None:
            try:
                token = await ctx.auth.token(self.who, self._on_token)
            except AuthError:
                self.errors += 1
                ctx.counters.errors += 1
                ctx.counters.connect_failures += 1
                return False
            headers["Authorization"] = f"Bearer {token}"
        span = ctx.tracer.start_span(
            "connect",
            context=self.root_ctx,
            kind=SpanKind.CLIENT,
            attributes={**ctx.span_attributes.connect, "aftershock.attempt": attempt},
        )
        inject(headers, context=trace.set_span_in_context(span))
        ids = span_ids(span) if span.get_span_context().is_valid else self.trace
        log.connect_start(attempt, ids)
        t0 = ctx.clock.monotonic()
        try:
            async with ctx.connect_limit:
                if ctx.stopping:
                    end_span(ctx, span)
                    raise _Stop
                conn = await ctx.engine.connect(ctx.endpoint, self, headers, ctx.connect_timeout_s)
        except GeneratorError as exc:
            end_span(ctx, span, str(exc), type(exc).__name__)
            self.errors += 1
            ctx.counters.connect_failures += 1
            ctx.counters.errors += 1
            log.error(type(exc).__name__, str(exc), "connect", ids)
            return False
        end_span(ctx, span)
        connect_ms = (ctx.clock.monotonic() - t0) * 1000
        self.conn = conn
        self._lost = asyncio.get_running_loop().create_future()
        ctx.counters.connects += 1
        if not conn.is_open:  # lost again before we got here: on_closed already ran
            self.conn = None
            self._lost.set_result(None)
            return True
        ctx.counters.active += 1
        self._active = True
        if reconnect:
            ctx.counters.reconnects += 1
        log.connected(attempt, connect_ms, ids)
        if self.channels:
            await self._subscribe(self.channels)
        return True

    def _on_token(self, token: str) -> None:
        if self.conn is not None:
            self.conn.set_header("Authorization", f"Bearer {token}")

    async def _subscribe(self, channels: tuple[str, ...]) -> None:
        ctx = self.ctx
        conn = self.conn
        if conn is None or not ctx.codec.supports_subscribe:
            return
        self.channels = channels
        ack = self._sub_ack = asyncio.get_running_loop().create_future()
        try:
            conn.send(ctx.codec.subscribe(channels), 0)
        except ConnectionLost:
            return
        assert self._lost is not None
        deadline = ctx.clock.monotonic() + SUBSCRIBE_TIMEOUT_S
        await wait_any(ctx.clock, [ack, self._lost, ctx.stopped], deadline)
        if not ack.done() and not self._lost.done() and not ctx.stopping:
            self.errors += 1
            ctx.counters.errors += 1
            self.log.error(
                "Timeout",
                f"no subscribe acknowledgement within {SUBSCRIBE_TIMEOUT_S:g} s",
                "receive",
                self.trace,
            )

    async def _run_send(self, step: SendStep) -> None:
        ctx = self.ctx
        loop = asyncio.get_running_loop()
        self._step = step
        self._remaining = step.count
        self._interval_s = 1.0 / step.rate_per_s
        self._size = size_sampler(step.size, lambda: self.rng)
        self._entry_size = (
            tuple(None if d is None else size_sampler(d, lambda: self.rng) for d in ctx.body_sizes)
            if ctx.body_sizes
            else None
        )
        self._send_expect = step.expect
        self._send_tracked = step.expect != "none"
        self._send_timeout_s = step.timeout_ms / 1000
        self._send_channel = (
            (step.channel or (self.channels or self.plan.channels)[0])
            if step.expect == "broadcast"
            else None
        )
        done = self._send_done = loop.create_future()
        # A phase in [0, interval) spreads the first sends of sessions that connected together.
        # It depends on the seed, the session and where its script is, as a draw would, but
        # needs no generator of its own (see rng).
        phase = unit_fraction(f"{ctx.seed}:{self.plan.index}:{self.seq}") * self._interval_s
        first = ctx.clock.monotonic() + phase
        while True:
            self._due = first
            ctx.ticker.schedule(self, first)
            assert self._lost is not None
            await wait_any(ctx.clock, [done, self._lost, ctx.stopped])
            if done.done() or ctx.stopping:
                break
            await self._ensure_connected()
            first = ctx.clock.monotonic()
        ctx.ticker.cancel(self)
        if self.pending:
            wait_s = step.timeout_ms / 1000
            if ctx.stopping:
                wait_s = min(wait_s, ctx.drain_s)
            self._drain = loop.create_future()
            await wait_any(ctx.clock, [self._drain], ctx.clock.monotonic() + wait_s)
            self._drain = None

    async def _close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        was_open = conn.is_open
        try:
            await conn.close()
        except (GeneratorError, OSError) as exc:
            self.errors += 1
            self.log.error(type(exc).__name__, str(exc), "close", self.trace)
            return
        if was_open:
            self.log.disconnect("client", 1000, "", self.trace)

    # ticker ----------------------------------------------------------------------------------

    def fire(self, now: float) -> float | None:
        # The hot path: what a send step decides once is in _send_* slots (see _run_send).
        ctx = self.ctx
        conn = self.conn
        if conn is None or self._step is None or ctx.stopping or not conn.is_open:
            return None
        late_s = now - self._due
        if conn.busy:
            # Still waiting for earlier answers: this send cannot leave on time. Skipped and
            # said so, rather than queued to leave late and be timed as the system's delay.
            self._skip(1, late_s, "busy")
            return self._next_due(now)
        late_ms: float | None = None
        if late_s > ctx.late_s:
            late_ms = late_s * 1000
            ctx.counters.late_sends += 1
            if late_ms > ctx.counters.max_late_ms:
                ctx.counters.max_late_ms = late_ms
        seq = self.seq = self.seq + 1
        size = self._size
        bodiless = False
        if self._entry_size is not None or ctx.bodiless:
            # The mix entry this send will write (drawn now, kept for the send): its body.
            entry = conn.next_request()
            if self._entry_size is not None:
                size = self._entry_size[entry] or size
            bodiless = bool(ctx.bodiless) and ctx.bodiless[entry]
        channel = self._send_channel
        stamp = self.stamper.stamp(seq, ctx.clock.wall_ns(), size(), channel)
        frame = ctx.codec.publish(channel, stamp) if channel is not None else ctx.codec.echo(stamp)
        span: trace.Span | None = None
        ids = self.trace
        traceparent = None
        if ctx.trace_every and seq % ctx.trace_every == 0:
            attrs = ctx.span_attributes
            span = ctx.tracer.start_span(
                "round_trip",
                context=self.root_ctx,
                kind=SpanKind.CLIENT,
                attributes={
                    # A weighted HTTP mix: the entry this very send will write.
                    **(attrs.requests[conn.next_request()] if attrs.requests else attrs.round_trip),
                    "aftershock.seq": seq,
                }
                if channel is None
                else {
                    **attrs.broadcast,
                    "messaging.destination.name": channel,
                    "aftershock.seq": seq,
                },
            )
            ids = span_ids(span)
            if ids[0] is not None:
                traceparent = f"00-{ids[0]}-{ids[1]}-01"
        # Written with the rest of this tick's sends (see generators.outbox).
        ctx.outbox.put((self, conn, frame, seq, traceparent))
        if self._send_tracked:
            # Echoes are remembered by the frame sent: an echo equal to it is this very
            # message (see on_message); broadcasts come back in another form.
            self.pending[seq] = (now, span, ids, frame if channel is None else "")
            if channel is None:
                self._sent[frame] = seq
            ctx.ticker.expect(now, self._send_timeout_s, self, seq)
        elif span is not None:
            end_span(ctx, span)
        ctx.counters.sends += 1
        # The bytes of the message that left: a request without a body (a GET) sends none.
        self.log.send(seq, 0 if bodiless else len(frame), channel, self._send_expect, ids, late_ms)
        if self._remaining is not None:
            self._remaining -= 1
            if self._remaining <= 0:
                if self._send_done is not None and not self._send_done.done():
                    self._send_done.set_result(None)
                return None
        return self._next_due(now)

    def _next_due(self, now: float) -> float:
        """When the next send is due. Each session keeps its phase: one interval after this
        one was due, not after it happened, or sessions delayed by a slow tick would bunch
        up. More than a second behind, the sends missed are skipped (recorded) rather than
        burst out late."""
        interval = self._interval_s
        due = self._due + interval
        if due <= now - 1.0:
            # Every send due in [due, now) is missed; the next goes out now.
            self._skip(math.ceil((now - due) / interval - 1e-9), now - due, "behind")
            due = now
        self._due = due
        return due

    def _skip(self, count: int, late_s: float, reason: SkipReason) -> None:
        counters = self.ctx.counters
        if reason == "busy":
            counters.skipped_busy += count
        else:
            counters.skipped_behind += count
        self.log.skipped(count, max(0.0, late_s) * 1000, reason, self.trace)

    def unsent(self, seq: int) -> None:
        """The outbox could not write ``seq`` (its connection closed after :meth:`fire` queued
        it): the ``send`` event is already recorded, so record that it never left, and stop
        sending until the connection is back."""
        ctx = self.ctx
        ctx.ticker.cancel(self)
        ids = self._give_up(seq, "not sent")
        if ids is None:
            ids = self.trace
        self.errors += 1
        ctx.counters.errors += 1
        self.log.error(
            "ConnectionLost", f"seq {seq} was not sent: the connection closed", "send", ids, seq
        )
        self._maybe_drained()

    def on_timeout(self, seq: int) -> None:
        if seq not in self.pending:
            return
        conn = self.conn
        unwritten: Sequence[int] = ()
        if conn is not None:
            was_open = conn.is_open
            unwritten = conn.expire(seq)
            if was_open and not conn.is_open:
                # The engine ended the connection over the overdue answer (HTTP/1.1).
                self._drop_connection(conn)
        for never in unwritten:
            # Queued behind the overdue answer and never written: not a timeout of its own.
            self._unwritten(never)
        if seq in unwritten:
            return
        ids = self._give_up(seq, "timeout")
        if ids is None:
            return
        ctx = self.ctx
        self.errors += 1
        ctx.counters.timeouts += 1
        ctx.counters.errors += 1
        expect = self._step.expect if self._step is not None else "echo"
        timeout_ms = self._step.timeout_ms if self._step is not None else 0
        self.log.error(
            "Timeout",
            f"no {expect} for seq {seq} within {timeout_ms:g} ms",
            "receive",
            ids,
            seq,
        )
        self._maybe_drained()

    def _unwritten(self, seq: int) -> None:
        ids = self._give_up(seq, "not sent")
        if ids is None:
            return
        self.ctx.counters.errors += 1
        self.log.error(
            "NotSent",
            f"seq {seq} was never written: it waited behind an answer, and the connection ended",
            "send",
            ids,
            seq,
        )
        self._maybe_drained()

    def _drop_connection(self, conn: Connection) -> None:
        """``conn`` was closed by its engine, not by the script: the session reconnects."""
        self.conn = None
        self.ctx.ticker.cancel(self)
        self.log.disconnect("client", None, "closed after a timeout", self.trace)
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    def _give_up(self, seq: int, why: str) -> Trace | None:
        """Stop waiting for an answer to ``seq``: its round-trip span ends as an error
        (``why``). Returns the trace ids it was sent with, or None if it was not pending."""
        entry = self.pending.pop(seq, None)
        if entry is None:
            return None
        _, span, ids, frame = entry
        self._sent.pop(frame, None)
        if span is not None:
            end_span(self.ctx, span, why, why.replace(" ", "_"))
        return ids

    def _maybe_drained(self) -> None:
        if not self.pending and self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # MessageHandler --------------------------------------------------------------------------

    def on_message(self, data: str, status: int | None, seq: int | None) -> None:
        ctx = self.ctx
        if status is None or (status < 400 and seq is not None):
            # An echo equal to a frame this session sent is that message, unaltered: matched
            # by equality, without decoding the frame or checking its MAC. (An HTTP answer
            # is the echo of the very request it answers, or goes the general way.)
            sent_seq = self._sent.get(data)
            if sent_seq is not None and (status is None or sent_seq == seq):
                del self._sent[data]
                # This session's own echo: origin is the session itself, the MAC holds by
                # construction. Same counters and event as the general path below records
                # for it (the hot receive path, inlined).
                sent_at, span, ids, _ = self.pending.pop(sent_seq)
                rtt_ms = (ctx.clock.monotonic() - sent_at) * 1000
                counters = ctx.counters
                counters.receives += 1
                counters.latencies_ms.append(rtt_ms)
                if span is not None:
                    if status is not None:  # an HTTP echo: a 2xx/3xx answer to its request
                        span.set_attribute("http.response.status_code", status)
                    end_span(ctx, span)
                if self._drain is not None:
                    self._maybe_drained()
                self.log.receive_own(sent_seq, len(data), rtt_ms, ids, status)
                return
        msg = ctx.codec.decode(data)
        op = msg.op
        if op == "subscribed":
            if self._sub_ack is not None and not self._sub_ack.done():
                self._sub_ack.set_result(None)
                # Recorded before any message that follows the acknowledgement: what the
                # session subscribed to is what isolation judges channel messages by.
                self.log.subscribed(self.channels, self.trace)
            return
        if op == "error":
            self.errors += 1
            ctx.counters.errors += 1
            self.log.error("ServerError", msg.data, "receive", self.trace)
            return
        if op == "other":
            return
        counters = ctx.counters
        counters.receives += 1
        now = ctx.clock.monotonic()
        origin = verify(ctx.key, msg.data, msg.channel) if op != "invalid" else None
        latency_ms: float | None = None
        ids = self.trace
        checksum_ok: bool | None
        own_seq: int | None = seq
        if op == "invalid":
            checksum_ok = False
        elif origin is None:
            checksum_ok = None
        else:
            checksum_ok = origin.checksum_ok
            if origin.session == self.plan.session and checksum_ok:
                own_seq = origin.seq
        if own_seq is not None:
            entry = self.pending.pop(own_seq, None)
            if entry is not None:
                sent_at, span, ids, frame = entry
                self._sent.pop(frame, None)
                latency_ms = (now - sent_at) * 1000
                counters.latencies_ms.append(latency_ms)
                if span is not None:
                    if status is not None:
                        span.set_attribute("http.response.status_code", status)
                    failed = status is not None and status >= 400
                    end_span(ctx, span, f"HTTP {status}" if failed else None, str(status))
                self._maybe_drained()
        if latency_ms is None and origin is not None and checksum_ok:
            latency_ms = max(0.0, (ctx.clock.wall_ns() - origin.send_ns) / 1e6)
        if checksum_ok is False:
            counters.checksum_failures += 1
        elif origin is not None and origin.tenant != self.plan.tenant:
            counters.cross_tenant += 1
        self.log.receive(
            seq=own_seq,
            nbytes=len(data),
            latency_ms=latency_ms,
            origin=(
                (origin.tenant, origin.user, origin.session, origin.seq)
                if origin is not None and origin.seq >= 0
                else None
            ),
            checksum_ok=checksum_ok,
            status=status,
            channel=msg.channel,
            trace=ids,
        )
        if status is not None and status >= 400:
            self.errors += 1
            counters.errors += 1
            self.log.error(f"HTTP{status}", data[:200], "receive", ids, own_seq)

    def on_closed(self, closed: Closed) -> None:
        ctx = self.ctx
        if self._active:
            self._active = False
            ctx.counters.active -= 1
        for never in closed.unwritten:
            self._unwritten(never)
        if closed.by == "client":
            return
        self.conn = None
        if closed.idle:
            # A keep-alive connection the server ended between requests: reconnect, quietly.
            self.log.disconnect(closed.by, closed.code, closed.reason, self.trace)
            if self._lost is not None and not self._lost.done():
                self._lost.set_result(None)
            return
        self.errors += 1
        ctx.counters.errors += 1
        what = "ServerClosed" if closed.by == "server" else "ConnectionLost"
        self.log.error(
            what,
            f"{closed.reason or 'closed'} (code {closed.code})",
            "receive",
            self.trace,
        )
        self.log.disconnect(closed.by, closed.code, closed.reason, self.trace)
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
