"""Runs an experiment: steady-state hypothesis, method with the fault timeline, rollbacks.

Every fault step is an event (``source="injector"``, ``fault_id``, toxics named after the fault)
and a journal update. Whatever happens — normal end, error, abort, Ctrl-C/SIGTERM — every fault
this run put on the server is reverted in a ``finally`` that is shielded from cancellation and
bounded in time. Where the server supports leases, each fault also carries a lease renewed by a
heartbeat, so even a ``kill -9`` of the injector leaves nothing behind for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from opentelemetry import trace
from redis.exceptions import RedisError

from injector.activities import (
    ActivityContext,
    Substitution,
    resolve_configuration,
    resolve_secrets,
    run_activity,
)
from injector.chaostoxi import Bridge
from injector.control import RunState, clear_state, drop_queued, next_command, publish_state
from injector.controller import Attribution, attributed
from injector.errors import (
    ControllerError,
    FaultLost,
    InjectorError,
    ProxyNotFound,
    RevertFailed,
    ToxicExists,
    ToxicNotFound,
    UnsupportedByServer,
)
from injector.faults import FaultRun, toxic_spec
from injector.hooks import ControlInterrupted, Hooks
from injector.journal import (
    LIVE_STATES,
    ActivityRun,
    AftershockRun,
    ControlRecord,
    FaultState,
    HookRecord,
    Journal,
    JournalWriter,
    StateLoss,
    SteadyState,
    SteadyStates,
    failure_reason,
    timings_of,
)
from injector.safeguards import RedisResults, SafeguardMonitor
from injector.shield import shielded
from injector.timeline import Timeline
from schemas.base import new_run_id
from schemas.events import (
    ExperimentAborted,
    ExperimentControl,
    ExperimentEnded,
    ExperimentPhase,
    ExperimentStarted,
    HypothesisProbeRan,
    ProxyDisabled,
    ProxyEnabled,
    ToxicAdded,
    ToxicRemoved,
)
from schemas.experiment import Action, ActivityRef, Probe, ToxicFault
from spine import clock
from spine.activefaults import FaultMark, announce

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    import redis.asyncio as aioredis

    from injector.control import ControlCommand
    from injector.controller import Capabilities, Controller, ProxyInfo, ToxicInfo
    from schemas.experiment import Experiment
    from schemas.results import ResultBase
    from spine.eventlog import EventSink

_tracer = trace.get_tracer("aftershock.injector")
log = logging.getLogger(__name__)

Status = Literal["completed", "failed", "aborted", "interrupted"]
AbortCause = Literal["safeguard", "operator", "hypothesis", "signal", "other"]
ProbeWhen = Literal["before", "during", "after"]


def experiment_id_of(exp: Experiment) -> str:
    if exp.aftershock.experiment_id:
        return exp.aftershock.experiment_id
    slug = "".join(c if c.isalnum() else "-" for c in exp.title.lower()).strip("-")
    while "--" in slug:
        slug = slug.replace("--", "-")
    return slug[:60] or "experiment"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


@dataclass
class RunOptions:
    journal_path: Path | None = None
    experiment_id: str | None = None
    redis: aioredis.Redis | None = None
    """Game-day controls and safeguard results come through here when set."""
    results: Callable[[], Any] | None = None
    """Overrides the safeguard result source (an async iterator factory)."""
    use_leases: bool | None = None
    """None: as the file says, if the server supports them."""
    skip_hypothesis: bool = False
    time_scale: float = 1.0
    """Multiplies every offset, duration, pause and hypothesis period of the plan: 0.1 rehearses
    a game day ten times faster. Leases are not scaled."""
    generator_id: str = field(
        default_factory=lambda: f"injector-{socket.gethostname()}-{os.getpid()}"
    )
    tracer_provider: trace.TracerProvider | None = None
    """Where the experiment's and faults' spans go; None: the global provider."""


class Executor:
    def __init__(
        self,
        experiment: Experiment,
        controller: Controller,
        sink: EventSink,
        options: RunOptions | None = None,
    ) -> None:
        self.exp = experiment
        self.ax = experiment.aftershock
        self.ctl = controller
        self.sink = sink
        self.opts = options or RunOptions()
        if self.opts.time_scale <= 0:
            raise InjectorError("time_scale must be positive")
        self.experiment_id = self.opts.experiment_id or experiment_id_of(experiment)
        self.run_id = new_run_id()
        self.timeline = Timeline()
        self.faults: list[FaultRun] = [
            FaultRun(
                fault_id=f.id,
                proxy=f.proxy,
                kind="toxic" if isinstance(f, ToxicFault) else "down",
                fault=f,
                planned_at_s=f.at * self.opts.time_scale,
                planned_duration_s=f.duration * self.opts.time_scale,
                toxic_type=f.toxic.type if isinstance(f, ToxicFault) else None,
            )
            for f in sorted(self.ax.faults, key=lambda f: (f.at, f.id))
        ]
        self.configuration = resolve_configuration(dict(experiment.configuration))
        self.secrets = resolve_secrets(experiment.secrets)
        self.hooks = Hooks(experiment, Substitution(self.configuration, self.secrets))
        self.bridge = Bridge(controller, self.configuration, _BridgeRecorder(self))
        self.caps: Capabilities | None = None
        self.leases = False
        self.status: Literal["running", "completed", "failed", "aborted", "interrupted"] = "running"
        self.deviated = False
        self.steady = SteadyStates()
        self.runs: list[ActivityRun] = []
        self.rollback_runs: list[ActivityRun] = []
        self.controls: list[ControlRecord] = []
        self.state_losses: list[StateLoss] = []
        self._instance: str | None = None
        """The server instance the faults were put on (see ``Controller.server_instance``)."""
        self.abort_reason: str | None = None
        self.abort_cause: AbortCause = "other"
        self.error: str | None = None
        self._start_wall = time.time()
        self._span: trace.Span | None = None
        self._marks: dict[str, FaultMark] = {}
        """Announced fault windows by fault id (see :meth:`_announce`)."""
        self._body_task: asyncio.Task[Any] | None = None
        self._final: Journal | None = None
        self._stopping = asyncio.Event()
        self._writer: JournalWriter | None = None
        self.unsupported: UnsupportedByServer | None = None
        """Set when the server cannot run the plan (nothing was injected)."""

    @property
    def _tracer(self) -> trace.Tracer:
        provider = self.opts.tracer_provider
        return _tracer if provider is None else provider.get_tracer("aftershock.injector")

    # -- events ---------------------------------------------------------------------------------

    def _common(self, span: trace.Span | None = None) -> dict[str, Any]:
        ctx = (span or self._span or trace.INVALID_SPAN).get_span_context()
        ids: dict[str, Any] = {}
        if ctx.is_valid:
            ids = {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}
        ts_ns, mono_ns = clock.stamp()
        return {
            "experiment_id": self.experiment_id,
            "run_id": self.run_id,
            "generator_id": self.opts.generator_id,
            "ts_ns": ts_ns,
            "mono_ns": mono_ns,
            **ids,
        }

    @contextlib.contextmanager
    def _attributed(self, fr: FaultRun) -> Iterator[None]:
        """The server's own events about this change name the experiment, run and fault."""
        with attributed(Attribution(self.experiment_id, self.run_id, fr.fault_id)):
            yield

    def _phase(self, phase: str) -> None:
        active = [f.fault_id for f in self.faults if f.state == FaultState.ACTIVE]
        self.sink.emit(ExperimentPhase(**self._common(), phase=phase, faults_active=active))

    # -- journal --------------------------------------------------------------------------------

    def journal(self) -> Journal:
        """The journal as of now (the final one once the run has ended)."""
        if self._final is not None:
            return self._final
        caps = self.caps
        records = [f.record() for f in self.faults]
        end = time.time() if self.status != "running" else None
        return Journal(
            experiment=self.exp.as_loaded(),
            start=_iso(self._start_wall),
            end=_iso(end) if end else None,
            duration=round(end - self._start_wall, 6) if end else None,
            status=self.status,
            deviated=self.deviated,
            steady_states=self.steady,
            run=self.runs,
            rollbacks=self.rollback_runs,
            aftershock=AftershockRun(
                experiment_id=self.experiment_id,
                run_id=self.run_id,
                api_url=self.ctl.api_url,
                server=caps.server if caps else "",
                server_version=caps.version if caps else "",
                features=sorted(caps.features) if caps else [],
                leases=self.leases,
                faults=records,
                controls=self.controls,
                control_hooks=[
                    HookRecord(control=h.control, hook=h.hook, context=h.context, error=h.error)
                    for h in self.hooks.calls
                ],
                state_losses=self.state_losses,
                abort_reason=self.abort_reason,
                error=self.error,
                timings=timings_of(records),
            ),
        )

    def _save(self) -> Journal | None:
        """Queue the journal as of now for writing (see :class:`JournalWriter`)."""
        if self._writer is None:
            return None
        journal = self.journal()
        self._writer.submit(journal)
        return journal

    # -- preflight ------------------------------------------------------------------------------

    async def preflight(self) -> None:
        """Check the server can run the plan, and create the targets' proxies if asked."""
        self.caps = caps = await self.ctl.capabilities()
        self._instance = self.ctl.server_instance
        missing: list[str] = []
        for f in self.ax.faults:
            for need in caps.lacks(f.needs):
                what = (
                    f"toxic type {need.split(':', 1)[1]!r}"
                    if need.startswith("toxic:")
                    else "per-client 'match' targeting"
                )
                missing.append(f"fault {f.id!r} needs {what}")
        want_leases = (
            self.ax.leases.enabled if self.opts.use_leases is None else self.opts.use_leases
        )
        if self.opts.use_leases and not caps.leases:
            missing.append("leases were required (--leases) but the server has none")
        if missing:
            raise UnsupportedByServer(f"{self.ctl.api_url} ({caps.server} {caps.version})", missing)
        self.leases = want_leases and caps.leases
        if self.ax.create_proxies:
            existing = await self.ctl.list_proxies()
            for t in self.ax.targets:
                if t.proxy and t.proxy not in existing:
                    await self.ctl.create_proxy(t.proxy, t.upstream, t.listen or "127.0.0.1:0")

    # -- faults ---------------------------------------------------------------------------------

    def _toxic_body(self, fr: FaultRun) -> dict[str, Any]:
        f = fr.fault
        assert isinstance(f, ToxicFault)
        body: dict[str, Any] = f.toxic.model_dump(mode="json")
        body["name"] = f.id
        if f.match is not None:
            body["match"] = f.match.model_dump(mode="json", exclude_none=True)
        if self.leases:
            body["ttl_ms"] = self._ttl_ms
        return body

    @property
    def _ttl_ms(self) -> int:
        return int(self.ax.leases.ttl * 1000)

    async def inject(self, fr: FaultRun) -> None:
        async with fr.lock:
            await self._inject_locked(fr)

    async def _inject_locked(self, fr: FaultRun) -> None:
        lateness_s = self.timeline.offset_s() - (fr.planned_at_s or 0.0)
        fr.to(FaultState.INJECTING)
        fr.jitter_ms = round(max(0.0, lateness_s) * 1000, 3)
        fr.injected_at_s = round(self.timeline.offset_s(), 6)
        fr.lease_ttl_ms = self._ttl_ms if self.leases else None
        self._save()
        if self._writer is not None:  # the intent is on disk before the server is touched
            await self._writer.flush()
        fr.span = self._tracer.start_span(
            f"fault {fr.fault_id}",
            context=trace.set_span_in_context(self._span) if self._span else None,
            attributes={
                "aftershock.fault_id": fr.fault_id,
                "aftershock.proxy": fr.proxy,
                "aftershock.fault.type": fr.toxic_type or fr.kind,
            },
        )
        # The event carries the time taken before the call: a stock Toxiproxy reports nothing
        # itself, and the fault may take effect any time after the request leaves.
        common = self._common(fr.span)
        t0 = time.perf_counter()
        try:
            if fr.kind == "toxic":
                body = self._toxic_body(fr)
                with self._attributed(fr):
                    info = await self.ctl.add_toxic(fr.proxy, body)
                fr.apply_ms = round((time.perf_counter() - t0) * 1000, 3)
                self.sink.emit(
                    ToxicAdded(
                        **common,
                        proxy=fr.proxy,
                        source="injector",
                        fault_id=fr.fault_id,
                        toxic=toxic_spec(info),
                        ttl_ms=fr.lease_ttl_ms,
                    )
                )
            else:
                body = {"enabled": False}
                if self.leases:
                    body["ttl_ms"] = self._ttl_ms
                with self._attributed(fr):
                    await self.ctl.update_proxy(fr.proxy, body)
                fr.apply_ms = round((time.perf_counter() - t0) * 1000, 3)
                self.sink.emit(
                    ProxyDisabled(
                        **common,
                        proxy=fr.proxy,
                        source="injector",
                        fault_id=fr.fault_id,
                        ttl_ms=fr.lease_ttl_ms,
                    )
                )
        except ControllerError as exc:
            fr.error = f"inject: {exc}"
            refused = exc.status is not None and 400 <= exc.status < 500
            fr.to(FaultState.REJECTED if refused else FaultState.FAILED)
            fr.span.set_status(trace.StatusCode.ERROR, str(exc))
            fr.span.end()
            self._save()
            raise
        fr.to(FaultState.ACTIVE)
        # The window starts when the event says (what the analyzers and reports use); the
        # generators hear of it first, the journal and phase follow.
        await self._announce(fr, active=True, at_ns=common["ts_ns"])
        self._save()
        self._phase(f"fault:{fr.fault_id}")

    async def revert(self, fr: FaultRun, reason: Literal["api", "rollback"] = "api") -> None:
        async with fr.lock:
            await self._revert_locked(fr, reason)

    async def _revert_locked(self, fr: FaultRun, reason: Literal["api", "rollback"]) -> None:
        if fr.state not in LIVE_STATES:
            return
        planned_end = (fr.planned_at_s or 0.0) + (fr.planned_duration_s or 0.0)
        if fr.source == "timeline" and reason == "api":
            lateness = self.timeline.offset_s() - planned_end
            fr.revert_jitter_ms = round(max(0.0, lateness) * 1000, 3)
        fr.to(FaultState.REVERTING)
        self._save()
        common = self._common(fr.span)
        t0 = time.perf_counter()
        try:
            if fr.kind == "toxic":
                with contextlib.suppress(ToxicNotFound, ProxyNotFound), self._attributed(fr):
                    await self.ctl.remove_toxic(fr.proxy, fr.fault_id)
                self.sink.emit(
                    ToxicRemoved(
                        **common,
                        proxy=fr.proxy,
                        source="injector",
                        fault_id=fr.fault_id,
                        toxic_name=fr.fault_id,
                        reason=reason,
                    )
                )
            else:
                with contextlib.suppress(ProxyNotFound), self._attributed(fr):
                    await self.ctl.update_proxy(fr.proxy, {"enabled": True})
                self.sink.emit(
                    ProxyEnabled(
                        **common,
                        proxy=fr.proxy,
                        source="injector",
                        fault_id=fr.fault_id,
                    )
                )
        except ControllerError as exc:
            fr.error = f"revert: {exc}"
            fr.to(FaultState.FAILED)
            self._save()
            raise
        fr.revert_ms = round((time.perf_counter() - t0) * 1000, 3)
        fr.reverted_at_s = round(self.timeline.offset_s(), 6)
        fr.to(FaultState.REVERTED)
        reverted_ns = common["ts_ns"]  # the event's instant: the fault span's end, the window's
        if fr.span is not None:
            fr.span.end(end_time=reverted_ns)
        await self._announce(fr, active=False, at_ns=reverted_ns)
        self._save()
        if not any(f.state == FaultState.ACTIVE for f in self.faults):
            self._phase("recovery")

    async def revert_all(self) -> None:
        """Revert every live fault, concurrently; raise :class:`RevertFailed` naming leftovers."""
        live = [f for f in self.faults if f.state in LIVE_STATES]
        results = await asyncio.gather(
            *(self.revert(f, reason="rollback") for f in live), return_exceptions=True
        )
        failures = [
            f"{f.fault_id} on {f.proxy}: {r}"
            for f, r in zip(live, results, strict=True)
            if isinstance(r, BaseException)
        ]
        if failures:
            raise RevertFailed(failures)

    async def _heartbeat(self) -> None:
        """Every ``heartbeat``: renew the lease of every active fault, then put back any fault
        the server lost (see :meth:`restore_lost_faults`)."""
        period = self.ax.leases.heartbeat
        while True:
            await asyncio.sleep(period)
            for fr in [f for f in self.faults if f.lease_ttl_ms is not None]:
                async with fr.lock:
                    await self._renew_locked(fr)
            await self.restore_lost_faults()

    async def _renew_locked(self, fr: FaultRun) -> None:
        if fr.state != FaultState.ACTIVE:
            return  # reverted while we waited for the lock
        try:
            with self._attributed(fr):
                if fr.kind == "toxic":
                    await self.ctl.renew_toxic(fr.proxy, fr.fault_id, self._ttl_ms)
                else:
                    await self.ctl.renew_proxy(fr.proxy, self._ttl_ms)
            fr.lease_renewals += 1
        except ControllerError as exc:
            # A server that no longer knows the toxic, the proxy or the lease lost the fault:
            # restore_lost_faults puts it back. Anything else (unreachable, 5xx) is noted.
            if exc.status is None or exc.status >= 500:
                fr.error = f"lease renewal: {exc}"

    # -- a server that lost its state --------------------------------------------------------

    async def restore_lost_faults(self) -> None:
        """Compare what the server holds with the faults that should be active, and apply
        each missing one again (re-creating its proxy from the plan's targets if the proxy is
        gone). A server that restarted, lost a proxy or forgot a lease is noticed here. Each
        loss goes in the journal; one that cannot be undone fails the run (:class:`FaultLost`).
        """
        watched = [f for f in self.faults if f.state == FaultState.ACTIVE and f.fault is not None]
        if not watched:
            return
        try:
            proxies = await self.ctl.list_proxies()
        except ControllerError:
            return  # unreachable, perhaps restarting: the next beat looks again
        instance = self.ctl.server_instance
        restarted = self._instance is not None and instance not in (None, self._instance)
        recreated: set[str] = set()
        for fr in watched:
            found = _lost(fr, proxies)
            if found is None:
                continue
            async with fr.lock:
                if fr.state != FaultState.ACTIVE:
                    continue  # reverted meanwhile
                await self._put_back(fr, found, restarted, proxies, recreated)
        if instance is not None:
            self._instance = instance

    async def _put_back(
        self,
        fr: FaultRun,
        found: Literal["proxy_missing", "toxic_missing", "proxy_enabled"],
        restarted: bool,
        proxies: dict[str, ProxyInfo],
        recreated: set[str],
    ) -> None:
        loss: dict[str, Any] = {
            "at_s": round(self.timeline.offset_s(), 6),
            "fault_id": fr.fault_id,
            "proxy": fr.proxy,
            "found": found,
            "server_restarted": restarted,
        }
        created = False
        try:
            if fr.proxy not in proxies and fr.proxy not in recreated:
                target = next((t for t in self.ax.targets if t.proxy == fr.proxy), None)
                if target is None:
                    raise FaultLost(f"proxy {fr.proxy!r} is gone and no target says how to make it")
                listen = target.listen or "127.0.0.1:0"
                # An outage's proxy comes back disabled: it never serves in between.
                enabled = fr.kind != "down"
                await self.ctl.create_proxy(fr.proxy, target.upstream, listen, enabled=enabled)
                recreated.add(fr.proxy)
                created = True
            if fr.kind == "toxic":
                with contextlib.suppress(ToxicExists):
                    await self.ctl.add_toxic(fr.proxy, self._toxic_body(fr))
            else:
                body: dict[str, Any] = {"enabled": False}
                if self.leases:
                    body["ttl_ms"] = self._ttl_ms
                await self.ctl.update_proxy(fr.proxy, body)
        except (ControllerError, FaultLost) as exc:
            what = f"the fault proxy lost fault {fr.fault_id!r} on {fr.proxy!r} ({found})"
            fr.error = f"{what}; putting it back failed: {exc}"
            self.state_losses.append(
                StateLoss(**loss, action="failed", proxy_recreated=created, error=str(exc))
            )
            self._save()
            raise FaultLost(fr.error) from exc
        fr.reapplied += 1
        self.state_losses.append(StateLoss(**loss, action="reapplied", proxy_recreated=created))
        log.warning("fault %s on %s was lost (%s); applied again", fr.fault_id, fr.proxy, found)
        self._save()

    async def _announce(self, fr: FaultRun, *, active: bool, at_ns: int) -> None:
        """Tell generators the fault is in force since ``at_ns`` (or over at ``at_ns``), with
        its span, so the spans that run under it name it and link to it (see
        :mod:`spine.activefaults`)."""
        now = at_ns
        if active:
            ids = self._common(fr.span)
            mark = FaultMark(
                fault_id=fr.fault_id,
                start_ns=now,
                trace_id=ids.get("trace_id"),
                span_id=ids.get("span_id"),
            )
        elif (started := self._marks.get(fr.fault_id)) is not None:
            mark = started.model_copy(update={"end_ns": max(now, started.start_ns)})
        else:
            return
        self._marks[fr.fault_id] = mark
        redis = self.opts.redis
        if redis is None:
            return
        with contextlib.suppress(RedisError, OSError, TimeoutError):  # advisory, like the state
            async with asyncio.timeout(1.0):
                await announce(redis, self.experiment_id, mark)

    async def _publish_state(self) -> None:
        redis = self.opts.redis
        assert redis is not None
        while not self._stopping.is_set():
            status = "paused" if self.timeline.paused else self.status
            with contextlib.suppress(RedisError, OSError):  # the state is advisory
                await publish_state(
                    redis,
                    self.experiment_id,
                    RunState(status=status, run_id=self.run_id, offset_s=self.timeline.offset_s()),
                )
            await self._pause_unless_stopping(1.0)

    # -- timeline -------------------------------------------------------------------------------

    async def run_timeline(self) -> None:
        """Inject and revert on schedule. Each fault runs in its own task, started when due, so
        neither a slow server answer nor simultaneous faults delay the next one's start."""
        async with asyncio.TaskGroup() as tg:
            for fr in list(self.faults):
                if fr.source != "timeline":
                    continue
                await self.timeline.wait_until(fr.planned_at_s or 0.0)
                if fr.state == FaultState.PENDING:
                    tg.create_task(self._fault_lifetime(fr))

    async def _fault_lifetime(self, fr: FaultRun) -> None:
        await self.inject(fr)
        end = (fr.planned_at_s or 0.0) + (fr.planned_duration_s or 0.0)
        await self.timeline.wait_until(end)
        if fr.state == FaultState.ACTIVE:
            await self.revert(fr)

    async def skip(self) -> None:
        """Revert the timeline's active faults now and jump to the next pending fault."""
        for fr in self.faults:
            if fr.source == "timeline" and fr.state == FaultState.ACTIVE:
                await self.revert(fr)
        pending = [f for f in self.faults if f.state == FaultState.PENDING]
        if pending:
            self.timeline.skip_to(pending[0].planned_at_s or 0.0)

    # -- controls and safeguards ---------------------------------------------------------------

    def abort(self, reason: str, cause: AbortCause = "other") -> None:
        if self.abort_reason is None:
            self.abort_reason = reason
            self.abort_cause = cause
            if self._body_task is not None:
                self._body_task.cancel()

    async def handle(self, cmd: ControlCommand) -> None:
        self.controls.append(
            ControlRecord(
                command=cmd.command,
                issued_by=cmd.issued_by,
                at_s=round(self.timeline.offset_s(), 6),
            )
        )
        self.sink.emit(
            ExperimentControl(**self._common(), command=cmd.command, issued_by=cmd.issued_by)
        )
        if cmd.command == "pause":
            self.timeline.pause()
            self._phase("paused")
        elif cmd.command == "resume":
            self.timeline.resume()
            self._phase("resumed")
        elif cmd.command == "skip":
            await self.skip()
        else:
            self.abort(f"aborted by {cmd.issued_by or 'an operator'}", "operator")
        self._save()

    # The Redis helpers below stop on ``_stopping`` rather than on cancellation alone:
    # redis-py can swallow a cancellation that lands inside a command. A Redis hiccup must not
    # end a game day either: they report it and retry.

    async def _listen_controls(self) -> None:
        redis = self.opts.redis
        assert redis is not None
        with contextlib.suppress(RedisError, OSError):
            await drop_queued(redis, self.experiment_id)
        while not self._stopping.is_set():
            try:
                cmd = await next_command(redis, self.experiment_id, wait_s=0.5)
            except (RedisError, OSError) as exc:
                log.warning("control channel: %s; retrying in 1 s", exc)
                await self._pause_unless_stopping(1.0)
                continue
            if cmd is not None:
                await self.handle(cmd)

    async def _pause_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    def observe_result(self, monitor: SafeguardMonitor, result: ResultBase) -> None:
        reason = monitor.observe(result)
        if reason:
            self.abort(f"safeguard: {reason}", "safeguard")

    async def _watch_safeguards(self) -> None:
        monitor = SafeguardMonitor(list(self.ax.safeguards))
        if self.opts.results is not None:
            async for result in self.opts.results():
                self.observe_result(monitor, result)
            return
        redis = self.opts.redis
        assert redis is not None
        results = RedisResults(redis, self.experiment_id)
        while not self._stopping.is_set():
            try:
                for result in await results.poll():
                    self.observe_result(monitor, result)
            except (RedisError, OSError) as exc:
                log.warning("safeguards cannot read results: %s; retrying in 1 s", exc)
                await self._pause_unless_stopping(1.0)
                continue
            await self._pause_unless_stopping(0.25)

    # -- hypothesis and activities -------------------------------------------------------------

    def _resolve(self, act: Action | Probe | ActivityRef) -> Action | Probe:
        if isinstance(act, ActivityRef):
            for group in (
                list(self.exp.steady_state_hypothesis.probes)
                if self.exp.steady_state_hypothesis
                else [],
                list(self.exp.method),
                list(self.exp.rollbacks),
            ):
                for a in group:
                    if isinstance(a, Action | Probe) and a.name == act.ref:
                        return a
            raise InjectorError(f"ref {act.ref!r} names no activity")
        return act

    @property
    def _ctx(self) -> ActivityContext:
        return ActivityContext(
            configuration=self.configuration,
            bridge=self.bridge,
            time_scale=self.opts.time_scale,
            secrets=self.secrets,
            hooks=self.hooks,
        )

    async def hypothesis(self, when: ProbeWhen) -> SteadyState | None:
        ssh = self.exp.steady_state_hypothesis
        if ssh is None or self.opts.skip_hypothesis:
            return None
        runs: list[ActivityRun] = []
        met = True
        raw = self.exp.as_loaded().get("steady-state-hypothesis") or {}
        try:
            await self.hooks.apply("hypothesis", "before", raw, context_controls=ssh.controls)
            for p in ssh.probes:
                run = await run_activity(self._resolve(p), self._ctx)
                runs.append(run)
                self._probe_ran(run, when)
                if not run.tolerance_met:
                    met = False
                    break
        finally:
            state = SteadyState(steady_state_met=met, probes=runs)
            await self.hooks.apply(
                "hypothesis", "after", raw, state=state.ctk(), context_controls=ssh.controls
            )
        return state

    def _probe_ran(self, run: ActivityRun, when: ProbeWhen) -> None:
        """The probe's run as an event, so the analyzers' verdict holds the hypothesis."""
        met = bool(run.tolerance_met)  # as hypothesis() judges it
        detail = ""
        if not met:
            detail = "".join(run.exception or []).strip() or f"output {run.output!r}"
        self.sink.emit(
            HypothesisProbeRan(
                **self._common(),
                probe=run.name,
                when=when,
                duration_s=max(0.0, run.duration),
                tolerance_met=met,
                detail=detail[:4000],
            )
        )

    async def run_activities(
        self, acts: list[Action | Probe | ActivityRef], into: list[ActivityRun]
    ) -> None:
        async with asyncio.TaskGroup() as tg:
            for a in acts:
                act = self._resolve(a)
                if act.background:
                    tg.create_task(self._run_into(act, into))
                else:
                    await self._run_into(act, into)

    async def _run_into(self, act: Action | Probe, into: list[ActivityRun]) -> None:
        into.append(await run_activity(act, self._ctx))
        self._save()

    async def _during(self) -> None:
        rt = self.exp.runtime.hypothesis
        while True:
            await asyncio.sleep(rt.frequency * self.opts.time_scale)
            state = await self.hypothesis("during")
            if state is None:
                return
            self.steady = self.steady.model_copy(update={"during": [*self.steady.during, state]})
            if not state.steady_state_met:
                self.deviated = True
                if rt.fail_fast:
                    self.abort("steady state deviated during the method (fail_fast)", "hypothesis")
                    return

    # -- the run --------------------------------------------------------------------------------

    async def _method_phase(self) -> None:
        raw = self.exp.as_loaded()
        try:
            await self.hooks.apply("method", "before", raw)
            await self._method_phase_body()
        finally:
            await self.hooks.apply("method", "after", raw, state=[r.ctk() for r in self.runs])

    async def _method_phase_body(self) -> None:
        self._phase("method")
        self.timeline.start()
        strategy = self.exp.runtime.hypothesis.strategy
        async with asyncio.TaskGroup() as tg:
            during = (
                tg.create_task(self._during())
                if strategy in ("during-method-only", "continuously")
                and self.exp.steady_state_hypothesis
                else None
            )
            timeline = tg.create_task(self.run_timeline())
            await self.run_activities(list(self.exp.method), self.runs)
            await timeline
            if during is not None:
                during.cancel()

    async def _body(self) -> None:
        await self.hooks.configure()
        await self.hooks.apply("experiment", "before", self.exp.as_loaded())
        strategy = self.exp.runtime.hypothesis.strategy
        if strategy in ("default", "before-method-only", "continuously"):
            self._phase("hypothesis-before")
            before = await self.hypothesis("before")
            self.steady = self.steady.model_copy(update={"before": before})
            if before is not None and not before.steady_state_met:
                self.status = "failed"
                return
        await self._method_phase()
        if strategy in ("default", "after-method-only", "continuously"):
            self._phase("hypothesis-after")
            after = await self.hypothesis("after")
            self.steady = self.steady.model_copy(update={"after": after})
            if after is not None and not after.steady_state_met:
                self.deviated = True
        self.status = "failed" if self.deviated else "completed"

    def _rollbacks_wanted(self) -> bool:
        strategy = self.exp.runtime.rollbacks.strategy
        if strategy == "always":
            return True
        if strategy == "never":
            return False
        if strategy == "deviated":
            return self.deviated
        # Chaos Toolkit's default: played unless its run status is "failed" or "interrupted";
        # an Aftershock abort (safeguard, operator) stops without them too.
        return self.status not in ("aborted", "interrupted") and not self._failed_as_ctk()

    def _failed_as_ctk(self) -> bool:
        """Whether chaostoolkit-lib would call this run "failed": an error, or a hypothesis
        that was not met because one of its probes failed to run. A probe merely out of
        tolerance leaves it "completed" there (``deviated`` says the rest)."""
        if self.error is not None:
            return True
        for state in (self.steady.before, self.steady.after):
            if state is not None and not state.steady_state_met:
                return any(p.status == "failed" for p in state.probes)
        return False

    async def _rollbacks(self) -> None:
        raw = self.exp.as_loaded()
        try:
            await self.hooks.apply("rollback", "before", raw)
            await self.run_activities(list(self.exp.rollbacks), self.rollback_runs)
        finally:
            state = [r.ctk() for r in self.rollback_runs]
            await self.hooks.apply("rollback", "after", raw, state=state)

    async def _last_hooks(self) -> None:
        """The experiment's after hooks (with the journal as it ends) and cleanups."""
        try:
            with contextlib.suppress(ControlInterrupted):
                journal = self.journal().ctk()
                await self.hooks.apply("experiment", "after", self.exp.as_loaded(), state=journal)
        finally:
            await self.hooks.cleanup()

    async def run(self) -> Journal:
        """Run the experiment; returns the journal (also written to ``journal_path``).

        Cancellation (SIGINT/SIGTERM) ends the run as ``interrupted`` after reverting everything;
        the cancellation is then re-raised."""
        if self.opts.journal_path is not None:
            self._writer = JournalWriter(self.opts.journal_path)
        self._span = self._tracer.start_span(
            f"experiment {self.experiment_id}",
            attributes={
                "aftershock.experiment_id": self.experiment_id,
                "aftershock.run_id": self.run_id,
            },
        )
        self.sink.emit(
            ExperimentStarted(
                **self._common(),
                title=self.exp.title,
                planned_duration_s=self.ax.planned_duration_s * self.opts.time_scale,
            )
        )
        cancelled: asyncio.CancelledError | None = None
        try:
            await self.preflight()
            self._save()
            self._body_task = asyncio.current_task()
            if self.abort_reason is not None and self._body_task is not None:
                self._body_task.cancel()  # aborted during the preflight: no method at all
            async with asyncio.TaskGroup() as side:
                helpers = []
                if self.faults:
                    helpers.append(side.create_task(self._heartbeat()))
                if self.opts.redis is not None:
                    helpers.append(side.create_task(self._listen_controls()))
                    helpers.append(side.create_task(self._publish_state()))
                if self.ax.safeguards and (self.opts.redis is not None or self.opts.results):
                    helpers.append(side.create_task(self._watch_safeguards()))
                try:
                    await self._body()
                finally:
                    self._stopping.set()
                    for h in helpers:
                        h.cancel()
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if self.abort_reason is not None and task is not None and task.uncancel() == 0:
                self.status = "aborted"
            else:
                self.status = "interrupted"
                cancelled = exc
        except Exception as exc:
            interrupt = _control_interrupt(exc)
            self.status = "failed" if interrupt is None else "interrupted"
            self.error = str(interrupt) if interrupt else "; ".join(_describe(exc))
            if isinstance(exc, UnsupportedByServer):
                self.unsupported = exc
        finally:
            self._body_task = None
            await self._finish()
        if cancelled is not None:
            raise cancelled
        assert self._final is not None
        return self._final

    async def _finish(self) -> None:
        status: Status = "failed" if self.status == "running" else self.status
        self.status = status
        for fr in self.faults:
            if fr.state == FaultState.PENDING:
                fr.to(FaultState.SKIPPED)
        if self.abort_reason:
            self.sink.emit(
                ExperimentAborted(
                    **self._common(), reason=self.abort_reason, cause=self.abort_cause
                )
            )
        self._phase("rollbacks")
        # Rollbacks and reverts must survive a second Ctrl-C; bound them in time.
        limit = self.ax.revert_timeout
        if self._rollbacks_wanted() and self.exp.rollbacks:
            await shielded(self._rollbacks, limit * 4)
        try:
            await shielded(self.revert_all, limit)
        except RevertFailed as exc:
            self.error = f"{self.error + '; ' if self.error else ''}{exc}"
        except TimeoutError:
            left = [f.fault_id for f in self.faults if f.state in LIVE_STATES]
            self.error = f"revert timed out after {limit:g}s; left: {', '.join(left)}"
        redis = self.opts.redis
        if redis is not None:
            with contextlib.suppress(Exception):
                await shielded(lambda: clear_state(redis, self.experiment_id), 1.0)
        if self.hooks.any:
            await shielded(self._last_hooks, limit * 4)
        reason = failure_reason(self.error, self.deviated) if status == "failed" else ""
        self.sink.emit(
            ExperimentEnded(**self._common(), status=status, deviated=self.deviated, reason=reason)
        )
        if self._span is not None:
            self._span.set_attribute("aftershock.status", self.status)
            self._span.end()
        self._final = self._save() or self.journal()
        if self._writer is not None:
            await shielded(self._writer.flush, 5.0)
            self._writer.close()
            if self._writer.error is not None:
                log.error("could not write the journal: %s", self._writer.error)


def _control_interrupt(exc: BaseException) -> ControlInterrupted | None:
    """The control hook's interruption inside ``exc`` (task groups wrap it), if any."""
    if isinstance(exc, ControlInterrupted):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for e in exc.exceptions:
            if (found := _control_interrupt(e)) is not None:
                return found
    return None


def _lost(
    fr: FaultRun, proxies: dict[str, ProxyInfo]
) -> Literal["proxy_missing", "toxic_missing", "proxy_enabled"] | None:
    """What the server lacks of an active fault, if anything."""
    proxy = proxies.get(fr.proxy)
    if proxy is None:
        return "proxy_missing"
    if fr.kind == "toxic":
        return None if any(t.name == fr.fault_id for t in proxy.toxics) else "toxic_missing"
    return "proxy_enabled" if proxy.enabled else None


def _describe(exc: BaseException) -> list[str]:
    if isinstance(exc, BaseExceptionGroup):
        return [d for e in exc.exceptions for d in _describe(e)]
    if isinstance(exc, InjectorError):
        return [str(exc)]
    return [f"{type(exc).__name__}: {exc}"]


class _BridgeRecorder:
    """Tracks what ``chaostoxi`` actions put on the server, as faults of source ``chaostoxi``."""

    def __init__(self, ex: Executor) -> None:
        self.ex = ex

    def _find(self, proxy: str, fault_id: str) -> FaultRun | None:
        for f in self.ex.faults:
            if f.proxy == proxy and f.fault_id == fault_id and f.state in LIVE_STATES:
                return f
        return None

    @contextlib.contextmanager
    def acting(self, fault_id: str) -> Iterator[dict[str, Any]]:
        """The events' fields, stamped now (before the request); requests made inside carry
        the run's attribution for ``fault_id``."""
        common = self.ex._common()
        with attributed(Attribution(self.ex.experiment_id, self.ex.run_id, fault_id)):
            yield common

    def toxic_added(self, proxy: str, toxic: ToxicInfo, at: dict[str, Any]) -> None:
        fr = FaultRun(
            fault_id=toxic.name,
            proxy=proxy,
            kind="toxic",
            source="chaostoxi",
            toxic_type=toxic.type,
        )
        fr.to(FaultState.INJECTING)
        fr.to(FaultState.ACTIVE)
        fr.injected_at_s = round(self.ex.timeline.offset_s(), 6)
        self.ex.faults.append(fr)
        self.ex.sink.emit(
            ToxicAdded(
                **at,
                proxy=proxy,
                source="injector",
                fault_id=toxic.name,
                toxic=toxic_spec(toxic),
            )
        )
        self.ex._save()

    def toxic_removed(self, proxy: str, name: str, at: dict[str, Any]) -> None:
        fr = self._find(proxy, name)
        if fr is not None:
            fr.to(FaultState.REVERTING)
            fr.to(FaultState.REVERTED)
            fr.reverted_at_s = round(self.ex.timeline.offset_s(), 6)
        self.ex.sink.emit(
            ToxicRemoved(
                **at,
                proxy=proxy,
                source="injector",
                fault_id=name,
                toxic_name=name,
                reason="api",
            )
        )
        self.ex._save()

    def proxy_enabled(self, proxy: str, enabled: bool, at: dict[str, Any]) -> None:
        fault_id = f"{proxy}-down"
        if not enabled:
            if self._find(proxy, fault_id) is None:
                fr = FaultRun(fault_id=fault_id, proxy=proxy, kind="down", source="chaostoxi")
                fr.to(FaultState.INJECTING)
                fr.to(FaultState.ACTIVE)
                fr.injected_at_s = round(self.ex.timeline.offset_s(), 6)
                self.ex.faults.append(fr)
            self.ex.sink.emit(
                ProxyDisabled(**at, proxy=proxy, source="injector", fault_id=fault_id)
            )
        else:
            found = self._find(proxy, fault_id)
            if found is not None:
                found.to(FaultState.REVERTING)
                found.to(FaultState.REVERTED)
            self.ex.sink.emit(ProxyEnabled(**at, proxy=proxy, source="injector", fault_id=fault_id))
        self.ex._save()


__all__ = ["Executor", "FaultRun", "RunOptions", "experiment_id_of", "shielded"]
