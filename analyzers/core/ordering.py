"""Putting events back in order: per-generator time bases, a watermark buffer, de-duplication.

Event time. A generator stamps each event with its wall clock (``ts_ns``) and a monotonic
offset since it started (``mono_ns``). The core uses ``anchor + mono_ns``, where ``anchor``
is ``ts_ns - mono_ns`` of the first event seen from that (generator, run): intervals measured
by one generator are then immune to wall-clock steps (NTP corrections) during the run. Every
producer of a process stamps from one clock origin (:mod:`spine.clock`), so ``ts_ns - mono_ns``
is one constant per process and the anchor does not depend on which event arrives first: live,
in a worker and in replay, every event gets the same time. A jump
larger than ``max_clock_step_s`` means the generator restarted and it is re-anchored.
A constant offset between two generators' clocks cannot be seen in the events; known offsets
are configured in ``AnalyzerConfig.clock_offsets_ns``.

Order. Events wait in a buffer until the watermark passes them. Events may name their source
(a Kafka partition: within one source they arrive nearly in order); the watermark is the
lowest, over sources that delivered something within ``source_idle_s`` of processing time,
of the highest event time seen from that source, minus the allowed lateness — so a partition
that lags (a consumer catching up on a backlog reads partitions unevenly) holds the others
back instead of having its events arrive late. Released events leave sorted by (event time,
event id), so any interleaving of partitions whose lag stays below the lateness yields the
same sequence. An event at or before the watermark as it stood when it arrived is late: what
the watermark had passed is released first, then the late event is applied (counted in
``late``), at its place in arrival order. Which events are late, and where they fold, thus
depend on the order of arrival alone, never on how arrivals are grouped between releases.

Duplicates. Ids are remembered from arrival until ``dedup_horizon`` (event time) after the
watermark passed them, in time buckets, so memory is bounded by rate × (lateness + horizon).
An event older than that can no longer be told from a duplicate: it is dropped and counted
in ``too_late`` rather than risk counting something twice.
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from analyzers.core.events import Fed

_BUCKET_NS = 1_000_000_000
_SLOT_NS = 1_000_000
"""Buffered events are kept in 1 ms slots of event time, each sorted only when it is
released: a heap over every event cost ~30 comparisons per event with tens of thousands of
events buffered while a backlog is read."""
_time = itemgetter(0)


def _compact(event_id: str) -> int | str:
    """Standard ids (32 hex digits) are kept as ints: a third of the memory, exact."""
    if len(event_id) == 32:
        try:
            return int(event_id, 16)
        except ValueError:
            return event_id
    return event_id


class TimeBase:
    """Maps each event to its event time (ns), per the rules in the module docstring."""

    def __init__(self, offsets_ns: Mapping[str, int], max_step_ns: int) -> None:
        self._offsets = dict(offsets_ns)
        self._max_step_ns = max_step_ns
        self._anchors: dict[tuple[str, str], int] = {}
        self.reanchored = 0

    def time_of(self, ev: Fed) -> int:
        offset = self._offsets.get(ev.generator_id, 0)
        if ev.mono_ns <= 0:
            return ev.ts_ns + offset
        key = (ev.generator_id, ev.run_id)
        base = ev.ts_ns - ev.mono_ns
        anchor = self._anchors.get(key)
        if anchor is None or abs(base - anchor) > self._max_step_ns:
            if anchor is not None:
                self.reanchored += 1
            self._anchors[key] = anchor = base
        return anchor + ev.mono_ns + offset

    def times_of(self, events: Sequence[Fed]) -> list[int]:
        """:meth:`time_of` of each event, in order: the same values and the same anchors and
        count of re-anchorings as calling it for each. A batch keeps the anchor of a run of
        events from one generator and run at hand instead of looking it up per event."""
        offsets = self._offsets
        anchors = self._anchors
        max_step = self._max_step_ns
        out: list[int] = []
        append = out.append
        gen: str | None = None
        run: str | None = None
        key: tuple[str, str] = ("", "")
        offset = 0
        anchor: int | None = None
        for ev in events:
            mono = ev.mono_ns
            if mono <= 0:
                append(ev.ts_ns + offsets.get(ev.generator_id, 0))
                continue
            if ev.generator_id != gen or ev.run_id != run:
                gen, run = ev.generator_id, ev.run_id
                key = (gen, run)
                offset = offsets.get(gen, 0)
                anchor = anchors.get(key)
            base = ev.ts_ns - mono
            if anchor is None or abs(base - anchor) > max_step:
                if anchor is not None:
                    self.reanchored += 1
                anchors[key] = anchor = base
            append(anchor + mono + offset)
        return out


@dataclass
class BufferStats:
    accepted: int = 0
    duplicates: int = 0
    late: int = 0
    too_late: int = 0
    released: int = 0


@dataclass
class ReorderBuffer:
    """Holds events until the watermark passes them; drops duplicate ids."""

    lateness_ns: int
    horizon_ns: int
    source_idle_ns: int = 1_000_000_000
    stats: BufferStats = field(default_factory=BufferStats)
    _src_max: dict[str, int] = field(default_factory=dict)
    _src_seen: dict[str, int] = field(default_factory=dict)
    _slots: dict[int, list[tuple[int, str, Fed]]] = field(default_factory=dict)
    _slot_order: list[int] = field(default_factory=list)
    _held: int = 0
    _max_t: int | None = None
    _released_upto: int | None = None
    _seen: set[int | str] = field(default_factory=set)
    _buckets: dict[int, list[int | str]] = field(default_factory=dict)
    _oldest_bucket: int | None = None

    @property
    def watermark_ns(self) -> int | None:
        """The watermark as of the last release."""
        return self._released_upto

    def watermark_at(self, now_ns: int) -> int | None:
        """The watermark at processing time ``now_ns`` (see the module docstring)."""
        if self._max_t is None:
            return None
        idle = self.source_idle_ns
        src_max = self._src_max
        active = [s for s, at in self._src_seen.items() if now_ns - at < idle]
        if any(s not in src_max for s in active):
            return self._released_upto  # an expected source has not delivered yet
        low = min((src_max[s] for s in active), default=self._max_t)
        return low - self.lateness_ns

    def close_source(self, source: str) -> None:
        """``source`` will deliver nothing more: stop waiting for it."""
        self._src_seen.pop(source, None)
        self._src_max.pop(source, None)

    def expect(self, source: str, now_ns: int) -> None:
        """Hold the watermark for ``source`` until it delivers or goes idle."""
        self._src_seen.setdefault(source, now_ns)

    def touch_sources(self, now_ns: int) -> None:
        """Count every known source as just heard from (after a restart)."""
        for s in self._src_seen:
            self._src_seen[s] = now_ns

    @property
    def max_time_ns(self) -> int | None:
        return self._max_t

    def __len__(self) -> int:
        return self._held

    def overtaken(self, t: int, now_ns: int) -> int | None:
        """The watermark as of this arrival when an event at ``t`` is at or behind it and it
        has moved past what was released (release up to it before pushing the event), else
        None. Whether an event is late then depends on the order events arrive in, never on
        how they were grouped into :meth:`push` calls between releases: the same log folds
        the same live (a release every fraction of a second) and in replay (a release per
        batch of thousands)."""
        m = self._max_t
        if m is None or t > m - self.lateness_ns:  # the watermark is never above this
            return None
        wm = self.watermark_at(now_ns)
        if wm is None or t > wm:
            return None
        done = self._released_upto
        return wm if done is None or wm > done else None

    def push(self, t: int, ev: Fed, source: str = "", now_ns: int = 0) -> Fed | None:
        """Buffer ``ev``; returns it back when it is late (to apply at once), else None."""
        late: list[Fed] = []
        self.push_many([t], [ev], source, now_ns, lambda _t, e: late.append(e))
        return late[0] if late else None

    def push_many(
        self,
        times: Sequence[int],
        events: Sequence[Fed],
        source: str,
        now_ns: int,
        apply_late: Callable[[int, Fed], object],
        release_upto: Callable[[int], object] | None = None,
    ) -> None:
        """:meth:`push` each event at its time, in order, handing a late one to
        ``apply_late`` as it comes. With ``release_upto``, an event :meth:`overtaken` by the
        watermark first has everything up to the watermark released through it (which calls
        :meth:`pop_ready`): the batch then folds exactly as one event per call would."""
        seen = self._seen
        stats = self.stats
        done = self._released_upto
        floor = None if done is None else done - self.horizon_ns
        src_max = self._src_max
        buckets = self._buckets
        slots = self._slots
        behind = self.lateness_ns
        # Kept in locals through the loop, written back before anything reads them
        # (overtaken, the release it calls, and the end of the batch).
        heard = False  # src_seen[source] = now_ns, once per batch with an accepted event
        smax = src_max.get(source)
        max_t = self._max_t
        b_id: int | None = None  # the last event's dedup bucket and slot, at hand
        s_id: int | None = None
        bucket: list[int | str] = []
        slot: list[tuple[int, str, Fed]] = []
        held = 0
        try:
            for t, ev in zip(times, events, strict=True):
                if release_upto is not None and max_t is not None and t <= max_t - behind:
                    # else it cannot be overtaken
                    if heard and smax is not None:
                        src_max[source] = smax
                    self._max_t = max_t
                    self._held += held
                    held = 0
                    wm = self.overtaken(t, now_ns)
                    if wm is not None:
                        release_upto(wm)
                        done = self._released_upto
                        floor = None if done is None else done - self.horizon_ns
                        b_id = s_id = None  # the release may have dropped them
                event_id = ev.event_id
                eid: int | str = event_id
                if len(event_id) == 32:  # _compact, inlined: this runs for every event
                    try:
                        eid = int(event_id, 16)
                    except ValueError:
                        eid = event_id
                if eid in seen:
                    stats.duplicates += 1
                    continue
                if floor is not None and t < floor:
                    stats.too_late += 1
                    continue
                if not heard:
                    self._src_seen[source] = now_ns
                    heard = True
                if smax is None or t > smax:
                    smax = t
                seen.add(eid)
                b = t // _BUCKET_NS
                if b != b_id:
                    got = buckets.get(b)
                    if got is None:
                        buckets[b] = got = []
                        if self._oldest_bucket is None or b < self._oldest_bucket:
                            self._oldest_bucket = b
                    bucket, b_id = got, b
                bucket.append(eid)
                stats.accepted += 1
                if done is not None and t <= done:
                    stats.late += 1
                    if heard and smax is not None:
                        src_max[source] = smax
                    self._max_t = max_t
                    self._held += held
                    held = 0
                    apply_late(t, ev)
                    continue
                if max_t is None or t > max_t:
                    max_t = t
                slot_id = t // _SLOT_NS
                if slot_id != s_id:
                    got_slot = slots.get(slot_id)
                    if got_slot is None:
                        slots[slot_id] = got_slot = []
                        heapq.heappush(self._slot_order, slot_id)
                    slot, s_id = got_slot, slot_id
                slot.append((t, event_id, ev))
                held += 1
        finally:
            if heard and smax is not None:
                src_max[source] = smax
            self._max_t = max_t
            self._held += held

    def pop_ready(self, limit: int | None) -> list[tuple[int, str, Fed]]:
        """Entries ``(event time, event id, event)`` at or before ``limit`` (a watermark),
        oldest first."""
        out: list[tuple[int, str, Fed]] = []
        if limit is None:
            return out
        if self._released_upto is not None and limit <= self._released_upto:
            limit = self._released_upto
        self._released_upto = limit
        slots = self._slots
        order = self._slot_order
        last = limit // _SLOT_NS
        while order and order[0] <= last:
            slot_id = order[0]
            entries = slots[slot_id]
            entries.sort()  # (time, id) is unique: ids are de-duplicated
            if slot_id < last or entries[-1][0] <= limit:
                out += entries
                del slots[slot_id]
                heapq.heappop(order)
            else:
                ready = bisect.bisect_right(entries, limit, key=_time)
                out += entries[:ready]
                del entries[:ready]
                break
        self._held -= len(out)
        self.stats.released += len(out)
        self._forget(limit)
        return out

    def drain(self) -> list[tuple[int, str, Fed]]:
        """Everything still buffered, oldest first (end of stream)."""
        if not self._slots:
            return []
        return self.pop_ready(max(t for t, _, _ in self._slots[max(self._slots)]))

    def advance(self, t: int) -> None:
        """Move event time forward without an event (idle streams)."""
        if self._max_t is None or t > self._max_t:
            self._max_t = t

    def _forget(self, limit_ns: int) -> None:
        if self._oldest_bucket is None:
            return
        cutoff = (limit_ns - self.horizon_ns) // _BUCKET_NS
        if self._oldest_bucket >= cutoff:
            return
        for b in sorted(k for k in self._buckets if k < cutoff):
            for eid in self._buckets.pop(b):
                self._seen.discard(eid)
        self._oldest_bucket = min(self._buckets) if self._buckets else None

    @property
    def remembered_ids(self) -> int:
        return len(self._seen)

    def __getstate__(self) -> dict[str, object]:
        # ``_seen`` is the union of ``_buckets``: rebuilt on restore, it halves the snapshot.
        state = self.__dict__.copy()
        del state["_seen"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._seen = {eid for ids in self._buckets.values() for eid in ids}
