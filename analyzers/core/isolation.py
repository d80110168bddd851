"""Isolation violations: messages that reached a session they must never reach.

A **tenant violation** is a ``session.receive`` whose stamp names an origin tenant other than
the receiving session's tenant. A **user violation** is a private message — an echo or
response, i.e. a receive without a channel — whose stamp names another origin session of the
same tenant. Broadcasts within a tenant (a channel is set, the tenants match) are the
legitimate fan-out and are never flagged, nor is a receive whose stamp failed its checksum. A
**subscription violation** is a same-tenant channel message reaching a session that never
subscribed to that channel (``session.subscribed``; subscriptions add up over the session's
reconnects). It is judged only for sessions whose generator records subscriptions (any
``session.subscribed`` from that generator in that run): older logs carry none. The
origin's trace id comes from the origin's ``session.send`` (kept for a bounded time) or,
failing that, the origin session's last trace.

Violations are reported in **groups**: one per (kind, target, origin tenant, victim tenant,
faults active, faults after), with the exact count, the first and last time and a few
examples (:class:`ViolationGroup`); only those examples are kept in memory.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Callable

    from analyzers.core.events import Receive, Send, Subscribed
    from analyzers.core.integrity import SessionKey


@dataclass(frozen=True)
class Violation:
    violation: Literal["tenant", "user", "subscription"]
    t: int
    target: str
    victim_tenant: str
    victim_user: str
    victim_session: str
    victim_trace_id: str | None
    origin_tenant: str
    origin_user: str | None
    origin_session: str | None
    origin_trace_id: str | None
    origin_seq: int | None
    faults_active: list[str]
    source_event_id: str
    faults_after: list[str]
    channel: str | None


def group_key(v: Violation) -> str:
    """The group a violation belongs to: ``kind/target/origin>victim/during/after`` (fault
    ids joined by ``+``, ``-`` for none)."""
    return (
        f"{v.violation}/{v.target}/{v.origin_tenant}>{v.victim_tenant}/"
        f"{'+'.join(v.faults_active) or '-'}/{'+'.join(v.faults_after) or '-'}"
    )


@dataclass
class ViolationGroup:
    """Every violation of one :func:`group_key`: counted exactly, the first few kept."""

    key: str
    like: Violation
    """The group's first violation: its kind, target, tenants and faults are the group's."""
    count: int
    first_ns: int
    last_ns: int
    examples: list[Violation]
    """The first violations of the group, at most the example cap."""
    traces: list[str]
    """Distinct victim trace ids of its first violations that have one, at most the cap."""
    sessions: list[str]
    """Its first distinct victim sessions, at most the cap."""

    def add(self, v: Violation, cap: int) -> None:
        self.count += 1
        self.first_ns = min(self.first_ns, v.t)
        self.last_ns = max(self.last_ns, v.t)
        if len(self.examples) < cap:
            self.examples.append(v)
        if v.victim_trace_id and len(self.traces) < cap and v.victim_trace_id not in self.traces:
            self.traces.append(v.victim_trace_id)
        if len(self.sessions) < cap and v.victim_session not in self.sessions:
            self.sessions.append(v.victim_session)


class IsolationTracker:
    def __init__(self, remember_ns: int, examples: int) -> None:
        self._remember_ns = remember_ns
        self._examples = examples
        # Keyed by (run, target, session): what a stamp's origin can be matched on.
        self._send_traces: dict[tuple[str, str, str, int], str] = {}
        self._order: deque[tuple[int, tuple[str, str, str, int]]] = deque()
        self._session_trace: dict[tuple[str, str, str], str] = {}
        self._subscriptions: dict[SessionKey, set[str]] = {}
        self._reporting: set[tuple[str, str]] = set()
        """(run, generator) that record subscriptions."""
        self.groups: dict[str, ViolationGroup] = {}
        self.seen: list[tuple[int, str]] = []
        """(time, target) of every violation: what the SLOs count, by target and phase."""

    def subscribed(self, ev: Subscribed) -> None:
        key = (ev.run_id, ev.generator_id, ev.target, ev.session)
        self._subscriptions.setdefault(key, set()).update(ev.channels)
        self._reporting.add((ev.run_id, ev.generator_id))

    def send(self, t: int, ev: Send) -> None:
        if ev.trace_id is None:
            return
        key = (ev.run_id, ev.target, ev.session, ev.seq)
        self._send_traces[key] = ev.trace_id
        self._session_trace[(ev.run_id, ev.target, ev.session)] = ev.trace_id
        self._order.append((t, key))
        horizon = t - self._remember_ns
        order = self._order
        while order and order[0][0] < horizon:
            self._send_traces.pop(order.popleft()[1], None)

    def receive(
        self, t: int, ev: Receive, faults: list[str], faults_after: Callable[[int], list[str]]
    ) -> Violation | None:
        origin_tenant = ev.origin_tenant
        if origin_tenant is None or ev.checksum_ok is False:
            return None  # a corrupted stamp's origin cannot be trusted
        kind: Literal["tenant", "user", "subscription"]
        if origin_tenant != ev.tenant:
            kind = "tenant"
        elif (
            ev.channel is None and ev.origin_session is not None and ev.origin_session != ev.session
        ):
            kind = "user"
        elif (
            ev.channel is not None
            and (ev.run_id, ev.generator_id) in self._reporting
            and ev.channel
            not in self._subscriptions.get((ev.run_id, ev.generator_id, ev.target, ev.session), ())
        ):
            kind = "subscription"
        else:
            return None
        origin_trace = None
        if ev.origin_session is not None:
            if ev.origin_seq is not None:
                origin_trace = self._send_traces.get(
                    (ev.run_id, ev.target, ev.origin_session, ev.origin_seq)
                )
            if origin_trace is None:
                origin_trace = self._session_trace.get((ev.run_id, ev.target, ev.origin_session))
        v = Violation(
            violation=kind,
            t=t,
            target=ev.target,
            victim_tenant=ev.tenant,
            victim_user=ev.user,
            victim_session=ev.session,
            victim_trace_id=ev.trace_id,
            origin_tenant=origin_tenant,
            origin_user=ev.origin_user,
            origin_session=ev.origin_session,
            origin_trace_id=origin_trace,
            origin_seq=ev.origin_seq,
            faults_active=list(faults),
            source_event_id=ev.event_id,
            faults_after=faults_after(t),
            channel=ev.channel,
        )
        self.seen.append((t, v.target))
        key = group_key(v)
        g = self.groups.get(key)
        if g is None:
            g = self.groups[key] = ViolationGroup(key, v, 0, t, t, [], [], [])
        g.add(v, self._examples)
        return v
