"""The run journal (``journal.json``): Chaos Toolkit's shape plus Aftershock's measured timings.

Chaos Toolkit keys, written as chaostoolkit-lib writes them so its consumers (reporting,
dashboards) read it: ``chaoslib-version`` (the chaostoolkit-lib release whose journal format
this follows), ``platform``, ``node``, ``experiment`` (as loaded from the file), ``start``,
``end``, ``duration``, ``status``, ``deviated``, ``steady_states`` (``before``, ``after``,
``during``), ``run`` and ``rollbacks``; each run keeps its activity as written and has
``exception`` only when it failed and ``tolerance_met`` only when judged. Aftershock adds
the ``aftershock`` section: every fault with its planned and measured times, controls received,
the safeguard that tripped, and summary timings. The journal is rewritten (atomically) after
every fault step, so after a crash it still names every toxic the run created — which is what
``aftershock injector reap`` reads.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import socket
import statistics
import threading
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import to_jsonable_python

from injector.errors import JournalError
from spine import __version__
from spine.errors import first_problem
from spine.text import utf8_safe

if TYPE_CHECKING:
    from pathlib import Path


class FaultState(StrEnum):
    PENDING = "pending"
    INJECTING = "injecting"
    ACTIVE = "active"
    REVERTING = "reverting"
    REVERTED = "reverted"
    SKIPPED = "skipped"
    REJECTED = "rejected"
    """The server refused the inject (4xx): nothing of it is on the server."""
    FAILED = "failed"
    """Inject or revert failed in a way that may have left it on the server."""


ALLOWED: dict[FaultState, frozenset[FaultState]] = {
    FaultState.PENDING: frozenset({FaultState.INJECTING, FaultState.SKIPPED}),
    FaultState.INJECTING: frozenset(
        {FaultState.ACTIVE, FaultState.FAILED, FaultState.REJECTED, FaultState.REVERTING}
    ),
    FaultState.ACTIVE: frozenset({FaultState.REVERTING}),
    FaultState.REVERTING: frozenset({FaultState.REVERTED, FaultState.FAILED}),
    FaultState.REVERTED: frozenset(),
    FaultState.SKIPPED: frozenset(),
    FaultState.REJECTED: frozenset(),
    FaultState.FAILED: frozenset({FaultState.REVERTING}),
}
"""Checked transitions. FAILED → REVERTING: a failed inject or revert may have left the fault
on the server, so the final cleanup tries again."""

LIVE_STATES = frozenset(
    {FaultState.INJECTING, FaultState.ACTIVE, FaultState.REVERTING, FaultState.FAILED}
)
"""States in which the fault may be present on the server."""


class _Model(BaseModel):
    # Binary in an activity or an output (YAML's !!binary) is written as base64 text.
    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, ser_json_bytes="base64"
    )


CHAOSLIB_JOURNAL_VERSION = "1.44.0"
"""The chaostoolkit-lib release whose journal format Aftershock writes (consumers such as
chaostoolkit-reporting pick their template by it)."""


class ActivityRun(_Model):
    activity: dict[str, Any]
    """The activity as written in the file (a ``ref`` resolved to what it names)."""
    status: Literal["succeeded", "failed"]
    output: Any = None
    start: str
    end: str
    duration: float
    exception: list[str] | None = None
    tolerance_met: bool | None = None

    @property
    def name(self) -> str:
        return str(self.activity.get("name", ""))

    def ctk(self) -> dict[str, Any]:
        """This run as chaostoolkit-lib writes one (no key for what did not happen)."""
        # JSON's types (as mode="json" gives them) through _plain: pydantic's JSON mode raises
        # on a mapping key no UTF-8 can hold (a lone surrogate in an output's key).
        out = cast("dict[str, Any]", _plain(self.model_dump()))
        for key in ("exception", "tolerance_met"):
            if out[key] is None:
                del out[key]
        return out


class SteadyState(_Model):
    steady_state_met: bool
    probes: list[ActivityRun] = Field(default_factory=list)

    def ctk(self) -> dict[str, Any]:
        return {"steady_state_met": self.steady_state_met, "probes": [p.ctk() for p in self.probes]}


class SteadyStates(_Model):
    before: SteadyState | None = None
    after: SteadyState | None = None
    during: list[SteadyState] = Field(default_factory=list)


class FaultRecord(_Model):
    fault_id: str
    proxy: str
    kind: Literal["toxic", "down"]
    source: Literal["timeline", "chaostoxi"] = "timeline"
    toxic_name: str | None = None
    toxic_type: str | None = None
    state: FaultState
    planned_at_s: float | None = None
    planned_duration_s: float | None = None
    injected_at_s: float | None = None
    jitter_ms: float | None = None
    """How late the inject call started relative to its planned offset."""
    apply_ms: float | None = None
    """How long the server took to apply it."""
    reverted_at_s: float | None = None
    revert_jitter_ms: float | None = None
    revert_ms: float | None = None
    lease_ttl_ms: int | None = None
    lease_renewals: int = 0
    reapplied: int = 0
    """Times the server lost this fault while it should have been active and it was put back
    (see :class:`StateLoss`)."""
    error: str | None = None


class StateLoss(_Model):
    """The fault proxy no longer had a fault that should be active, and what was done.

    ``found`` is what the injector saw: the proxy gone, the toxic gone, or a downed proxy
    enabled again. ``server_restarted``: the server answered as another instance than
    before (it restarted and lost everything it held)."""

    at_s: float
    fault_id: str
    proxy: str
    found: Literal["proxy_missing", "toxic_missing", "proxy_enabled"]
    server_restarted: bool
    action: Literal["reapplied", "failed"]
    proxy_recreated: bool = False
    error: str | None = None


class ControlRecord(_Model):
    command: Literal["pause", "resume", "abort", "skip"]
    issued_by: str = ""
    at_s: float


class HookRecord(_Model):
    """A Chaos Toolkit control hook that was called (``error``: how it failed)."""

    control: str
    hook: str
    context: str = ""
    error: str | None = None


class Spread(_Model):
    count: int
    mean: float | None = None
    p50: float | None = None
    p95: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        if not values:
            return cls(count=0)
        s = sorted(values)
        return cls(
            count=len(s),
            mean=round(statistics.fmean(s), 3),
            p50=round(s[len(s) // 2], 3),
            p95=round(s[min(len(s) - 1, int(len(s) * 0.95))], 3),
            max=round(s[-1], 3),
        )


class Timings(_Model):
    inject_jitter_ms: Spread
    revert_jitter_ms: Spread
    apply_ms: Spread
    revert_ms: Spread


class AftershockRun(_Model):
    experiment_id: str
    run_id: str
    api_url: str
    server: str
    server_version: str
    features: list[str]
    leases: bool
    faults: list[FaultRecord] = Field(default_factory=list)
    controls: list[ControlRecord] = Field(default_factory=list)
    control_hooks: list[HookRecord] = Field(default_factory=list)
    state_losses: list[StateLoss] = Field(default_factory=list)
    """Every time the server lost an active fault (after a restart, say), in order."""
    abort_reason: str | None = None
    error: str | None = None
    timings: Timings | None = None
    pid: int = Field(default_factory=os.getpid)


class Journal(_Model):
    chaoslib_version: str = Field(default=CHAOSLIB_JOURNAL_VERSION, alias="chaoslib-version")
    aftershock_version: str = Field(default=__version__, alias="aftershock-version")
    platform: str = Field(default_factory=platform.platform)
    node: str = Field(default_factory=socket.gethostname)
    experiment: dict[str, Any]
    """The experiment as loaded from the file."""
    start: str
    end: str | None = None
    duration: float | None = None
    status: Literal["running", "completed", "failed", "aborted", "interrupted"]
    deviated: bool = False
    steady_states: SteadyStates = Field(default_factory=SteadyStates)
    run: list[ActivityRun] = Field(default_factory=list)
    rollbacks: list[ActivityRun] = Field(default_factory=list)
    aftershock: AftershockRun

    def ctk(self) -> dict[str, Any]:
        """The journal as written to disk: Chaos Toolkit's keys in its shape, then
        ``aftershock``."""
        out: dict[str, Any] = {
            "chaoslib-version": self.chaoslib_version,
            "aftershock-version": self.aftershock_version,
            "platform": self.platform,
            "node": self.node,
            "experiment": self.experiment,
            "start": self.start,
            "status": self.status,
            "deviated": self.deviated,
            "steady_states": {
                "before": self.steady_states.before.ctk() if self.steady_states.before else None,
                "after": self.steady_states.after.ctk() if self.steady_states.after else None,
                "during": [s.ctk() for s in self.steady_states.during],
            },
            "run": [r.ctk() for r in self.run],
            "rollbacks": [r.ctk() for r in self.rollbacks],
        }
        if self.end is not None:
            out["end"] = self.end
        if self.duration is not None:
            out["duration"] = self.duration
        out["aftershock"] = _plain(self.aftershock.model_dump())
        return out


def failure_reason(error: str | None, deviated: bool) -> str:
    """Why a run whose journal is ``failed`` failed, in words: its error, else the
    steady-state hypothesis (deviated after the method, or not met before it)."""
    if error:
        return error
    if deviated:
        return "the steady-state hypothesis deviated"
    return "the steady-state hypothesis was not met before the method"


def timings_of(faults: list[FaultRecord]) -> Timings:
    def col(name: str) -> list[float]:
        return [v for f in faults if (v := getattr(f, name)) is not None]

    return Timings(
        inject_jitter_ms=Spread.of(col("jitter_ms")),
        revert_jitter_ms=Spread.of(col("revert_jitter_ms")),
        apply_ms=Spread.of(col("apply_ms")),
        revert_ms=Spread.of(col("revert_ms")),
    )


def _plain(value: object) -> object:
    """``value`` with JSON's types only, each string encodable as UTF-8 (see
    :func:`journal_text`)."""
    if isinstance(value, str):
        return utf8_safe(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {_key(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return _plain(to_jsonable_python(value, bytes_mode="base64", fallback=repr))


def _key(key: object) -> object:
    if key is None or isinstance(key, bool | int | float):
        return key  # json writes these as text itself
    plain = _plain(key)
    return plain if isinstance(plain, str) else json.dumps(plain, ensure_ascii=False)


def journal_text(journal: Journal) -> str:
    """The journal as its file holds it: JSON, UTF-8 throughout.

    The experiment and activities are kept as the file had them, and a YAML file may hold
    what JSON has no type for (dates, sets, binary): those are written as pydantic writes them
    (ISO 8601 text, lists, base64), mapping keys as text. A string may hold a lone surrogate
    (a probe's output decoded from JSON, say), which UTF-8 cannot: it is written as U+FFFD, as
    a JSON decoder reads one."""
    return json.dumps(_plain(journal.ctk()), indent=2, ensure_ascii=False)


def write_journal(path: Path, journal: Journal) -> None:
    """Atomically replace ``path``: a reader (or a reaper after a crash) never sees half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(journal_text(journal), encoding="utf-8")
    os.replace(tmp, path)


def read_journal(path: Path) -> Journal:
    """The journal at ``path``; :class:`JournalError` naming the file and what is wrong when it
    cannot be read or is not a journal (truncated, garbled, a field of the wrong type)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise JournalError(f"cannot read journal {path}: {exc.strerror}") from exc
    try:
        return Journal.model_validate_json(data)
    except ValidationError as exc:
        raise JournalError(f"{path} is not an Aftershock journal: {first_problem(exc)}") from exc


class JournalWriter:
    """Writes journals to ``path`` on a worker thread, newest first-class: a write in progress
    is followed by the latest journal submitted meanwhile, older ones are skipped. Keeps disk
    I/O off the event loop, where it would delay the fault schedule."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.error: Exception | None = None
        """Why a write failed (the latest failure), if one did."""
        self._cond = threading.Condition()
        self._pending: Journal | None = None
        self._submitted = 0
        self._written = 0
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="journal-writer", daemon=True)
        self._thread.start()

    def submit(self, journal: Journal) -> int:
        """Queue ``journal``; returns its sequence number (for :meth:`wait_written`)."""
        with self._cond:
            self._pending = journal
            self._submitted += 1
            self._cond.notify_all()
            return self._submitted

    def wait_written(self, seq: int, timeout_s: float = 5.0) -> bool:
        """Block until journal ``seq`` (or a newer one) is on disk."""
        with self._cond:
            return self._cond.wait_for(lambda: self._written >= seq, timeout_s)

    async def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait (without blocking the loop) until everything submitted so far is on disk."""
        seq = self._submitted
        if self._written >= seq:
            return True
        return await asyncio.to_thread(self.wait_written, seq, timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is pending, then stop the thread. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout_s)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._pending is None:
                    return
                journal, seq = self._pending, self._submitted
                self._pending = None
            try:
                write_journal(self.path, journal)
            except Exception as exc:  # any failure: the thread must live to write the next one
                self.error = exc  # reported at the end of the run; the run goes on
            with self._cond:
                self._written = seq
                self._cond.notify_all()
