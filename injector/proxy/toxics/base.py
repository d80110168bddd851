"""What every toxic type is made of: a frozen config and a per-link stage.

A *toxic* is what the API manages (name, type, stream, toxicity, attributes). A *stage* is the
state of one toxic on one link of one connection: it receives chunks with :meth:`Stage.push`
and hands them on through ``out`` (possibly later, changed, split or not at all). Stages of a
link form a chain; the last one writes to the socket.
"""

from __future__ import annotations

import heapq
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Protocol

from pydantic import BaseModel, ConfigDict, Field

from injector.proxy.toxics.alarm import Alarm

if TYPE_CHECKING:
    import asyncio
    import random
    from collections.abc import Callable


MAX_DURATION_MS = 24 * 3600 * 1000
"""Longest time attribute (latency, jitter, delay, timeout): one day. Toxiproxy takes any
int64 and overflows its clock past about 292 years; a bound keeps every timer in range."""
MAX_CHUNK_BYTES = 1 << 30
"""Largest byte size attribute of a chunk (slicer sizes)."""

DurationMs = Annotated[int, Field(ge=0, le=MAX_DURATION_MS)]
"""Milliseconds, 0 … one day."""
ChunkBytes = Annotated[int, Field(ge=0, le=MAX_CHUNK_BYTES)]


class ToxicConfig(BaseModel):
    """Attributes of a toxic type. Go semantics: unknown keys ignored, missing keys are 0,
    a value of the wrong JSON type is an error."""

    model_config = ConfigDict(frozen=True, strict=True, extra="ignore")


class LinkPort(Protocol):
    """What a stage may ask of the link it sits on."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    def buffered_changed(self, delta: int) -> None:
        """Account ``delta`` bytes held (or released) by a stage, for back-pressure."""

    def close_connection(self) -> None:
        """Close both sockets of the connection (FIN)."""

    def reset_connection(self) -> None:
        """Close both sockets of the connection with RST (SO_LINGER 0)."""


def _discard(data: bytes) -> None:
    """Where a stage's output goes before it is wired into a chain."""


def _discard_eof() -> None:
    """Where a stage's EOF goes before it is wired into a chain."""


class Stage:
    """One toxic on one link. The default passes everything through unchanged."""

    config: ToxicConfig

    def __init__(self, config: ToxicConfig, link: LinkPort, rng: random.Random) -> None:
        self.config = config
        self.link = link
        self.rng = rng
        self.out: Callable[[bytes], None] = _discard
        self.out_eof: Callable[[], None] = _discard_eof
        self.active = False

    def start(self) -> None:
        """The stage became active on its link (toxic added, connection opened, redrawn)."""

    def push(self, data: bytes) -> None:
        self.out(data)

    def eof(self) -> None:
        self.out_eof()

    def flush(self) -> None:
        """Hand every held chunk (and a held EOF) onward now; the stage leaves the chain."""

    def removed(self) -> None:
        """The toxic was deleted while active here. Default: no data lost."""
        self.flush()

    def stop(self) -> None:
        """The connection is closing: drop timers and held data."""

    def reconfigure(self, config: ToxicConfig) -> None:
        self.config = config


class Wheel:
    """Wakes timed stages in slots of ``slot_s``: one alarm per slot shared by every stage due
    in it, instead of one timer per chunk (10k chunks/s become at most 1/``slot_s`` wake-ups).

    Times are ``time.monotonic()``; a chunk due at ``at`` goes in slot ``round(at / slot_s)``
    and leaves when that slot fires. With a precise :class:`Alarm` (Linux timerfd) slots are
    0.2 ms, so a chunk leaves within ~0.1 ms of its time plus the loop's own delay. With loop
    timers only (uvloop's count whole milliseconds from a clock cached per loop iteration and
    fire up to about a millisecond early or late), slots are 0.5 ms and a wake-up also
    releases what is due within that granularity (``tolerance_s``) rather than wake again and
    again until the time comes.
    """

    _wheels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Wheel] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # The wheel keeps no reference to the loop (the per-loop cache is keyed on it weakly),
        # so a finished loop with no stage still waiting frees its wheel and alarm.
        self.slots: dict[int, list[TimedStage]] = {}
        self._due: list[int] = []
        """Slot numbers with stages waiting, as a heap; the alarm is set for the first."""
        self._armed_slot: int | None = None
        self.alarm = Alarm(loop, self._fire)
        if self.alarm.precise:
            self.slot_s, self.tolerance_s = 0.0002, 0.0
        elif type(loop).__module__.startswith("uvloop"):
            self.slot_s, self.tolerance_s = 0.0005, 0.001
        else:
            self.slot_s, self.tolerance_s = 0.0005, 0.0001

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> Wheel:
        wheel = cls._wheels.get(loop)
        if wheel is None:
            wheel = cls._wheels[loop] = cls(loop)
        return wheel

    def wake(self, stage: TimedStage, at: float) -> None:
        slot = round(at / self.slot_s)
        stages = self.slots.get(slot)
        if stages is not None:
            stages.append(stage)
            return
        self.slots[slot] = [stage]
        heapq.heappush(self._due, slot)
        if self._armed_slot is None or slot < self._armed_slot:
            self._armed_slot = slot
            self.alarm.arm(slot * self.slot_s)

    def _fire(self) -> None:
        fired, self._armed_slot = self._armed_slot, None
        # Every slot up to ``last`` is released now, its stages up to the slot's end (so a
        # stage put back on the wheel always lands in a later slot).
        last = int((time.monotonic() + self.tolerance_s) / self.slot_s + 0.5)
        if fired is not None:
            last = max(last, fired)
        horizon = (last + 0.5) * self.slot_s
        due = self._due
        while due and due[0] <= last:
            for stage in self.slots.pop(heapq.heappop(due)):
                stage.wakeup(horizon)
        if due:
            # A wake-up may have armed an earlier slot already.
            if self._armed_slot is None or due[0] < self._armed_slot:
                self._armed_slot = due[0]
                self.alarm.arm(due[0] * self.slot_s)
        else:
            self.alarm.disarm()


class TimedStage(Stage):
    """A stage that releases chunks in order at scheduled loop times (latency, bandwidth, ...)."""

    def __init__(self, config: ToxicConfig, link: LinkPort, rng: random.Random) -> None:
        super().__init__(config, link, rng)
        self._queue: deque[tuple[float, bytes | None]] = deque()
        self._wheel = Wheel.of(link.loop)
        self._armed = False
        self.last_at = 0.0
        self.held = 0

    def schedule(self, data: bytes, at: float) -> None:
        at = max(at, self.last_at)
        self.last_at = at
        self._queue.append((at, data))
        self.held += len(data)
        self.link.buffered_changed(len(data))
        if not self._armed:
            self._armed = True
            self._wheel.wake(self, at)

    def eof(self) -> None:
        if not self._queue:
            self.out_eof()
            return
        self._queue.append((self.last_at, None))

    def wakeup(self, horizon: float) -> None:
        """Release what is due by ``horizon`` (monotonic); wake again for the rest."""
        self._armed = False
        queue = self._queue
        released = 0
        while queue and queue[0][0] <= horizon:
            _, data = queue.popleft()
            if data is None:
                self.out_eof()
                continue
            released += len(data)
            self.out(data)
        if released:
            self.held -= released
            self.link.buffered_changed(-released)
        if queue and not self._armed:
            self._armed = True
            self._wheel.wake(self, queue[0][0])

    def flush(self) -> None:
        queue, self._queue = self._queue, deque()
        if self.held:
            self.link.buffered_changed(-self.held)
            self.held = 0
        for _, data in queue:
            if data is None:
                self.out_eof()
            else:
                self.out(data)

    def stop(self) -> None:
        # A pending wake-up finds an empty queue and does nothing.
        self._queue.clear()
        self.held = 0


@dataclass(frozen=True)
class ToxicType:
    """A registered toxic type: its name, attribute model and stage class."""

    name: str
    config: type[ToxicConfig]
    stage: type[Stage]
    standard: bool

    def parse(self, attributes: dict[str, object]) -> ToxicConfig:
        return self.config.model_validate(attributes)


class Registry:
    """Toxic types by name; the API looks types up here, never by comparing strings."""

    def __init__(self) -> None:
        self._types: dict[str, ToxicType] = {}

    def register(
        self, *names: str, config: type[ToxicConfig], standard: bool = True
    ) -> Callable[[type[Stage]], type[Stage]]:
        def decorate(stage: type[Stage]) -> type[Stage]:
            for name in names:
                if name in self._types:
                    raise ValueError(f"toxic type {name!r} registered twice")
                self._types[name] = ToxicType(name, config, stage, standard)
            return stage

        return decorate

    def get(self, name: str) -> ToxicType | None:
        return self._types.get(name)

    def names(self) -> list[str]:
        return list(self._types)


REGISTRY = Registry()
register = REGISTRY.register
