"""In-process live analysis for ``aftershock run``: the analyzers' live adapter fed straight
from the run's event sink, publishing changed results to the dashboard, the injector's
safeguards and Redis (the same keys the Faust worker writes)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import asdict
from typing import TYPE_CHECKING

from analyzers.core import AnalyzerConfig, SloSpec
from analyzers.decode import Inbox
from analyzers.live import LiveAnalyzers
from schemas.targets import TargetGraph
from spine.store import Span, write_results, write_span

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from redis.asyncio import Redis

    from analyzers.core import Analyzer
    from schemas.experiment import Experiment
    from schemas.results import ResultBase, ResultEvent

log = logging.getLogger(__name__)

BASELINE_PHASE = "method"
"""The injector's phase between the steady-state check and the first fault: the baseline."""


def analyzer_config(exp: Experiment) -> AnalyzerConfig:
    """SLOs and the dependency graph of an experiment, as the analyzers take them."""
    ax = exp.aftershock
    slos = [
        SloSpec(
            target=s.target,
            availability_min_pct=s.availability_pct,
            p99_max_ms=s.p99_latency_ms,
            mttr_max_s=s.mttr,
            max_isolation_violations=s.isolation_violations,
            no_data_fails=s.no_data_fails,
        )
        for s in ax.slos
    ]
    return AnalyzerConfig(
        slos=slos or [SloSpec()],
        graph=TargetGraph(targets=ax.targets) if ax.targets else None,
        baseline_phase=BASELINE_PHASE,
    )


class LiveAnalysis(Inbox):
    """An :class:`~spine.eventlog.EncodedEventSink` (an :class:`~analyzers.decode.Inbox`):
    events are kept on :meth:`emit` and :meth:`emit_encoded` (never blocking, one call each on
    the hot path) and folded by :meth:`run` every ``interval_s``;
    ``on_results`` is handed the results that changed. Events that come as bytes (everything
    a run's fan-out hands on) are decoded straight into the analysis form, a batch per fold
    (:class:`analyzers.decode.Inbox`), as the Faust worker decodes its records."""

    def __init__(
        self,
        experiment_id: str,
        config: AnalyzerConfig,
        *,
        redis: Redis | None = None,
        on_results: Callable[[list[ResultEvent]], None] | None = None,
        interval_s: float = 0.25,
        topic: str = "",
    ) -> None:
        self.experiment_id = experiment_id
        self.config = config
        self.topic = topic  # the events topic the run is published to, recorded in its span
        self._live = LiveAnalyzers(lambda _e: config)
        self._slot = self._live.open(experiment_id, 0, None)
        super().__init__()
        self._redis = redis
        self._on_results = on_results
        self._interval_s = interval_s
        self._subscribers: list[asyncio.Queue[ResultBase]] = []
        self.redis_failures = 0

    @property
    def analyzer(self) -> Analyzer:
        return self._slot.analyzer

    def _feed(self) -> None:
        """Fold what arrived. The analyzer leaves out (and counts, as a worker does) events
        of other experiments and results."""
        batch = self.take()
        if batch:
            self._live.feed(self.experiment_id, None, batch)

    def results_feed(self) -> AsyncIterator[ResultBase]:
        """Changed results from now on (what the injector's safeguards watch)."""
        queue: asyncio.Queue[ResultBase] = asyncio.Queue()
        self._subscribers.append(queue)

        async def feed() -> AsyncIterator[ResultBase]:
            while True:
                yield await queue.get()

        return feed()

    async def step(self, *, final: bool = False) -> list[ResultEvent]:
        """Fold what arrived, then publish the results that changed (and, ``final``, mark the
        stored results as the run's record even if nothing changed)."""
        self._feed()
        changed = self._live.changed_results(self.experiment_id)
        if changed or final:
            for q in self._subscribers:
                for r in changed:
                    q.put_nowait(r)
            if self._on_results is not None:
                self._on_results(changed)  # the dashboard keeps what did not change
            if self._redis is not None:
                try:
                    async with asyncio.timeout(2.0):
                        a = self.analyzer
                        await write_results(
                            self._redis, self.experiment_id, changed, asdict(a.stats())
                        )
                        if a.first_ns is not None:
                            end = max(a.last_ns, a.ended_ns or 0)
                            span = Span(a.run_id or "-", a.first_ns, end, a.finished, self.topic)
                            await write_span(self._redis, self.experiment_id, span)
                except Exception as exc:  # live results in Redis are a convenience
                    self.redis_failures += 1
                    if self.redis_failures == 1:
                        log.warning("cannot write live results to Redis: %r", exc)
        return changed

    async def run(self) -> None:
        while True:
            await self.step()
            await asyncio.sleep(self._interval_s)

    def results_so_far(self) -> list[ResultEvent]:
        """Fold what arrived and finish the analysis, without publishing: the results of a
        run that stopped waiting."""
        self._feed()
        a = self.analyzer
        if not a.finished:
            a.finish()
        return a.results()

    async def drain(self, timeout_s: float) -> list[ResultEvent]:
        """Fold everything left and finish the analysis; returns the final results."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.step()
        a = self.analyzer
        if not a.finished:
            a.finish()
        await self.step(final=True)
        return a.results()
