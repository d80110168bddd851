"""``aftershock run``: one game day from start to verdict.

Starts what the settings leave unconfigured (embedded broker and Redis, fault proxy, and for an
experiment written for it the sample chat system), runs the generators and the injector's
timeline side by side, analyses live in process, then drains the analysis, judges, writes the
run directory and cleans up. Every event is encoded once (by whoever makes it) and its bytes go
to Kafka and to the run's local log (``events/``, zstd batches); the live analysis and the
dashboard get it as a model.

Exit status: 0 the verdict passed, 1 it failed (or a safeguard aborted the run), 2 error or
interrupted. A first Ctrl-C aborts the experiment (faults reverted, partial report) and gives
the run ``interrupt_timeout_s`` to end in order; a second one, or that time passing, makes it
stop waiting (see :meth:`Gameday.force`). Either way it ends within a bounded time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal, TypeVar

from redis.asyncio import Redis
from rich.markup import escape

from aftershock.gameday.analysis import LiveAnalysis, analyzer_config
from aftershock.gameday.dashboard import Dashboard, unwrapped_console
from aftershock.gameday.live import LiveTap
from aftershock.gameday.prune import prune_runs
from aftershock.gameday.remote import publish_snapshot
from aftershock.gameday.sample import SampleProcess, is_sample_experiment, plan_sample
from aftershock.gameday.stopping import ExitWatchdog, cancel_and_wait
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
from analyzers.core.verdict import log_lost_reason
from generators.runner import Generator, GeneratorOptions
from injector.controller import ToxiproxyController
from injector.errors import InjectorError
from injector.executor import Executor, experiment_id_of
from injector.executor import RunOptions as InjectorOptions
from injector.journal import failure_reason
from schemas.events import ExperimentAnalysis
from schemas.results import TimeSeries
from spine import clock
from spine.activefaults import ActiveFaults, follow
from spine.eventlog.publisher import LossReport, Publisher
from spine.eventlog.runlog import EVENTS_DIR, RunLogWriter
from spine.eventlog.sink import Fanout
from spine.stack import EmbeddedStack
from spine.store import clear_results
from spine.telemetry import configure_tracing, otlp_endpoint

if TYPE_CHECKING:
    from collections.abc import Awaitable, Sequence
    from contextlib import AsyncExitStack
    from pathlib import Path

    from rich.console import Console

    from aftershock.report.model import RunStatus
    from schemas.experiment import Experiment
    from schemas.load import LoadProfile
    from schemas.results import ResultEvent
    from spine.eventlog import EventSink
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
    trace_every: int = 20
    """Trace every n-th round trip of each session (0: sessions and connects only)."""
    trace_sessions: float = 1.0
    """The share of sessions traced (each session is one trace, sampled whole by its trace
    id); the system under test continues only the traces that are sampled."""
    drain_timeout_s: float = 15.0
    workers: int = 0
    """Analyzer worker processes (``aftershock analyze``) to start; 0 analyses in process."""
    global_tracing: bool = True
    """Install the run's tracer provider globally (the injector's spans go through it); off
    for continuous rounds, whose providers come and go."""
    ignore_safeguards: tuple[str, ...] = ()
    """Safeguard metrics left out of the plan (e.g. ``isolation_violations`` in the demo, so
    the game day plays out instead of stopping at the first leak; the SLO still judges it)."""
    interrupt_timeout_s: float = 60.0
    """After the first Ctrl-C (or SIGTERM), how long the run may take to end in order (faults
    reverted, load stopped, analysis drained, report written, processes stopped) before it
    stops waiting, as on a second Ctrl-C."""
    watchdog: ExitWatchdog | None = None
    """The last resort that ends the process once an interrupted run overruns its bound; the
    CLI passes one that stays armed through the event loop's shutdown. None: the run's own,
    disarmed when it returns."""
    console: Console = field(default_factory=unwrapped_console)


FORCED_CLEANUP_S = 10.0
"""Once a run stops waiting, the time allowed, beyond the experiment's ``revert_timeout``, to
write the partial report and stop what it started before the watchdog ends the process."""
FORCED_FLUSH_S = 1.0
"""Once a run stops waiting, how long the publisher may still deliver (the rest stays in its
spool for the next run)."""

_T = TypeVar("_T")


@dataclass(frozen=True)
class RunOutcome:
    exit_code: int
    run_dir: Path | None
    status: RunStatus
    failing: list[str]
    reasons: list[str]
    wall_s: float
    verdict: str = "NO VERDICT"
    """PASS, FAIL, INTERRUPTED or NO VERDICT, as every output of the run says it."""


class Gameday:
    def __init__(self, experiment: Experiment, settings: Settings, options: GamedayOptions) -> None:
        self.exp = experiment
        self.settings = settings
        self.opts = options
        self.console = options.console
        self.experiment_id = experiment_id_of(experiment)
        self.executor: Executor | None = None
        self.publisher: Publisher | None = None
        self._loss_sinks: list[EventSink] = []
        """Where the publisher's ``log.loss`` events go besides Kafka: the analysis, the
        run's own log (so live analysis and a replay of either log agree)."""
        self.generators: list[Generator] = []
        self.interrupted: str | None = None
        self.forced: str | None = None
        """Why the run stopped waiting (see :meth:`force`), if it did."""
        self.sut_exit: int | None = None
        self.sut_exit_at_s = 0.0
        self._t0 = time.monotonic()
        self._task: asyncio.Task[RunOutcome] | None = None
        self._stage: Literal["setup", "experiment", "ending"] = "setup"
        self._forced = asyncio.Event()
        self._deadline: asyncio.TimerHandle | None = None
        self._watchdog = options.watchdog or ExitWatchdog()
        self._sut: SampleProcess | None = None
        self._workers: AnalyzerWorkers | None = None
        self._outcome: RunOutcome | None = None

    # -- signals -----------------------------------------------------------------------------

    @property
    def forced_cleanup_s(self) -> float:
        """Once the run stops waiting, the most it takes to end."""
        return self.exp.aftershock.revert_timeout + FORCED_CLEANUP_S

    def interrupt(self, why: str) -> None:
        """First call: abort the experiment in order, within ``interrupt_timeout_s``.
        Second call: :meth:`force`."""
        if self.interrupted is not None:
            self.force(f"{why} again")
            return
        self.interrupted = why
        limit_s = self.opts.interrupt_timeout_s
        self.console.print(
            f"[yellow]{why}: aborting, reverting faults (at most {limit_s:g} s; "
            f"Ctrl-C again to stop waiting) …[/yellow]"
        )
        self._watchdog.arm(
            limit_s + self.forced_cleanup_s,
            f"{why}: the run did not end within {limit_s + self.forced_cleanup_s:g} s",
        )
        self._deadline = asyncio.get_running_loop().call_later(
            limit_s, self.force, f"not ended {limit_s:g} s after {why}"
        )
        # While setting up, the set-up stops at its next step (_set_up); nothing is injected.
        if self._stage != "setup" and self.executor is not None:
            self.executor.abort(why, "signal")
        for g in self.generators:
            g.stop()

    def force(self, why: str) -> None:
        """Stop waiting: faults not yet reverted still are (each within the experiment's
        ``revert_timeout``), the load stops without draining, child processes are killed, the
        analysis ends with the results it has, the partial report is written, and the run
        ends within :attr:`forced_cleanup_s` (past it, the watchdog ends the process)."""
        if self.forced is not None:
            return
        self.forced = why
        if self.interrupted is None:
            self.interrupted = why
        self._forced.set()
        self.console.print(
            f"[yellow]{why}: no longer waiting; killing processes and writing the partial "
            "report …[/yellow]"
        )
        self._watchdog.arm(
            self.forced_cleanup_s,
            f"{why}: clean-up did not finish within {self.forced_cleanup_s:g} s",
        )
        if self._stage != "ending" and self._task is not None:
            self._task.cancel()  # the injector reverts what is live, shielded and time-limited
        for g in self.generators:
            g.stop(drain=False)
        if self._sut is not None:
            self._sut.kill()
        if self._workers is not None:
            self._workers.kill()
        if self.publisher is not None:
            self.publisher.flush_timeout_s = min(self.publisher.flush_timeout_s, FORCED_FLUSH_S)

    def _set_up(self) -> None:
        """Between set-up steps: an interrupt so far ends the run before its experiment (a
        step is not cancelled halfway, which would leave its clients unclosed)."""
        if self.interrupted is not None:
            raise RunSetupError(f"{self.interrupted} before the experiment started")

    async def _unless_forced(self, aw: Awaitable[_T]) -> _T | None:
        """``aw``'s result, or None if the run is forced to stop waiting first."""
        task = asyncio.ensure_future(aw)
        forced = asyncio.ensure_future(self._forced.wait())
        try:
            await asyncio.wait({task, forced}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait([forced, task] if not task.done() else [forced])
        return None if task.cancelled() else task.result()

    def _log_lost(self, report: LossReport) -> None:
        """The broker lost events it had acknowledged (the publisher sends them again)."""
        if report.event is not None:
            for sink in self._loss_sinks:
                sink.emit(report.event)
        colour = "red" if report.unrepaired else "yellow"
        self.console.print(f"[{colour}]{escape(report.describe())}[/{colour}]")

    def _sut_exited(self, status: int) -> None:
        self.sut_exit, self.sut_exit_at_s = status, time.monotonic() - self._t0
        self.console.print(
            f"[red]the system under test exited with status {status} "
            f"{self.sut_exit_at_s:.0f} s into the run[/red]"
        )

    # -- the run -----------------------------------------------------------------------------

    async def run(self) -> RunOutcome:
        self._task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig, name in ((signal.SIGINT, "interrupted (SIGINT)"), (signal.SIGTERM, "SIGTERM")):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.interrupt, name)
        try:
            async with contextlib.AsyncExitStack() as stack:
                outcome = await self._run(stack)
            return self._with_log_losses(outcome)
        except asyncio.CancelledError:
            # Our own cancellation (force() while setting up or experimenting): the run ends
            # with what it has, like any interrupted run.
            if self.interrupted is None or self._task is None:
                raise
            while self._task.uncancel() > 0:
                pass
            if self._outcome is not None:
                return self._with_log_losses(self._outcome)
            raise RunSetupError(f"{self.interrupted} before the experiment started") from None
        finally:
            if self._deadline is not None:
                self._deadline.cancel()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
            if self.opts.watchdog is None:
                self._watchdog.disarm()

    async def _services(self, stack: AsyncExitStack, fanout: Fanout) -> tuple[str, str, str]:
        s = self.settings
        kafka, redis_url = s.kafka_bootstrap, s.redis_url
        if kafka is None or redis_url is None:
            self.console.print("starting the embedded stack …")
            embedded = await stack.enter_async_context(EmbeddedStack(s))
            kafka, redis_url = embedded.kafka_bootstrap, embedded.redis_url
        # Entered before every producer (the proxy, generators), so it closes after they
        # stopped: it flushes and checks the broker before the broker stops.
        self.publisher = await stack.enter_async_context(
            Publisher.configured(kafka, s, on_loss=self._log_lost)
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
        fanout = Fanout()
        kafka, redis_url, api_url = await self._services(stack, fanout)
        self._set_up()
        sample = self.opts.sample
        if sample is None:
            sample = is_sample_experiment(self.exp)
        if sample:
            plan = plan_sample(self.exp, redis_url, "127.0.0.1")
            self.exp = plan.experiment
        ax = self.exp.aftershock

        redis = Redis.from_url(redis_url)
        stack.push_async_callback(redis.aclose)
        # An earlier run's results must not pass for this one's (the workers' drain, the
        # safeguards and `aftershock results` all read them by experiment id).
        await clear_results(redis, self.experiment_id)
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
                topic=self.settings.topic_events,
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
        if self.publisher is not None:
            self.publisher.attribute_to(self.experiment_id, run_id)
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
            self._workers = await stack.enter_async_context(
                # The workers analyse this run: they read the log from now on, not every
                # earlier experiment on the broker.
                AnalyzerWorkers(
                    self.opts.workers,
                    f"aftershock-run-{run_id}",
                    env,
                    run_dir,
                    start_at_ms=time.time_ns() // 1_000_000,
                )
            )
            self._set_up()
        local_log = RunLogWriter(run_dir / EVENTS_DIR)
        assert self.publisher is not None
        publisher = self.publisher
        # The run's log keeps the publisher's batches as they are sealed (compressed once).
        publisher.on_sealed = local_log.write_batch
        stack.callback(self._close_local_log, publisher, local_log)
        fanout.logs.append(publisher)
        planned_s = max([ax.planned_duration_s, *(p.duration_s for p in ax.load)], default=0.0)
        tap = LiveTap(
            title=self.exp.title,
            experiment_id=self.experiment_id,
            run_id=run_id,
            planned_s=planned_s,
            now_s=time.monotonic,
        )
        tap_box.append(tap)
        fanout.add(analysis)
        self._loss_sinks = [analysis]  # the publisher's loss event reaches the log in a batch
        # The run's analysis configuration goes first into its log: replay needs no flags.
        ts_ns, mono_ns = clock.stamp()
        fanout.emit(
            ExperimentAnalysis(
                experiment_id=self.experiment_id,
                run_id=run_id,
                generator_id=executor.opts.generator_id,
                ts_ns=ts_ns,
                mono_ns=mono_ns,
                config=config,
            )
        )

        provider, shutdown_tracing = configure_tracing(
            self.settings,
            "aftershock-run",
            run_dir=run_dir,
            sample_ratio=self.opts.trace_sessions,
            set_global=self.opts.global_tracing,
        )
        stack.callback(shutdown_tracing)
        executor.opts.tracer_provider = provider  # also when not global (continuous rounds)
        await self._create_proxies(stack, ctl)
        self._set_up()
        sut: SampleProcess | None = None
        if sample:
            sut = self._sut = await stack.enter_async_context(
                SampleProcess(
                    plan,
                    bugs=self.opts.bugs,
                    log_path=run_dir / SAMPLE_LOG,
                    spans_path=run_dir / SAMPLE_SPANS
                    if self.settings.otel_exporter != "none"
                    else None,
                    otlp_endpoint=(
                        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or self.settings.otel_endpoint
                    )
                    if self.settings.otel_exporter != "none" and otlp_endpoint(self.settings)
                    else None,
                )
            )
        targets = {t.name: t for t in ax.targets}
        # The injector announces its faults in Redis; the sessions' spans name the ones they
        # ran under and link to them (the same way as generators on other hosts).
        faults = ActiveFaults()
        for profile, tag in zip(ax.load, session_tags(ax.load), strict=True):
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
                        session_tag=tag,
                        trace_every=self.opts.trace_every,
                    ),
                    tracer_provider=provider,
                    faults=faults,
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
        self._set_up()
        self._stage = "experiment"
        try:
            async with asyncio.TaskGroup() as tg:
                helpers = [
                    tg.create_task(analysis.run()),
                    tg.create_task(dashboard.run()),
                    tg.create_task(self._publish_live(redis, tap)),
                    tg.create_task(follow(redis, self.experiment_id, faults)),
                ]
                if sut is not None:
                    helpers.append(tg.create_task(sut.watch(self._sut_exited)))
                loads = [tg.create_task(g.run()) for g in self.generators]
                try:
                    journal = await executor.run()
                    self._stage = "ending"
                    if journal.status == "aborted":
                        for g in self.generators:
                            g.stop()
                    await self._unless_forced(asyncio.gather(*loads))
                finally:
                    self._stage = "ending"
                    # Never a single cancel() and a wait: one can be lost (see
                    # cancel_and_wait), and the task group would wait for that task forever.
                    await cancel_and_wait([*helpers, *loads])
            if journal.status == "aborted":
                status, note = "aborted", journal.aftershock.abort_reason or ""
            elif journal.status == "failed":
                status = "failed"
                note = failure_reason(journal.aftershock.error, journal.deviated)
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
            results = await self._unless_forced(analysis.drain(drain_s))
            if results is None:  # stopped waiting: what the analysis has so far
                results = analysis.results_so_far()
                cut = "the run stopped waiting for its analysis"
                note = f"{note}; {cut} ({self.forced})" if note else f"{cut} ({self.forced})"
            elif isinstance(analysis, WorkerAnalysis) and not analysis.drained:
                late = f"the analyzer workers had not caught up after {drain_s:g} s"
                note = f"{note}; {late}" if note else late
            tap.update_results(results)
            meta = RunMeta(
                experiment_id=self.experiment_id,
                run_id=run_id,
                title=self.exp.title,
                started_ns=_origin(results) or started_ns,
                ended_ns=time.time_ns(),
                status=status,
                note=note,
            )
            write_meta(run_dir, meta)
            data = RunData.of(meta, results)
            write_reports(run_dir, data)
            self._outcome = self._outcome_of(data, run_dir, time.monotonic() - t_wall)
            dashboard.show_final(tap.snapshot())
        assert self._outcome is not None
        return self._outcome

    @staticmethod
    def _close_local_log(publisher: Publisher, local_log: RunLogWriter) -> None:
        """What the run emitted is sealed into its log, which then closes (the publisher
        itself closes later, after its last check of the broker)."""
        publisher.seal()
        publisher.on_sealed = None
        local_log.close()

    def _with_log_losses(self, outcome: RunOutcome) -> RunOutcome:
        """Events the broker lost for good (checked when the publisher closed) fail the run."""
        lost = self.publisher.statistics().unrepaired if self.publisher is not None else 0
        if not lost:
            return outcome
        reason = log_lost_reason(lost)
        self.console.print(f"[red]{reason}[/red]")
        if reason in outcome.reasons:  # the analysis folded the publisher's log.loss events
            return replace(outcome, exit_code=max(outcome.exit_code, 1))
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

    def _outcome_of(self, data: RunData, run_dir: Path, wall_s: float) -> RunOutcome:
        f = Findings(data.records())
        reasons = list(f.verdict.reasons) if f.verdict is not None else []
        if f.verdict is None:
            reasons.append("no verdict: no client events were analysed")
        return RunOutcome(
            f.exit_code, run_dir, data.meta.status, f.failing_checks(), reasons, wall_s, f.state
        )


def session_tags(load: Sequence[LoadProfile]) -> list[str]:
    """Per load profile, what its session names end with: ``-p<n>`` (its place in the list,
    from 1) for a profile whose target an earlier profile loads too, else nothing. Sessions
    of one run are then never named alike on one target, whatever tenant names the profiles
    reuse."""
    seen: set[str] = set()
    tags = []
    for n, profile in enumerate(load, start=1):
        tags.append(f"-p{n}" if profile.target in seen else "")
        seen.add(profile.target)
    return tags


def _origin(results: list[ResultEvent]) -> int | None:
    """The run's time zero as the analyzers saw it (``result.series``)."""
    for r in results:
        if isinstance(r, TimeSeries) and r.origin_ns:
            return r.origin_ns
    return None


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
