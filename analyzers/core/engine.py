"""The analyzer: one experiment's events in, every result record out.

:class:`Analyzer` de-duplicates and re-orders what it is fed (:mod:`.ordering`), then folds each
event, in event-time order, into the trackers of this package. :meth:`Analyzer.results` turns
their state into ``schemas.results`` records without changing it; feeding the same events in
any order whose lag stays within the allowed lateness gives the same records.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from analyzers.core.cascade import Blast, DependencyGraph, hops_for
from analyzers.core.clock import Clock, SystemClock
from analyzers.core.config import AnalyzerConfig
from analyzers.core.events import (
    FORMS,
    Connected,
    Disconnect,
    Receive,
    Send,
    SessionError,
    Subscribed,
    analysis_form,
)
from analyzers.core.faults import FaultWindow, FaultWindows
from analyzers.core.health import Episode, Health, HealthKey
from analyzers.core.integrity import Counts, Dims, IntegrityTracker, SessionKey
from analyzers.core.isolation import IsolationTracker
from analyzers.core.load import QUANTILES, LoadAcc, LoadTracker
from analyzers.core.ordering import ReorderBuffer, TimeBase
from analyzers.core.patterns import PatternTracker
from analyzers.core.recovery import RecoveryTracker, nearest_rank
from analyzers.core.series import SeriesFold
from analyzers.core.snapshot import origin_of, series_results
from analyzers.core.verdict import PhaseFigures, RunRecord, judge, run_verdict
from schemas.events import (
    ExperimentAborted,
    ExperimentAnalysis,
    ExperimentEnded,
    ExperimentPhase,
    ExperimentStarted,
    HypothesisProbeRan,
    LogLoss,
    ProxyDeleted,
    ProxyDisabled,
    ProxyEnabled,
    ToxicAdded,
    ToxicRemoved,
    ToxicUpdated,
)
from schemas.results import (
    Availability,
    Cascade,
    CascadeHop,
    ErrorBurst,
    FailureEpisode,
    FaultFingerprint,
    Integrity,
    IsolationGroup,
    IsolationViolation,
    LatencySummary,
    LoadSummary,
    ResultBase,
    ResultEvent,
    SloCheck,
    UserRecovery,
    Verdict,
)
from spine.sketch import LogHistogram, add_to_each

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from analyzers.core.events import Fed
    from schemas.results import Relation, Scope

ANALYZER_ID = "analyzer"
_OVERALL = ("overall", "")
_UP = Health.UP
_FAULT_KINDS = (ToxicAdded, ToxicUpdated, ToxicRemoved, ProxyDisabled, ProxyEnabled, ProxyDeleted)
_NORMAL_CLOSE = {None, 1000, 1001}
SessionFolded = Send | Receive | Connected | SessionError | Disconnect
"""The session kinds that count for load, health and integrity."""
_SESSION_FOLDED = frozenset((Send, Receive, Connected, SessionError, Disconnect))


_PairState = tuple[Dims, list[LoadAcc], list[LogHistogram], list[Counts] | None]
"""Per (target, tenant): its dims, the current phase's accumulators and latency sketches, its
integrity counters."""


@dataclass(frozen=True)
class AnalyzerStats:
    accepted: int
    duplicates: int
    late: int
    too_late: int
    released: int
    buffered: int
    foreign: int
    remembered_ids: int
    pending_replies: int
    reanchored: int
    watermark_ns: int | None


def failure_class(ev: Fed) -> str | bool | None:
    """A session event's health meaning: an error class, None for success, False if neutral."""
    if isinstance(ev, SessionError):
        return ev.error_class
    if isinstance(ev, Receive):
        # A 5xx response comes with its own session.error; counting both would double it.
        return False if ev.status is not None and ev.status >= 500 else None
    if isinstance(ev, Connected):
        return None
    if isinstance(ev, Disconnect):
        if ev.by == "error":
            return f"disconnect_{ev.code}" if ev.code is not None else "disconnect_error"
        if ev.by == "server" and ev.code not in _NORMAL_CLOSE:
            return f"disconnect_{ev.code}"
    return False


class Analyzer:
    """All analyses of one experiment. Not thread-safe; one owner feeds it."""

    def __init__(
        self,
        experiment_id: str,
        config: AnalyzerConfig | None = None,
        clock: Clock | None = None,
        *,
        config_from_log: bool = True,
    ) -> None:
        cfg = config or AnalyzerConfig()
        self.experiment_id = experiment_id
        self.config = cfg
        self.config_from_log = config_from_log
        """Adopt the configuration a run recorded in its log (``experiment.analysis``); off
        when a configuration was chosen explicitly (e.g. to judge a run again differently)."""
        self.clock: Clock = clock or SystemClock()
        self._timebase = TimeBase(cfg.clock_offsets_ns, int(cfg.max_clock_step_s * 1e9))
        self._buffer = ReorderBuffer(
            lateness_ns=int(cfg.allowed_lateness_s * 1e9),
            horizon_ns=int(cfg.dedup_horizon_s * 1e9),
            source_idle_ns=int(cfg.source_idle_s * 1e9),
        )
        self.faults = FaultWindows()
        self._health: dict[tuple[str, str], HealthKey] = {}
        self._health_by_pair: dict[tuple[str, str], tuple[HealthKey, HealthKey, HealthKey]] = {}
        self._dims: dict[tuple[str, str], Dims] = {}
        self._of_pair: dict[tuple[str, str], _PairState] = {}
        """Per (target, tenant): its dims, the current phase's accumulators of them and their
        latency sketches (a cache, not in snapshots)."""
        self.load = LoadTracker()
        self.recovery = RecoveryTracker()
        self._folds(cfg)
        self._blast: dict[str, Blast] = {}
        self.series = SeriesFold(cfg.series_bucket_s)
        self.record = RunRecord()
        self._scope_cache: dict[str, set[str] | None] = {}
        self.run_id: str | None = None
        self.first_ns: int | None = None
        self.last_ns = 0
        self.started_ns: int | None = None
        self.ended_ns: int | None = None
        self.finished = False
        self._foreign = 0
        self._last_ingest_ns = self.clock.now_ns()

    def _folds(self, cfg: AnalyzerConfig) -> None:
        """The folds whose behaviour the configuration sets, empty."""
        self.graph = DependencyGraph(cfg.graph)
        self.integrity = IntegrityTracker(int(cfg.reply_timeout_s * 1e9), cfg.reorder_window)
        self.isolation = IsolationTracker(
            int(2 * cfg.reply_timeout_s * 1e9), cfg.violation_examples
        )
        self.patterns = PatternTracker(int(cfg.burst_gap_s * 1e9), cfg.burst_min_errors)

    def _configure(self, logged: AnalyzerConfig) -> None:
        """The run's own configuration, from its log. It is written before any load starts;
        should session events have been folded already, their folds keep their thresholds
        and only what the results are judged by (SLOs, graph, phases, windows) changes."""
        if not self.config_from_log:
            return
        cfg = self.config.with_analysis_of(logged)
        if cfg == self.config:
            return
        learnt = self.graph.edges()
        self.config = cfg
        if not self._health and not self.integrity.counts and not self.recovery.by_dim:
            self._folds(cfg)
        else:
            self.graph = DependencyGraph(cfg.graph)
        for caller, callee in learnt:
            self.graph.add_edge(caller, callee)
        self._scope_cache.clear()

    # --- feeding ------------------------------------------------------------------------

    def ingest(self, events: Iterable[Fed], source: str = "") -> None:
        """Accept events in arrival order; applies those the watermark has passed.

        ``source`` names where they came from (e.g. a Kafka partition), see
        :mod:`analyzers.core.ordering`. Session events may come as pydantic models or already
        in their analysis form (:mod:`analyzers.core.events`); both fold the same.
        """
        buffer = self._buffer
        timebase = self._timebase
        exp = self.experiment_id
        now = self.clock.now_ns()
        kept: list[Fed] = []
        keep = kept.append
        for ev in events:
            if type(ev) in FORMS:  # already in its analysis form: no result, no conversion
                if ev.experiment_id != exp:
                    self._foreign += 1
                    continue
                keep(ev)
            elif ev.experiment_id != exp or isinstance(ev, ResultBase):
                self._foreign += 1
            else:
                keep(analysis_form(ev))
        # an event the watermark overtook first releases up to it (see ReorderBuffer.overtaken)
        release = self._release_upto
        buffer.push_many(timebase.times_of(kept), kept, source, now, self._apply, release)
        self._release(buffer.pop_ready(buffer.watermark_at(now)))
        self._last_ingest_ns = now

    def expect_sources(self, sources: Iterable[str]) -> None:
        """Sources (partitions) that may deliver; the watermark waits for each of them until
        it delivers or has been silent for ``source_idle_s``."""
        now = self.clock.now_ns()
        for s in sources:
            self._buffer.expect(s, now)

    def close_source(self, source: str) -> None:
        """``source`` is exhausted (end of a partition in replay); release what it held."""
        self._buffer.close_source(source)
        self._release(self._buffer.pop_ready(self._buffer.watermark_at(self.clock.now_ns())))

    def tick(self) -> None:
        """Release what idle sources no longer hold back; everything once no event arrived
        for ``idle_flush_s``."""
        now = self.clock.now_ns()
        if not len(self._buffer):
            return
        if now - self._last_ingest_ns >= self.config.idle_flush_s * 1e9:
            self._release(self._buffer.drain())
        else:
            self._release(self._buffer.pop_ready(self._buffer.watermark_at(now)))

    def finish(self) -> None:
        """End of stream: apply everything buffered and settle open recoveries."""
        self._release(self._buffer.drain())
        for hk in self._health.values():
            hk.finish()
        self.patterns.advance(self.last_ns + int(self.config.burst_gap_s * 1e9) + 1)
        self.finished = True

    def _release_upto(self, watermark: int) -> None:
        self._release(self._buffer.pop_ready(watermark))

    def _release(self, items: list[tuple[int, str, Fed]]) -> None:
        apply = self._apply
        session: Callable[[int, Any], None] = self._session  # takes SessionFolded
        folded = _SESSION_FOLDED
        started = self.first_ns is not None
        for t, _, ev in items:
            if started and type(ev) in folded:
                session(t, ev)  # what _apply does for a session event, without its dispatch
            else:
                apply(t, ev)  # (sets first_ns)
                started = True
        if items:
            last = items[-1][0]  # items come in time order: the latest is last
            if last > self.last_ns:
                self.last_ns = last
            self._advance(last)
        wm = self._buffer.watermark_ns
        if wm is not None:
            self._advance(wm)

    def _expire(self, t: int) -> None:
        """Sends whose reply deadline passed before ``t`` are lost: observed as failures at
        their deadline (unless the client had reported them failed already)."""
        integrity = self.integrity
        if not integrity.due(t - 1):
            return
        for lost in integrity.expire(t - 1):
            if lost.reported:
                continue
            target = tenant = ""
            for scope, key in lost.dims:
                if scope == "target":
                    target = key
                elif scope == "tenant":
                    tenant = key
            self._observe(lost.t, target, tenant, lost.session, "lost_reply")

    def _advance(self, t: int) -> None:
        self._expire(t)
        for hk in self._health.values():
            hk.advance(t)
        self.patterns.advance(t)

    # --- folding ------------------------------------------------------------------------

    def _apply(self, t: int, ev: Fed) -> None:
        if self.first_ns is None:
            self.first_ns = t
            self.run_id = ev.run_id
        if t > self.last_ns:
            self.last_ns = t
        if isinstance(ev, SessionFolded):
            self._session(t, ev)
        elif isinstance(ev, Subscribed):
            self.isolation.subscribed(ev)
        elif isinstance(ev, _FAULT_KINDS):
            self._expire(t)
            self.faults.apply(t, ev)
            self._scope_cache.clear()
        elif isinstance(ev, ExperimentAnalysis):
            self._configure(ev.config)
        elif isinstance(ev, ExperimentPhase):
            self.load.begin(t, ev.phase)
            self._of_pair.clear()  # the new phase's accumulators
        elif isinstance(ev, ExperimentStarted):
            self.started_ns = t
        elif isinstance(ev, ExperimentEnded):
            self.ended_ns = t
            self.record.apply(t, ev)
        elif isinstance(ev, HypothesisProbeRan | ExperimentAborted | LogLoss):
            self.record.apply(t, ev)

    def _session(self, t: int, ev: SessionFolded) -> None:
        integrity = self.integrity
        if t > integrity.next_due_ns:  # integrity.due(t - 1), without the call
            self._expire(t)
        target, tenant = ev.target, ev.tenant
        pair = (target, tenant)
        of_pair = self._of_pair.get(pair)
        if of_pair is None:
            of_pair = self._pair_state(pair)
        dims, accs, latencies, icounts = of_pair
        fw = self.faults
        span = fw._active_span  # FaultWindows.active_at's cached answer, looked up inline
        faults = span[2] if span is not None and span[0] <= t < span[1] else fw.active_at(t)
        if faults:
            with_faults = (*dims, *[("fault", f) for f in faults])
            icounts = None  # looked up by the integrity tracker
        else:
            with_faults = dims
        series = self.series
        last = series._last  # SeriesFold's current bucket, looked up inline
        kind = type(ev)
        if kind is Send:
            for acc in accs:
                acc.sent += 1
            if last is not None and last[0] == t // series._bucket_ns:
                last[1].sent += 1
            else:
                series.sent(t)
            if icounts is None and not faults:
                icounts = self._pair_counts(pair)
            integrity.send(t, ev, with_faults, icounts)  # type: ignore[arg-type]  # kind is Send
            if ev.trace_id is not None:  # isolation remembers traced sends only
                self.isolation.send(t, ev)  # type: ignore[arg-type]
            return
        cls: str | bool | None
        if kind is Receive:
            status = ev.status  # type: ignore[union-attr]  # kind is Receive
            # failure_class(ev), inlined for the commonest kind
            cls = False if status is not None and status >= 500 else None
            if last is not None and last[0] == t // series._bucket_ns:
                bucket = last[1]  # series.received(t), inlined: never a failure of its own
                bucket.received += 1
            else:
                bucket = series.received(t)
            for acc in accs:
                acc.received += 1
            lat = ev.latency_ms  # type: ignore[union-attr]
            # The schema admits an infinite latency (JSON 1e999); it measures nothing.
            if lat is not None and lat != math.inf:
                latencies[-1] = bucket.latency  # the last place is the series bucket's
                add_to_each(latencies, lat)
            if icounts is None and not faults:
                icounts = self._pair_counts(pair)
            integrity.receive(ev, with_faults, icounts)  # type: ignore[arg-type]
            if ev.origin_tenant is not None and ev.checksum_ok is not False:  # type: ignore[union-attr]
                self.isolation.receive(t, ev, faults, self._faults_after)  # type: ignore[arg-type]
        else:
            cls = failure_class(ev)
            series.observe(t, ev, cls)  # type: ignore[arg-type]  # not a send
            if kind is Connected:
                for acc in accs:
                    acc.connects += 1
        if isinstance(cls, str):
            for acc in accs:
                acc.errors[cls] = acc.errors.get(cls, 0) + 1
            if kind is SessionError:
                integrity.failed(ev)  # type: ignore[arg-type]
                self.patterns.error(t, target, cls, self.faults.active_windows_at(t), faults)
        if cls is None:  # a success: _observe's first steps, inlined for the commonest case
            hks = self._health_by_pair.get(pair) or self._health_of(target, tenant)
            for hk in hks:
                if hk.state is _UP:  # a success cannot open or close an episode
                    hk.observe_ok(t)
                    continue
                opened = hk.observe(t, None, fw.active_at)
                if opened is not None:
                    opened.faults_after = self._faults_after(opened.started_ns)
            recovery = self.recovery
            if recovery.any_failing:
                recovery.succeeded(t, (ev.run_id, ev.generator_id, target, ev.session))
        elif cls is not False:
            self._observe(
                t,
                target,
                tenant,
                (ev.run_id, ev.generator_id, target, ev.session),
                cls if isinstance(cls, str) else None,
            )

    def _pair_state(self, pair: tuple[str, str]) -> _PairState:
        """The dims of (target, tenant), the current phase's accumulators of them and their
        latency sketches (with a last place for the series bucket's), made on first use in
        the phase; their integrity counters once a send or receive made them."""
        dims = self._dims.get(pair)
        if dims is None:
            self._dims[pair] = dims = (_OVERALL, ("target", pair[0]), ("tenant", pair[1]))
        accs = self.load.accs_for(dims, pair)
        sketches = [acc.latency for acc in accs]
        sketches.append(sketches[-1])  # replaced by the series bucket's before each use
        of_pair = self._of_pair[pair] = (dims, accs, sketches, None)
        return of_pair

    def _pair_counts(self, pair: tuple[str, str]) -> list[Counts]:
        """The integrity counters of a pair's dims (no fault), kept in its state."""
        dims, accs, sketches, _ = self._of_pair[pair]
        counts = self.integrity.counts_for(dims)
        self._of_pair[pair] = (dims, accs, sketches, counts)
        return counts

    def _health_of(self, target: str, tenant: str) -> tuple[HealthKey, HealthKey, HealthKey]:
        """The health keys an observation of (target, tenant) folds into, made on first use
        in this order (the order :meth:`health_keys` holds them in)."""
        hks = self._health_by_pair.get((target, tenant))
        if hks is not None:
            return hks
        th = self.config.health
        health = self._health
        made = []
        for key in (("target", target), ("tenant", tenant), _OVERALL):
            hk = health.get(key)
            if hk is None:
                health[key] = hk = HealthKey(key[0], key[1], th)
            made.append(hk)
        hks = self._health_by_pair[(target, tenant)] = (made[0], made[1], made[2])
        return hks

    def _observe(
        self, t: int, target: str, tenant: str, session: SessionKey, cls: str | None
    ) -> None:
        faults_at = self.faults.active_at
        hks = self._health_by_pair.get((target, tenant)) or self._health_of(target, tenant)
        for hk in hks:
            opened = hk.observe(t, cls, faults_at)
            if opened is not None:
                opened.faults_after = self._faults_after(opened.started_ns)
        recovery = self.recovery
        if cls is None:
            recovery.succeeded(t, session)
            return
        if not recovery.failing(session):
            faults_then = (*faults_at(t), *self._faults_after(t))
            recovery.failed(
                t,
                session,
                (
                    ("target", target),
                    ("tenant", tenant),
                    _OVERALL,
                    *[("fault", f) for f in faults_then],
                ),
            )
        target_key = hks[0]
        faults = set(faults_at(t))
        if target_key.current is not None:
            faults.update(target_key.current.faults)
        for f in faults:
            scope_targets = self._fault_scope(f)
            if scope_targets is not None and target not in scope_targets:
                continue
            blast = self._blast.get(f)
            if blast is None:
                self._blast[f] = blast = Blast()
            blast.targets.add(target)
            blast.tenants.add(tenant)
            blast.sessions.add(session)

    def _faults_after(self, t: int) -> list[str]:
        return self.faults.after_effect_at(t, int(self.config.after_effect_s * 1e9))

    def _fault_scope(self, fault_id: str) -> set[str] | None:
        if fault_id in self._scope_cache:
            return self._scope_cache[fault_id]
        scope: set[str] | None = None
        windows = self.faults.by_id(fault_id)
        if windows and self.graph.known:
            origin = self.graph.origin_of(windows[0].proxy)
            scope = self.graph.dependents_closure(origin) | {origin}
        self._scope_cache[fault_id] = scope
        return scope

    def add_dependency(self, caller: str, callee: str) -> None:
        """A caller → callee edge learnt from traces."""
        if self.graph.add_edge(caller, callee):
            self._scope_cache.clear()

    # --- state ----------------------------------------------------------------------------

    def stats(self) -> AnalyzerStats:
        b = self._buffer
        return AnalyzerStats(
            accepted=b.stats.accepted,
            duplicates=b.stats.duplicates,
            late=b.stats.late,
            too_late=b.stats.too_late,
            released=b.stats.released,
            buffered=len(b),
            foreign=self._foreign,
            remembered_ids=b.remembered_ids,
            pending_replies=self.integrity.pending,
            reanchored=self._timebase.reanchored,
            watermark_ns=b.watermark_ns,
        )

    def snapshot(self) -> bytes:
        """The whole state, for a changelog; restore with :meth:`restore`."""
        return zlib.compress(pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL), 1)

    @classmethod
    def restore(cls, data: bytes, clock: Clock | None = None) -> Analyzer:
        obj = pickle.loads(zlib.decompress(data))
        if not isinstance(obj, cls):
            raise TypeError(f"snapshot holds {type(obj).__name__}, not an Analyzer")
        obj.clock = clock or SystemClock()
        obj.__dict__.setdefault("_health_by_pair", {})  # a cache older snapshots lack
        obj._of_pair = {}  # older snapshots hold it, in an older form
        obj._last_ingest_ns = obj.clock.now_ns()
        obj._buffer.touch_sources(obj._last_ingest_ns)
        return obj

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["clock"] = None
        state["_of_pair"] = {}  # rebuilt on use from the load tracker's accumulators
        return state

    # --- results --------------------------------------------------------------------------

    def results(self) -> list[ResultEvent]:
        """Every result record for the state so far, in a stable order."""
        return _Report(self).build()

    def episodes(self, scope: str = "target") -> list[Episode]:
        return [
            ep for (s, _), hk in sorted(self._health.items()) if s == scope for ep in hk.episodes
        ]

    def health_keys(self) -> dict[tuple[str, str], HealthKey]:
        return self._health


class _Report:
    """Builds result records from an analyzer's state (read only)."""

    def __init__(self, a: Analyzer) -> None:
        self.a = a
        self.end_ns = max(a.last_ns, a.ended_ns or 0)
        self.first_ns = a.first_ns if a.first_ns is not None else 0
        self.common: dict[str, Any] = {
            "experiment_id": a.experiment_id,
            "run_id": a.run_id or "-",
            "generator_id": ANALYZER_ID,
            "ts_ns": max(self.end_ns, 0),
        }
        self._whole: dict[tuple[str, str], LoadAcc] | None = None

    def whole_run(self) -> dict[tuple[str, str], LoadAcc]:
        """Whole-run accumulators, merged once per report (each verdict asks for them)."""
        if self._whole is None:
            self._whole = self.a.load.whole_run()
        return self._whole

    def _ids(self, *parts: object) -> dict[str, Any]:
        digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=16).hexdigest()
        return {**self.common, "event_id": digest}

    def build(self) -> list[ResultEvent]:
        out: list[ResultEvent] = []
        out += self.episodes()
        out += self.availability()
        out += self.recoveries()
        out += self.violations()
        out += self.integrity()
        latency, load = self.load()
        out += latency
        out += load
        out += self.cascades()
        out += self.patterns()
        out += series_results(self.a, self._ids("series"), self._ids("live"))
        out += self.verdicts()
        return out

    def episodes(self) -> list[ResultEvent]:
        out: list[ResultEvent] = []
        faults = self.a.faults
        for (scope, key), hk in sorted(self.a.health_keys().items()):
            for ep in hk.episodes:
                tti = ttr = None
                relation: Relation | None = None
                w = _measured_against(faults, ep.started_ns, ep.faults_after)
                if w is not None:
                    start, end = w.effective_start_ns, w.effective_end_ns
                    relation = "after" if end is not None and ep.started_ns >= end else "during"
                    tti = (ep.started_ns - start) / 1e6
                    # Recovering before the revert is not recovery from the revert.
                    if ep.ended_ns is not None and end is not None and ep.ended_ns >= end:
                        ttr = (ep.ended_ns - end) / 1e6
                out.append(
                    FailureEpisode(
                        **self._ids("episode", ep.episode_id),
                        scope=_scope(scope),
                        scope_key=key,
                        episode_id=ep.episode_id,
                        started_ns=ep.started_ns,
                        ended_ns=ep.ended_ns,
                        duration_ms=None
                        if ep.ended_ns is None
                        else (ep.ended_ns - ep.started_ns) / 1e6,
                        faults_active=list(ep.faults_active),
                        faults_after=list(ep.faults_after),
                        fault_relation=relation,
                        error_classes=dict(sorted(ep.error_classes.items())),
                        time_to_impact_ms=tti,
                        time_to_recover_ms=ttr,
                    )
                )
        return out

    def availability(self) -> list[ResultEvent]:
        out: list[ResultEvent] = []
        for (scope, key), hk in sorted(self.a.health_keys().items()):
            f = hk.figures()
            out.append(
                Availability(
                    **self._ids("availability", scope, key),
                    scope=_scope(scope),
                    scope_key=key,
                    window_start_ns=hk.first_ns,
                    window_end_ns=hk.last_ns,
                    availability_pct=f.availability_pct,
                    episodes=f.episodes,
                    mtbf_s=f.mtbf_s,
                    mttr_s=f.mttr_s,
                    episode_median_s=f.episode_median_s,
                    episode_max_s=f.episode_max_s,
                    observed_s=f.observed_s,
                    downtime_s=f.downtime_s,
                )
            )
        return out

    def recoveries(self) -> list[ResultEvent]:
        tracker = self.a.recovery
        open_ = tracker.unrecovered()
        out: list[ResultEvent] = []
        for scope, key in sorted({*tracker.by_dim, *open_}):
            r = tracker.by_dim.get((scope, key))
            durations = sorted(r.durations_ns) if r is not None else []
            out.append(
                UserRecovery(
                    **self._ids("recovery", scope, key),
                    scope=_scope(scope),
                    scope_key=key,
                    recoveries=len(durations),
                    unrecovered=open_.get((scope, key), 0),
                    mean_ms=sum(durations) / len(durations) / 1e6 if durations else None,
                    p50_ms=nearest_rank(durations, 0.5) / 1e6 if durations else None,
                    p95_ms=nearest_rank(durations, 0.95) / 1e6 if durations else None,
                    max_ms=durations[-1] / 1e6 if durations else None,
                )
            )
        return out

    def _recovery_p95_s(
        self, dim: tuple[str, str], intervals: list[tuple[int, int]] | None
    ) -> float | None:
        r = self.a.recovery.by_dim.get(dim)
        if r is None:
            return None
        durations = sorted(
            d
            for b, d in zip(r.began_ns, r.durations_ns, strict=True)
            if intervals is None or any(s <= b < e for s, e in intervals)
        )
        return nearest_rank(durations, 0.95) / 1e9 if durations else None

    def violations(self) -> list[ResultEvent]:
        """One ``result.isolation_group`` per group of violations (exact counts) and the first
        ``violation_examples`` violations of each group as ``result.isolation_violation``."""
        faults = self.a.faults
        cap = self.a.config.violation_examples
        out: list[ResultEvent] = []
        for key, g in sorted(self.a.isolation.groups.items()):
            kept, like = g.examples[:cap], g.like
            out.append(
                IsolationGroup(
                    **self._ids("violation-group", key),
                    scope="tenant",
                    scope_key=like.victim_tenant,
                    group_id=key,
                    violation=like.violation,
                    target=like.target,
                    origin_tenant=like.origin_tenant,
                    victim_tenant=like.victim_tenant,
                    faults_active=list(like.faults_active),
                    faults_after=list(like.faults_after),
                    count=g.count,
                    first_ns=g.first_ns,
                    last_ns=g.last_ns,
                    example_trace_ids=g.traces[:cap],
                    example_sessions=g.sessions[:cap],
                    examples_kept=len(kept),
                )
            )
            out += [
                IsolationViolation(
                    **self._ids("violation", v.source_event_id),
                    scope="tenant",
                    scope_key=v.victim_tenant,
                    violation=v.violation,
                    target=v.target,
                    victim_tenant=v.victim_tenant,
                    victim_user=v.victim_user,
                    victim_session=v.victim_session,
                    victim_trace_id=v.victim_trace_id,
                    origin_tenant=v.origin_tenant,
                    origin_user=v.origin_user,
                    origin_session=v.origin_session,
                    origin_trace_id=v.origin_trace_id,
                    origin_seq=v.origin_seq,
                    seen_ns=v.t,
                    faults_active=v.faults_active,
                    faults_after=v.faults_after,
                    fault_relation=_relation(_measured_against(faults, v.t, v.faults_after), v.t),
                    channel=v.channel,
                    source_event_id=v.source_event_id,
                )
                for v in kept
            ]
        return out

    def integrity(self) -> list[ResultEvent]:
        out: list[ResultEvent] = []
        for (scope, key), c in sorted(self.a.integrity.counts.items()):
            out.append(
                Integrity(
                    **self._ids("integrity", scope, key),
                    scope=_scope(scope),
                    scope_key=key,
                    sent=c.sent,
                    received=c.received,
                    lost=c.lost,
                    duplicated=c.duplicated,
                    reordered=c.reordered,
                    corrupted=c.corrupted,
                    late_replies=c.late_replies,
                )
            )
        return out

    def load(self) -> tuple[list[ResultEvent], list[ResultEvent]]:
        a = self.a
        spans = a.load.phases.spans(self.first_ns, self.end_ns)
        base_name = a.config.baseline_phase
        base = {(s, k): acc for (s, k, p), acc in a.load.accs.items() if p == base_name}
        rows: list[tuple[str, str, str, LoadAcc, int]] = [
            (s, k, p, acc, spans.get(p, 0)) for (s, k, p), acc in a.load.accs.items() if p
        ]
        rows += [
            (s, k, "", acc, self.end_ns - self.first_ns) for (s, k), acc in self.whole_run().items()
        ]
        rows.sort(key=lambda r: (r[0], r[1], r[2]))
        latency: list[ResultEvent] = []
        load: list[ResultEvent] = []
        for scope, key, phase, acc, dur_ns in rows:
            p50, p95, p99, p999 = acc.latency.quantiles(QUANTILES)
            latency.append(
                LatencySummary(
                    **self._ids("latency", scope, key, phase),
                    scope=_scope(scope),
                    scope_key=key,
                    phase=phase,
                    count=acc.latency.count,
                    p50_ms=p50,
                    p95_ms=p95,
                    p99_ms=p99,
                    p999_ms=p999,
                    max_ms=acc.latency.max if acc.latency.count else None,
                )
            )
            dur_s = dur_ns / 1e9
            tp = acc.received / dur_s if dur_s > 0 else 0.0
            p99_deg = tp_deg = err_delta = None
            b = base.get((scope, key))
            if phase and phase != base_name and b is not None:
                b_dur = spans.get(base_name, 0) / 1e9
                b_tp = b.received / b_dur if b_dur > 0 else 0.0
                b_p99 = b.latency.quantile(0.99)
                if b_p99 and p99 is not None:
                    p99_deg = 100.0 * (p99 - b_p99) / b_p99
                if b_tp > 0:
                    tp_deg = 100.0 * (b_tp - tp) / b_tp
                err_delta = acc.error_ratio - b.error_ratio
            errors = acc.error_count
            load.append(
                LoadSummary(
                    **self._ids("load", scope, key, phase),
                    scope=_scope(scope),
                    scope_key=key,
                    phase=phase,
                    duration_s=dur_s,
                    sent=acc.sent,
                    received=acc.received,
                    connects=acc.connects,
                    throughput_per_s=tp,
                    connect_rate_per_s=acc.connects / dur_s if dur_s > 0 else 0.0,
                    errors=dict(sorted(acc.errors.items())),
                    error_rate_per_s=errors / dur_s if dur_s > 0 else 0.0,
                    error_ratio=acc.error_ratio,
                    p99_degradation_pct=p99_deg,
                    throughput_degradation_pct=tp_deg,
                    error_ratio_delta=err_delta,
                )
            )
        return latency, load

    def cascades(self) -> list[ResultEvent]:
        a = self.a
        out: list[ResultEvent] = []
        target_eps = a.episodes("target")
        seen: set[str] = set()
        for w in a.faults.windows:
            if w.fault_id in seen:
                continue
            seen.add(w.fault_id)
            origin = a.graph.origin_of(w.proxy)
            start, end = w.effective_start_ns, w.effective_end_ns
            hops = hops_for(w.fault_id, start, end, origin, a.graph, target_eps)
            blast = a._blast.get(w.fault_id, Blast())
            failed = {h.target for h in hops}
            out.append(
                Cascade(
                    **self._ids("cascade", w.fault_id),
                    scope="fault",
                    scope_key=w.fault_id,
                    window_start_ns=start,
                    window_end_ns=end,
                    fault_id=w.fault_id,
                    origin_target=origin,
                    hops=[
                        CascadeHop(
                            target=h.target,
                            failed_after_ms=h.failed_after_ns / 1e6,
                            via=h.via,
                            hop_delay_ms=None if h.hop_delay_ns is None else h.hop_delay_ns / 1e6,
                            relation=h.relation,
                        )
                        for h in hops
                    ],
                    blast_targets=len(failed | blast.targets),
                    blast_tenants=len(blast.tenants),
                    blast_sessions=len(blast.sessions),
                    contained=not (failed - {origin}),
                )
            )
        return out

    def patterns(self) -> list[ResultEvent]:
        out: list[ResultEvent] = []
        for b in self.a.patterns.all_bursts():
            out.append(
                ErrorBurst(
                    **self._ids("burst", b.target, b.index),
                    scope="target",
                    scope_key=b.target,
                    burst_id=f"{b.target}:{b.index}",
                    target=b.target,
                    started_ns=b.started_ns,
                    ended_ns=b.ended_ns,
                    errors=b.errors,
                    error_classes=dict(sorted(b.error_classes.items())),
                    faults_active=list(b.faults_active),
                )
            )
        for ftype, fp in sorted(self.a.patterns.fingerprints.items()):
            out.append(
                FaultFingerprint(
                    **self._ids("fingerprint", ftype),
                    fault_type=ftype,
                    faults=list(fp.faults),
                    errors=fp.errors,
                    error_classes=dict(sorted(fp.error_classes.items())),
                )
            )
        return out

    def verdicts(self) -> list[ResultEvent]:
        a = self.a
        names = sorted({n for _, n in a.load.phases.starts})
        out: list[ResultEvent] = []
        for phase in [*names, ""]:
            checks: list[SloCheck] = []
            for slo in a.config.slos:
                dim = ("target", slo.target) if slo.target else _OVERALL
                _, found = judge(slo, self._figures(dim, phase))
                if slo.target:
                    found = [_of_target(slo.target, c) for c in found]
                checks += found
            if not phase:
                ids = self._ids("verdict", phase)
                out.append(run_verdict(ids, checks, a.record, a.health_keys(), origin_of(a)))
                continue
            out.append(
                Verdict(
                    **self._ids("verdict", phase),
                    phase=phase,
                    passed=all(c.passed for c in checks),
                    checks=checks,
                    reasons=[c.reason for c in checks if not c.passed],
                )
            )
        return out

    def _figures(self, dim: tuple[str, str], phase: str) -> PhaseFigures:
        """The figures an SLO of ``dim`` (a target, or overall) is judged on, in ``phase``
        (empty: the whole run)."""
        a = self.a
        hk = a.health_keys().get(dim)
        eps = hk.episodes if hk else []
        violations = [t for t, target in a.isolation.seen if dim == _OVERALL or target == dim[1]]
        if not phase:
            f = hk.figures() if hk else None
            whole = self.whole_run().get(dim, LoadAcc())
            counts = a.integrity.counts.get(dim, Counts())
            return PhaseFigures(
                availability_pct=f.availability_pct if f and f.observed_s > 0 else None,
                p99_ms=whole.latency.quantile(0.99),
                mttr_s=f.mttr_s if f else None,
                isolation_violations=len(violations),
                error_ratio=_ratio_or_none(whole),
                loss_ratio=counts.lost / counts.sent if counts.sent else None,
                recovery_p95_s=self._recovery_p95_s(dim, None),
            )
        intervals = a.load.phases.intervals(phase, self.end_ns)
        total = sum(e - s for s, e in intervals)
        down = sum(
            _overlap(ep.started_ns, ep.ended_ns or self.end_ns, s, e)
            for ep in eps
            for s, e in intervals
        )
        acc = a.load.accs.get((*dim, phase), LoadAcc())
        started = [ep for ep in eps if any(s <= ep.started_ns < e for s, e in intervals)]
        durations = [ep.ended_ns - ep.started_ns for ep in started if ep.ended_ns is not None]
        return PhaseFigures(
            availability_pct=None if total == 0 or hk is None else 100.0 * (total - down) / total,
            p99_ms=acc.latency.quantile(0.99),
            mttr_s=sum(durations) / len(durations) / 1e9 if durations else None,
            isolation_violations=sum(
                1 for t in violations if any(s <= t < e for s, e in intervals)
            ),
            error_ratio=_ratio_or_none(acc),
            loss_ratio=None,
            recovery_p95_s=self._recovery_p95_s(dim, intervals),
        )


def _of_target(target: str, c: SloCheck) -> SloCheck:
    """A check of a target's SLO, named (and explained) after the target."""
    reason = f"{target}:{c.reason}" if c.reason else ""
    return c.model_copy(update={"name": f"{target}:{c.name}", "reason": reason})


def _ratio_or_none(acc: LoadAcc) -> float | None:
    """An error ratio, None when nothing was observed to take it of."""
    return acc.error_ratio if acc.error_count + acc.connects + acc.received else None


def _measured_against(faults: FaultWindows, t: int, after: list[str]) -> FaultWindow | None:
    """The fault a finding at ``t`` is measured against: the latest-started one active at
    ``t``, else the latest-ended of its after-effect faults."""
    active = faults.active_windows_at(t)
    if active:
        return max(active, key=lambda w: w.started_ns)
    ended = [
        w for f in after for w in faults.by_id(f) if w.ended_ns is not None and w.ended_ns <= t
    ]
    return max(ended, key=lambda w: w.ended_ns or 0) if ended else None


def _relation(w: FaultWindow | None, t: int) -> Relation | None:
    if w is None:
        return None
    end = w.effective_end_ns
    return "after" if end is not None and t >= end else "during"


def _overlap(a0: int, a1: int, b0: int, b1: int) -> int:
    return max(0, min(a1, b1) - max(a0, b0))


def _scope(s: str) -> Scope:
    if s in ("target", "tenant", "fault", "overall"):
        return s  # type: ignore[return-value]
    raise ValueError(f"unknown scope {s!r}")
