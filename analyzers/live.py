"""Live analysis state shared by the stream workers: one analyzer per experiment.

No Kafka or Redis here: the Faust worker feeds :class:`LiveAnalyzers` with decoded record
batches and asks it for snapshots and for the results that changed. Redelivered records are
recognised exactly by their source ``(partition, offset)``: each slot keeps the highest offset
applied per source partition, and that map travels inside the snapshot, so a worker restored
from its changelog skips what it had already counted.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from analyzers.core import Analyzer, AnalyzerConfig
from analyzers.errors import SnapshotError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from analyzers.core.clock import Clock
    from analyzers.core.events import Fed
    from schemas.results import ResultEvent

SNAPSHOT_VERSION = 4
"""2: buffered session events are held in their analysis form (:mod:`analyzers.core.events`).
3: the analyzer also holds the time series and the run record (:mod:`analyzers.core.series`,
:mod:`analyzers.core.verdict`); sessions are known by their whole identity; user recoveries,
after-effects, the run's configuration from its log.
4: sequence tracks hold the sequence numbers missing below the highest; integrity knows when
expiry is next due."""


@dataclass
class Slot:
    analyzer: Analyzer
    partition: int
    applied: dict[int, int] = field(default_factory=dict)
    dirty: bool = False
    published: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class FeedOutcome:
    applied: bool
    events: int


class LiveAnalyzers:
    def __init__(
        self,
        config_for: Callable[[str], AnalyzerConfig] | None = None,
        clock: Clock | None = None,
        sources: Sequence[str] = (),
    ) -> None:
        self._config_for = config_for or (lambda _exp: AnalyzerConfig())
        self._clock = clock
        self._sources = list(sources)
        self.slots: dict[str, Slot] = {}
        self.skipped_records = 0
        self.edges: list[tuple[str, str]] = []

    def has(self, experiment_id: str) -> bool:
        return experiment_id in self.slots

    def open(
        self, experiment_id: str, partition: int, snapshot: bytes | None, parked: Slot | None = None
    ) -> Slot:
        """The slot of an experiment, restored from ``snapshot`` when there is one.

        ``parked`` is this worker's own slot from before a rebalance; it wins unless the
        snapshot is newer (another worker had the partition meanwhile): a snapshot recovered
        from the changelog may be older than what this worker already applied.
        """
        slot = self.slots.get(experiment_id)
        if slot is not None:
            return slot
        restored = self._restore(snapshot, partition) if snapshot else None
        if parked is not None and (restored is None or not _newer(restored, parked)):
            parked.partition = partition
            slot = parked
        elif restored is not None:
            slot = restored
        else:
            slot = Slot(
                Analyzer(experiment_id, self._config_for(experiment_id), self._clock), partition
            )
        for caller, callee in self.edges:
            slot.analyzer.add_dependency(caller, callee)
        slot.analyzer.expect_sources(self._sources)
        self.slots[experiment_id] = slot
        return slot

    def feed(
        self, experiment_id: str, source: tuple[int, int] | None, events: Sequence[Fed]
    ) -> FeedOutcome:
        """Apply one record's events unless its source offset was applied already."""
        slot = self.slots[experiment_id]
        if source is not None:
            part, offset = source
            if slot.applied.get(part, -1) >= offset:
                self.skipped_records += 1
                return FeedOutcome(False, 0)
            slot.applied[part] = offset
        slot.analyzer.ingest(events, "" if source is None else str(source[0]))
        slot.dirty = True
        return FeedOutcome(True, len(events))

    def add_edges(self, edges: Iterable[tuple[str, str]]) -> None:
        """Caller → callee edges from traces; they hold for every experiment."""
        for edge in edges:
            if edge not in self.edges:
                self.edges.append(edge)
                for slot in self.slots.values():
                    slot.analyzer.add_dependency(*edge)
                    slot.dirty = True

    def snapshot(self, experiment_id: str) -> bytes:
        slot = self.slots[experiment_id]
        slot.dirty = False
        return pickle.dumps(
            {
                "version": SNAPSHOT_VERSION,
                "analyzer": slot.analyzer.snapshot(),
                "applied": dict(slot.applied),
            },
            protocol=pickle.HIGHEST_PROTOCOL,
        )

    def _restore(self, blob: bytes, partition: int) -> Slot:
        try:
            data = pickle.loads(blob)
            if data.get("version") != SNAPSHOT_VERSION:
                raise SnapshotError(f"snapshot version {data.get('version')!r} is not supported")
            analyzer = Analyzer.restore(data["analyzer"], self._clock)
            return Slot(analyzer, partition, dict(data["applied"]))
        except SnapshotError:
            raise
        except Exception as exc:
            raise SnapshotError(f"cannot read analyzer snapshot: {exc!r}") from exc

    def drop(self, partitions: Iterable[int]) -> dict[str, Slot]:
        """Take out the experiments of partitions this worker no longer owns."""
        gone = set(partitions)
        return {
            exp: self.slots.pop(exp)
            for exp in list(self.slots)
            if self.slots[exp].partition in gone
        }

    def changed_results(self, experiment_id: str) -> list[ResultEvent]:
        """Tick the analyzer (idle flush; end of experiment) and return results that changed
        since the last call."""
        slot = self.slots[experiment_id]
        a = slot.analyzer
        a.tick()
        if a.ended_ns is not None and not a.finished and a.stats().buffered == 0:
            a.finish()
            slot.dirty = True
        out = []
        for r in a.results():
            digest = hashlib.blake2b(
                r.model_dump_json(exclude={"ts_ns"}).encode(), digest_size=16
            ).digest()
            if slot.published.get(r.event_id) != digest:
                slot.published[r.event_id] = digest
                out.append(r)
        return out


def _newer(a: Slot, b: Slot) -> bool:
    """True when ``a`` has applied everything ``b`` has, and more."""
    parts = set(a.applied) | set(b.applied)
    ge = all(a.applied.get(p, -1) >= b.applied.get(p, -1) for p in parts)
    return ge and a.applied != b.applied
