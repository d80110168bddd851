"""Session traces of a run, read back from its span file, shown with the faults around them.

Spans come from ``spans.jsonl`` (one OpenTelemetry SDK span as JSON per line, as
:mod:`spine.telemetry` writes them); fault windows and session events come from
the run's event log. A session is one trace whose root span is named ``session``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson
from pydantic import ValidationError

from aftershock.report.errors import RunDirError
from aftershock.report.files import EVENTS_FILE, SAMPLE_SPANS, SPANS_FILE, has_events
from analyzers.core.faults import FaultChange, FaultWindows
from analyzers.core.series import series_windows
from schemas.events import (
    Disconnect,
    SessionError,
    parse_event,
)
from spine.errors import EventFileError
from spine.eventlog.runlog import EVENTS_DIR, iter_raw, run_log_exists

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

    from schemas.events import Event, SessionEvent
    from schemas.results import SeriesWindow as FaultWindow


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    start_ns: int
    end_ns: int
    status: str
    description: str
    attributes: dict[str, object]
    children: list[Span] = field(default_factory=list)
    events: list[SessionEvent] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status == "ERROR"

    def walk(self) -> Iterable[Span]:
        yield self
        for c in self.children:
            yield from c.walk()


@dataclass
class SessionTrace:
    root: Span
    tenant: str
    session: str
    errors: int = 0

    @property
    def failed(self) -> bool:
        return self.errors > 0 or any(s.failed for s in self.root.walk())


def _hex(v: object) -> str | None:
    if not isinstance(v, str) or not v:
        return None
    return v[2:] if v.startswith("0x") else v


def _ns(iso: object, where: str) -> int:
    if not isinstance(iso, str):
        raise RunDirError(f"{where}: missing time")
    try:
        t = dt.datetime.fromisoformat(iso)
    except ValueError as exc:
        raise RunDirError(f"{where}: bad time {iso!r}") from exc
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000


def read_spans(path: Path) -> list[Span]:
    """The spans of a span file, in file order: one JSON object per line, as
    :class:`spine.telemetry.JsonlSpanExporter` writes them.

    A line that is not a span raises :class:`RunDirError` naming the file, the line and what
    is wrong, except the last line when it has no newline and is not JSON: that is what a
    process killed while writing leaves, and it is passed over (as a torn frame ends a run
    log's segment). Lines end at ``\\n`` only: a span's text may hold other line breaks."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RunDirError(f"cannot read {path}: {exc.strerror}") from exc
    lines = data.split(b"\n")
    out = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            if lineno == len(lines):  # no newline after it: cut short
                break
            raise RunDirError(f"{where}: not JSON: {exc}") from exc
        out.append(_span(raw, where))
    return out


def _span(raw: object, where: str) -> Span:
    if not isinstance(raw, dict):
        raise RunDirError(f"{where}: not a span: a span is a JSON object")
    ctx = raw.get("context")
    if not isinstance(ctx, dict):
        raise RunDirError(f"{where}: not a span: no context object")
    trace_id, span_id = _hex(ctx.get("trace_id")), _hex(ctx.get("span_id"))
    if trace_id is None or span_id is None:
        raise RunDirError(f"{where}: span without trace or span id")
    status = raw.get("status") or {}
    attributes = raw.get("attributes") or {}
    for name, value in (("status", status), ("attributes", attributes)):
        if not isinstance(value, dict):
            raise RunDirError(f"{where}: the span's {name} is not an object")
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=_hex(raw.get("parent_id")),
        name=str(raw.get("name", "")),
        start_ns=_ns(raw.get("start_time"), where),
        end_ns=_ns(raw.get("end_time"), where),
        status=str(status.get("status_code", "UNSET")),
        description=str(status.get("description") or ""),
        attributes=dict(attributes),
    )


def assemble(spans: Iterable[Span], errors: dict[str, int] | None = None) -> list[SessionTrace]:
    """Session traces (root span ``session``) with their children; ``errors`` counts error
    events per trace id (see :func:`scan_events`)."""
    by_id = {s.span_id: s for s in spans}
    for s in sorted(by_id.values(), key=lambda s: s.start_ns):
        parent = by_id.get(s.parent_id) if s.parent_id else None
        if parent is not None:
            parent.children.append(s)
    traces = [
        SessionTrace(
            s,
            str(s.attributes.get("aftershock.tenant", "")),
            str(s.attributes.get("aftershock.session", "")),
            (errors or {}).get(s.trace_id, 0),
        )
        for s in by_id.values()
        if s.name == "session" and s.parent_id is None
    ]
    return sorted(traces, key=lambda t: t.root.start_ns)


def attach_events(traces: Iterable[SessionTrace], events: Iterable[Event]) -> None:
    """Put each session event under the span it names (else under the session's root)."""
    index: dict[str, tuple[SessionTrace, dict[str, Span]]] = {
        t.root.trace_id: (t, {s.span_id: s for s in t.root.walk()}) for t in traces
    }
    for ev in events:
        if ev.trace_id is None or ev.trace_id not in index or not ev.kind.startswith("session."):
            continue
        t, spans = index[ev.trace_id]
        spans.get(ev.span_id or "", t.root).events.append(ev)  # type: ignore[arg-type]


def _is_error(raw: dict[str, object]) -> bool:
    kind = raw.get("kind")
    return kind == "session.error" or (kind == "session.disconnect" and raw.get("by") == "error")


def _raw_events(run_dir: Path) -> Iterator[tuple[str, dict[str, object]]]:
    """The run log's events as plain JSON objects with where each is (for error messages),
    each ``event_id`` once."""
    if run_log_exists(run_dir / EVENTS_DIR):
        try:
            for raw in iter_raw(run_dir / EVENTS_DIR):
                yield f"{run_dir / EVENTS_DIR}", raw
        except EventFileError as exc:
            raise RunDirError(str(exc)) from exc
        return
    path = run_dir / EVENTS_FILE
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise RunDirError(f"cannot read {path}: {exc.strerror}") from exc
    seen: set[object] = set()
    with fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                raw = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise RunDirError(f"{path}:{lineno}: not JSON: {exc}") from exc
            if not isinstance(raw, dict):
                raise RunDirError(f"{path}:{lineno}: not an event object")
            eid = raw.get("event_id")
            if eid in seen:
                continue
            seen.add(eid)
            yield f"{path}:{lineno}", raw


def scan_events(run_dir: Path) -> tuple[list[Event], dict[str, int]]:
    """One quick pass over a run's log: its fault events (validated) and error events per
    trace id (counted from the raw JSON, so a long log is not validated in full)."""
    faults: list[Event] = []
    errors: dict[str, int] = {}
    for where, raw in _raw_events(run_dir):
        kind = raw.get("kind", "")
        if isinstance(kind, str) and kind.startswith("fault."):
            try:
                faults.append(parse_event(raw))
            except ValidationError as exc:
                raise RunDirError(f"{where}: {exc.errors()[0]['msg']}") from exc
        elif _is_error(raw) and isinstance(raw.get("trace_id"), str):
            tid = str(raw["trace_id"])
            errors[tid] = errors.get(tid, 0) + 1
    return faults, errors


def events_of(run_dir: Path, trace_ids: set[str]) -> Iterator[Event]:
    """The events of the given traces, validated; the rest of the log is not validated."""
    for _, raw in _raw_events(run_dir):
        if raw.get("trace_id") in trace_ids:
            yield parse_event(raw)


def select(
    traces: Iterable[SessionTrace],
    *,
    failed: bool = False,
    tenant: str | None = None,
    session: str | None = None,
) -> list[SessionTrace]:
    return [
        t
        for t in traces
        if (not failed or t.failed)
        and (tenant is None or t.tenant == tenant)
        and (session is None or t.session == session)
    ]


def active_at(windows: Iterable[FaultWindow], t_ns: int) -> list[str]:
    """Faults in force at ``t_ns``; windows computed with origin 0 (absolute seconds)."""
    t_s = t_ns / 1e9
    return [w.fault_id for w in windows if w.start_s <= t_s and (w.end_s is None or t_s < w.end_s)]


def _describe(ev: SessionEvent) -> str:
    kind = ev.kind.removeprefix("session.")
    if isinstance(ev, SessionError):
        return f"{kind} {ev.error_class} ({ev.phase}): {ev.message[:120]}"
    if isinstance(ev, Disconnect):
        return f"{kind} by {ev.by} code={ev.code} {ev.reason}".rstrip()
    extra = []
    for name in ("seq", "latency_ms", "connect_ms", "origin_tenant", "checksum_ok", "status"):
        v = getattr(ev, name, None)
        if v is not None:
            extra.append(f"{name}={v:.1f}" if isinstance(v, float) else f"{name}={v}")
    return " ".join([kind, *extra])


def _notable(ev: SessionEvent) -> bool:
    if isinstance(ev, SessionError):
        return True
    if isinstance(ev, Disconnect):
        return ev.by != "client"
    return ev.kind in ("session.connect_start", "session.connected") or (
        getattr(ev, "origin_tenant", None) not in (None, ev.tenant)
    )


def pick_events(events: list[SessionEvent], limit: int) -> tuple[list[SessionEvent], int]:
    """Up to ``limit`` events to show: errors, disconnects, connects and foreign messages
    first, each with the event before it, then the first ones; returns them (in time order)
    and how many were left out."""
    evs = sorted(events, key=lambda e: e.ts_ns)
    if len(evs) <= limit:
        return evs, 0
    chosen: set[int] = set()
    for i, ev in enumerate(evs):
        if len(chosen) >= limit:
            break
        if _notable(ev):
            chosen.update(j for j in (i - 1, i) if j >= 0)
    i = 0
    while len(chosen) < limit and i < len(evs):
        chosen.add(i)
        i += 1
    keep = sorted(chosen)[:limit]
    return [evs[i] for i in keep], len(evs) - len(keep)


def _signature(span: Span, windows: list[FaultWindow]) -> tuple[str, bool, tuple[str, ...]]:
    return (span.name, span.failed, tuple(active_at(windows, span.start_ns)))


def _quiet(span: Span) -> bool:
    """No failure and no notable event anywhere below: safe to fold with its like."""
    return all(not s.failed and not any(_notable(e) for e in s.events) for s in span.walk())


def render_trace(
    t: SessionTrace, windows: list[FaultWindow], *, max_events: int = 8, fold: bool = True
) -> str:
    """The trace as an indented tree. With ``fold``, runs of quiet sibling spans of the same
    name, status and active faults are shown as one line with a count."""
    t0 = t.root.start_ns
    lines = [
        f"trace {t.root.trace_id}  tenant={t.tenant} session={t.session}"
        f"  errors={t.errors}{'  FAILED' if t.failed else ''}"
    ]

    def faults_of(span: Span) -> str:
        faults = active_at(windows, span.start_ns)
        return f"  faults: {', '.join(faults)}" if faults else ""

    def emit(span: Span, prefix: str, branch: str, inner: str) -> None:
        if span.failed:
            status = "ERROR" + (f": {span.description}" if span.description else "")
        else:
            status = "ok"
        lines.append(
            f"{prefix}{branch}{span.name}  +{(span.start_ns - t0) / 1e6:.1f} ms  "
            f"{(span.end_ns - span.start_ns) / 1e6:.1f} ms  {status}{faults_of(span)}"
        )
        shown, left = pick_events(span.events, max_events)
        for ev in shown:
            lines.append(f"{inner}  · +{(ev.ts_ns - t0) / 1e6:.1f} ms {_describe(ev)}")
        if left:
            lines.append(f"{inner}  · ({left} more events)")
        groups: list[list[Span]] = []
        for child in span.children:
            if (
                fold
                and groups
                and _quiet(child)
                and _quiet(groups[-1][-1])
                and _signature(child, windows) == _signature(groups[-1][-1], windows)
            ):
                groups[-1].append(child)
            else:
                groups.append([child])
        for i, group in enumerate(groups):
            last = i == len(groups) - 1
            br, nxt = ("└─ ", "   ") if last else ("├─ ", "│  ")
            if len(group) == 1:
                emit(group[0], inner, br, inner + nxt)
                continue
            first, final = group[0], group[-1]
            lines.append(
                f"{inner}{br}{first.name} ×{len(group)}  +{(first.start_ns - t0) / 1e6:.1f} … "
                f"+{(final.start_ns - t0) / 1e6:.1f} ms  ok{faults_of(first)}"
            )

    emit(t.root, "", "", "")
    return "\n".join(lines)


def load_run(
    run_dir: Path,
    *,
    failed: bool = False,
    tenant: str | None = None,
    session: str | None = None,
    limit: int | None = None,
) -> tuple[list[SessionTrace], list[FaultWindow], int, int]:
    """The matching session traces (at most ``limit``) with their events, the run's fault
    windows, how many traces matched, and how many session traces the run has in all."""
    if not run_dir.is_dir():
        raise RunDirError(f"no such run: {run_dir}")
    spans_path = run_dir / SPANS_FILE
    if not spans_path.exists():
        raise RunDirError(
            f"{run_dir} has no {SPANS_FILE}: tracing was off (AFTERSHOCK_OTEL_EXPORTER=none)"
        )
    faults: list[Event] = []
    errors: dict[str, int] = {}
    logged = has_events(run_dir)
    if logged:
        faults, errors = scan_events(run_dir)
    folded = FaultWindows()
    for ev in sorted(faults, key=lambda e: e.ts_ns):
        if isinstance(ev, FaultChange):
            folded.apply(ev.ts_ns, ev)
    windows = series_windows(folded, 0)
    spans = read_spans(spans_path)
    sut = run_dir / SAMPLE_SPANS
    if sut.exists():  # the system under test continued the sessions' traces
        spans += read_spans(sut)
    traces = assemble(spans, errors)
    matched = select(traces, failed=failed, tenant=tenant, session=session)
    chosen = matched if limit is None else matched[:limit]
    if chosen and logged:
        attach_events(chosen, events_of(run_dir, {t.root.trace_id for t in chosen}))
    return chosen, windows, len(matched), len(traces)
