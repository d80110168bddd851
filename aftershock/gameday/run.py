"""``aftershock run``: one game day from start to verdict.

Starts what the settings leave unconfigured (embedded broker and Redis, fault proxy, and for an
experiment written for it the sample chat system), runs the generators and the injector's
timeline side by side, analyses live in process, then drains the analysis, judges, writes the
run directory and cleans up. Every event is encoded once (by whoever makes it) and its bytes go
to Kafka and to the run's local log (``events/``, zstd batches); the live analysis and the
dashboard get it as a model.

Exit status: 0 the verdict passed, 1 it failed (or a safeguard aborted the run), 2 error or
interrupted. A first Ctrl-C aborts the experiment (faults reverted, partial report); a second
one cancels outright (faults are still reverted, shielded and time-limited, by the injector).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from rich.console import Console

from aftershock.gameday.analysis import LiveAnalysis, analyzer_config
from aftershock.gameday.dashboard import Dashboard
from aftershock.gameday.live import LiveTap
from aftershock.gameday.prune import prune_runs
from aftershock.gameday.remote import publish_snapshot
from aftershock.gameday.sample import SampleProcess, is_sample_experiment, plan_sample
from aftershock.gameday.workers import AnalyzerWorkers, WorkerAnalysis
from aftershock.report.errors import GamedayError, RunSetupError
from aftershock.report.files import (
    ANALYSIS_FILE,
    JOURNAL_FILE,
    SAMPLE_LOG,
    SAMPLE_SPANS,
    atomic_write,
    write_meta,
    write_reports,
)
from aftershock.report.model import Findings, RunData, RunMeta
from aftershock.report.series import SeriesBuilder
from generators.runner import Generator, GeneratorOptions
from injector.controller import ToxiproxyController
from injector.errors import InjectorError
from injector.executor import Executor, experiment_id_of
from injector.executor import RunOptions as InjectorOptions
from schemas.events import parse_event
from spine.eventlog.codec import encode_event, partition_key
from spine.eventlog.publisher import LossReport, Publisher
from spine.eventlog.runlog import EVENTS_DIR, RunLogWriter
from spine.stack import EmbeddedStack
from spine.telemetry import configure_tracing

if TYPE_CHECKING:
    from contextlib import AsyncExitStack
    from pathlib import Path

    from aftershock.report.model import RunStatus
    from schemas.events import Event
    from schemas.experiment import Experiment
    from spine.eventlog import EncodedEventSink, EventSink
    from spine.settings import Settings


@dataclass(frozen=True)
class GamedayOptions:
    runs_dir: Path | None = None
    """Where run directories go; default ``<state_dir>/runs``."""
    sample: bool | None = None
    """Start the sample chat system; None: when the experiment's targets are its hops."""
    bugs: tuple[str, ...] = ()
    """Defects to switch on in the sample system."""
    dashboard: bool = True
    line_every_s: float = 5.0
    bucket_s: float = 1.0
    trace_every: int = 20
    """Trace every n-th round trip of each session (0: sessions and connects only)."""
    drain_timeout_s: float = 15.0
    workers: int = 0
    """Analyzer worker processes (``aftershock analyze``) to start; 0 analyses in process."""
    global_tracing: bool = True
    """Install the run's tracer provider globally (the injector's spans go through it); off
    for continuous rounds, whose providers come and go."""
    ignore_safeguards: tuple[str, ...] = ()
    """Safeguard metrics left out of the plan (e.g. ``isolation_violations`` in the demo, so
    the game day plays out instead of stopping at the first leak; the SLO still judges it)."""
    console: Console = field(default_factory=lambda: Console(stderr=True))


@dataclass(frozen=True)
class RunOutcome:
    exit_code: int
    run_dir: Path | None
    status: RunStatus
    failing: list[str]
    reasons: list[str]
    wall_s: float


class _Fanout:
    """The run's event sink (an :class:`~spine.eventlog.EncodedEventSink`): the encoded bytes
    of each event go to ``logs`` (Kafka, the run's local log) as they are; ``sinks`` (the
    analysis, the observers) get the model, built once."""

    def __init__(self) -> None:
        self.logs: list[EncodedEventSink] = []
        self.sinks: list[EventSink] = []

    def emit(self, event: Event) -> None:
        if self.logs:
            key, data = partition_key(event), encode_event(event)
            for log in self.logs:
                log.emit_encoded(key, data)
        for s in self.sinks:
            s.emit(event)

    def emit_encoded(self, key: str, data: bytes) -> None:
        for log in self.logs:
            log.emit_encoded(key, data)
        if self.sinks:
            event = parse_event(data)
            for s in self.sinks:
                s.emit(event)


class _Observers:
    """The report's time series and the dashboard's tap, as one sink."""

    def __init__(self, series: SeriesBuilder, tap: LiveTap) -> None:
        self.series, self.tap = series, tap

    def emit(self, event: Event) -> None:
        self.series.add(event)
        self.tap.observe(event)


class Gameday:
    def __init__(self, experiment: Experiment, settings: Settings, options: GamedayOptions) -> None:
        self.exp = experiment
        self.settings = settings
        self.opts = options
        self.console = options.console
        self.experiment_id = experiment_id_of(experiment)
        self.executor: Executor | None = None
        self.publisher: Publisher | None = None
        self.generators: list[Generator] = []
        self.interrupted: str | None = None
        self._hard_cancel: asyncio.Task[RunOutcome] | None = None
        self.sut_exit: int | None = None
        self.sut_exit_at_s = 0.0
        self._t0 = time.monotonic()

    # -- signals -----------------------------------------------------------------------------

    def interrupt(self, why: str) -> None:
        """First call: abort the experiment cleanly. Second: cancel the run outright."""
        if self.interrupted is not None:
            if self._hard_cancel is not None:
                self._hard_cancel.cancel()
            return
        self.interrupted = why
        self.console.print(f"[yellow]{why}: aborting, reverting faults …[/yellow]")
        if self.executor is not None:
            self.executor.abort(why)
        for g in self.generators:
            g.stop()

    def _log_lost(self, report: LossReport) -> None:
        """The broker lost events it had acknowledged (the publisher sends them again)."""
        if report.unrepaired:
            self.console.print(
                f"[red]event log: {report.reason}; {report.unrepaired} events are lost for "
                f"good, {report.resent} sent again[/red]"
            )
        else:
            self.console.print(
                f"[yellow]event log: {report.reason}; {report.resent} events sent again[/yellow]"
            )

    def _sut_exited(self, status: int) -> None:
        self.sut_exit, self.sut_exit_at_s = status, time.monotonic() - self._t0
        self.console.print(
            f"[red]the system under test exited with status {status} "
            f"{self.sut_exit_at_s:.0f} s into the run[/red]"
        )

    # -- the run -----------------------------------------------------------------------------

    async def run(self) -> RunOutcome:
        self._hard_cancel = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig, name in ((signal.SIGINT, "interrupted (SIGINT)"), (signal.SIGTERM, "SIGTERM")):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.interrupt, name)
        try:
            async with contextlib.AsyncExitStack() as stack:
                outcome = await self._run(stack)
            return self._with_log_losses(outcome)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)

    async def _services(self, stack: AsyncExitStack, fanout: _Fanout) -> tuple[str, str, str]:
        s = self.settings
        kafka, redis_url = s.kafka_bootstrap, s.redis_url
        if kafka is None or redis_url is None:
            self.console.print("starting the embedded stack …")
            embedded = await stack.enter_async_context(EmbeddedStack(s))
            kafka, redis_url = embedded.kafka_bootstrap, embedded.redis_url
        # Entered before every producer (the proxy, generators), so it closes after they
        # stopped: it flushes and checks the broker before the broker stops.
        self.publisher = await stack.enter_async_context(
            Publisher(
                kafka,
                s.topic_events,
                state_dir=s.state_dir,
                durable_window_ms=s.eventlog_durable_window_ms,
                fsync_interval_ms=s.eventlog_fsync_interval_ms,
                retain_bytes=s.eventlog_retain_bytes,
                on_loss=self._log_lost,
            )
        )
        api_url = s.toxiproxy_url
        if api_url is None:
            from injector.proxy import ProxyServer

            server = await stack.enter_async_context(
                ProxyServer(host=s.bind_host, port=0, sink=fanout)
            )
            api_url = str(server.api_url)
        return kafka, redis_url, api_url

    async def _create_proxies(self, stack: AsyncExitStack, ctl: ToxiproxyController) -> None:
        """Create the targets' proxies up front (the sample dials through them at start);
        proxies created on an external server are deleted at the end."""
        existing = await ctl.list_proxies()
        for t in self.exp.aftershock.targets:
            if t.proxy and t.proxy not in existing:
                await ctl.create_proxy(t.proxy, t.upstream, t.listen or "127.0.0.1:0")
                if self.settings.toxiproxy_url is not None:
                    name = t.proxy
                    stack.push_async_callback(self._delete_proxy, ctl, name)

    @staticmethod
    async def _delete_proxy(ctl: ToxiproxyController, name: str) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5.0):
                await ctl.delete_proxy(name)

    async def _run(self, stack: AsyncExitStack) -> RunOutcome:
        t_wall = self._t0 = time.monotonic()
        fanout = _Fanout()
        kafka, redis_url, api_url = await self._services(stack, fanout)
        sample = self.opts.sample
        if sample is None:
            sample = is_sample_experiment(self.exp)
        if sample:
            plan = plan_sample(self.exp, redis_url, "127.0.0.1")
            self.exp = plan.experiment
        ax = self.exp.aftershock

        redis = Redis.from_url(redis_url)
        stack.push_async_callback(redis.aclose)
        ctl = ToxiproxyController(api_url)
        config = analyzer_config(self.exp)
        tap_box: list[LiveTap] = []
        analysis: LiveAnalysis | WorkerAnalysis
        if self.opts.workers:
            analysis = WorkerAnalysis(
                self.experiment_id,
                config,
                redis,
                on_results=lambda rs: tap_box[0].update_results(rs) if tap_box else None,
            )
            await analysis.publish_config()
        else:
            analysis = LiveAnalysis(
                self.experiment_id,
                config,
                redis=redis,
                on_results=lambda rs: tap_box[0].update_results(rs) if tap_box else None,
            )
        executor = self.executor = Executor(
            self.exp,
            ctl,
            fanout,
            InjectorOptions(
                experiment_id=self.experiment_id,
                redis=redis,
                results=analysis.results_feed,
            ),
        )
        run_id = executor.run_id
        run_dir = (self.opts.runs_dir or self.settings.state_dir / "runs") / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        pruned = prune_runs(
            run_dir.parent,
            keep=self.settings.runs_keep,
            max_bytes=self.settings.runs_max_bytes,
            current=run_dir,
        )
        if pruned.removed:
            self.console.print(
                f"deleted {len(pruned.removed)} old run directories "
                f"({pruned.freed_bytes / 1e6:.0f} MB; AFTERSHOCK_RUNS_KEEP, _RUNS_MAX_BYTES)"
            )
        executor.opts.journal_path = run_dir / JOURNAL_FILE
        atomic_write(run_dir / ANALYSIS_FILE, config.model_dump_json(indent=2) + "\n")
        self._link_latest(run_dir)

        if self.opts.workers:
            env = {
                **os.environ,
                "AFTERSHOCK_KAFKA_BOOTSTRAP": kafka,
                "AFTERSHOCK_REDIS_URL": redis_url,
                "AFTERSHOCK_STATE_DIR": str(self.settings.state_dir),
            }
            await stack.enter_async_context(
                AnalyzerWorkers(self.opts.workers, f"aftershock-run-{run_id}", env, run_dir)
            )
        local_log = RunLogWriter(run_dir / EVENTS_DIR)
        stack.callback(local_log.close)
        assert self.publisher is not None
        fanout.logs.extend([self.publisher, local_log])
        series = SeriesBuilder(self.opts.bucket_s)
        planned_s = max([ax.planned_duration_s, *(p.duration_s for p in ax.load)], default=0.0)
        tap = LiveTap(
            title=self.exp.title,
            experiment_id=self.experiment_id,
            run_id=run_id,
            planned_s=planned_s,
            now_s=time.monotonic,
        )
        tap_box.append(tap)
        fanout.sinks.extend([analysis, _Observers(series, tap)])

        provider, shutdown_tracing = configure_tracing(
            self.settings, "aftershock-run", run_dir=run_dir, set_global=self.opts.global_tracing
        )
        stack.callback(shutdown_tracing)
        await self._create_proxies(stack, ctl)
        sut: SampleProcess | None = None
        if sample:
            sut = await stack.enter_async_context(
                SampleProcess(
                    plan,
                    bugs=self.opts.bugs,
                    log_path=run_dir / SAMPLE_LOG,
                    spans_path=run_dir / SAMPLE_SPANS
                    if self.settings.otel_exporter == "file"
                    else None,
                    otlp_endpoint=self.settings.otel_endpoint
                    if self.settings.otel_exporter == "otlp"
                    else None,
                )
            )
        targets = {t.name: t for t in ax.targets}
        for profile in ax.load:
            if profile.target not in targets:
                raise RunSetupError(f"load profile names unknown target {profile.target!r}")
            self.generators.append(
                Generator(
                    profile,
                    targets[profile.target],
                    fanout,
                    GeneratorOptions(
                        experiment_id=self.experiment_id,
                        run_id=run_id,
                        trace_every=self.opts.trace_every,
                    ),
                    tracer_provider=provider,
                )
            )
        self.console.print(
            f"experiment [bold]{self.experiment_id}[/bold] run {run_id}: "
            f"{sum(p.total_sessions for p in ax.load)} sessions, {len(ax.faults)} faults, "
            f"~{planned_s:.0f} s; run directory {run_dir}"
        )
        started_ns = time.time_ns()
        status: RunStatus = "completed"
        note = ""
        dashboard = Dashboard(
            tap.snapshot,
            self.console,
            line_every_s=self.opts.line_every_s,
            enabled=self.opts.dashboard,
        )
        try:
            async with asyncio.TaskGroup() as tg:
                helpers = [
                    tg.create_task(analysis.run()),
                    tg.create_task(dashboard.run()),
                    tg.create_task(self._publish_live(redis, tap)),
                ]
                if sut is not None:
                    helpers.append(tg.create_task(sut.watch(self._sut_exited)))
                loads = [tg.create_task(g.run()) for g in self.generators]
                try:
                    journal = await executor.run()
                    if journal.status == "aborted":
                        for g in self.generators:
                            g.stop()
                    await asyncio.gather(*loads)
                finally:
                    for h in helpers:
                        h.cancel()
            if journal.status == "aborted":
                status, note = "aborted", journal.aftershock.abort_reason or ""
            elif journal.status == "failed":
                status = "failed"
                note = journal.aftershock.error or (
                    "the steady-state hypothesis deviated"
                    if journal.deviated
                    else "the steady-state hypothesis was not met before the method"
                )
        except asyncio.CancelledError:
            status, note = "interrupted", self.interrupted or "cancelled"
            raise
        finally:
            if self.interrupted is not None:
                status, note = "interrupted", self.interrupted
            if self.sut_exit is not None:
                crash = (
                    f"the system under test exited with status {self.sut_exit} "
                    f"{self.sut_exit_at_s:.0f} s into the run (see {SAMPLE_LOG})"
                )
                note = f"{note}; {crash}" if note else crash
            drain_s = self.opts.drain_timeout_s * (2 if self.opts.workers else 1)
            results = await asyncio.shield(analysis.drain(drain_s))
            if isinstance(analysis, WorkerAnalysis) and not analysis.drained:
                late = f"the analyzer workers had not caught up after {drain_s:g} s"
                note = f"{note}; {late}" if note else late
            meta = RunMeta(
                experiment_id=self.experiment_id,
                run_id=run_id,
                title=self.exp.title,
                started_ns=series.origin_ns or started_ns,
                ended_ns=time.time_ns(),
                status=status,
                note=note,
            )
            write_meta(run_dir, meta)
            data = RunData.of(meta, results, series.build())
            write_reports(run_dir, data)
        return self._outcome(data, run_dir, time.monotonic() - t_wall)

    def _with_log_losses(self, outcome: RunOutcome) -> RunOutcome:
        """Events the broker lost for good (checked when the publisher closed) fail the run."""
        lost = self.publisher.statistics().unrepaired if self.publisher is not None else 0
        if not lost:
            return outcome
        reason = f"the event log lost {lost} events for good (the broker lost them)"
        self.console.print(f"[red]{reason}[/red]")
        return replace(
            outcome, exit_code=max(outcome.exit_code, 1), reasons=[*outcome.reasons, reason]
        )

    async def _publish_live(self, redis: Redis, tap: LiveTap) -> None:
        """The dashboard's snapshot, for ``aftershock dashboard`` in another terminal."""
        while True:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await publish_snapshot(redis, tap.snapshot())
            await asyncio.sleep(1.0)

    def _link_latest(self, run_dir: Path) -> None:
        latest = run_dir.parent / "latest"
        with contextlib.suppress(OSError):
            if latest.is_symlink() or latest.exists():
                latest.unlink()
            latest.symlink_to(run_dir.name)

    def _outcome(self, data: RunData, run_dir: Path, wall_s: float) -> RunOutcome:
        f = Findings(data.records())
        status = data.meta.status
        reasons = list(f.verdict.reasons) if f.verdict is not None else []
        if status == "interrupted":
            code = 2
        elif f.passed is None:
            code = 2
            reasons.append("no verdict: no client events were analysed")
        elif not f.passed or status in ("aborted", "failed"):
            code = 1
        else:
            code = 0
        if data.meta.note:
            reasons.append(f"run {status}: {data.meta.note}")
        return RunOutcome(code, run_dir, status, f.failing_checks(), reasons, wall_s)


def without_safeguards(exp: Experiment, metrics: tuple[str, ...]) -> Experiment:
    """The experiment without the safeguards on ``metrics`` (the journal records the plan as
    run, so the change is visible there)."""
    ax = exp.aftershock
    kept = [sg for sg in ax.safeguards if sg.metric not in metrics]
    section = ax.model_copy(update={"safeguards": kept})
    others = [e for e in exp.extensions if e is not ax]
    return exp.model_copy(update={"extensions": [section, *others]})


def load_plan(experiment_path: Path, options: GamedayOptions) -> Experiment:
    from injector.validate import load_experiment

    try:
        exp = load_experiment(experiment_path)
    except InjectorError as exc:
        raise RunSetupError(str(exc)) from exc
    if not exp.aftershock.load and not exp.aftershock.faults:
        raise RunSetupError(f"{experiment_path}: the experiment has neither load nor faults")
    if options.ignore_safeguards:
        exp = without_safeguards(exp, options.ignore_safeguards)
    return exp


async def run_gameday(
    experiment_path: Path, settings: Settings, options: GamedayOptions
) -> RunOutcome:
    exp = load_plan(experiment_path, options)
    try:
        return await Gameday(exp, settings, options).run()
    except* (InjectorError, GamedayError, OSError) as group:
        first = group.exceptions[0]
        raise RunSetupError(f"{type(first).__name__}: {first}") from first


__all__ = ["GamedayOptions", "RunOutcome", "run_gameday"]
