"""Fault windows: when each fault was active, from injector and proxy events alike.

A window is kept per (proxy, toxic name), and per proxy for "proxy disabled". It opens at the
first ``fault.toxic_added``/``fault.toxic_updated`` (or ``fault.proxy_disabled``) seen from any
source and closes at the first ``fault.toxic_removed`` (or ``fault.proxy_enabled``, or
``fault.proxy_deleted``); the same change reported by both the injector and the proxy is
counted once. A window is named by its ``fault_id`` when any event carried one, else by the
toxic name (the injector names toxics after fault ids) or ``<proxy>:disabled``.

When the fault took effect. The fault proxy reports a change at the moment it made it; the
injector stamps its event with the time it sent the request (before the API call), which is
all a stock Toxiproxy leaves. A window is *active* (faults are attributed to what happens in
it) from the first event of either source, so nothing that happened after the request left is
missed; its **effective** start and end — what time to impact, time to recover and the
cascade's times are measured from — are the proxy's own times when it reported the change,
else the injector's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from schemas.events import (
    ProxyDeleted,
    ProxyDisabled,
    ProxyEnabled,
    ToxicAdded,
    ToxicRemoved,
    ToxicUpdated,
)

DISABLED = ""
FaultChange = ProxyDisabled | ProxyEnabled | ProxyDeleted | ToxicAdded | ToxicUpdated | ToxicRemoved


@dataclass
class FaultWindow:
    proxy: str
    toxic: str
    fault_id: str
    fault_type: str
    started_ns: int
    ended_ns: int | None = None
    sources: set[str] = field(default_factory=set)
    fault_id_from_event: bool = False
    proxy_started_ns: int | None = None
    proxy_ended_ns: int | None = None

    def active_at(self, t: int) -> bool:
        return self.started_ns <= t and (self.ended_ns is None or t < self.ended_ns)

    @property
    def effective_start_ns(self) -> int:
        """When the fault took effect: the proxy's time if it reported, else the injector's."""
        return self.proxy_started_ns if self.proxy_started_ns is not None else self.started_ns

    @property
    def effective_end_ns(self) -> int | None:
        """When the fault was lifted (None: still active), by the same rule."""
        if self.ended_ns is None:
            return None
        end = self.proxy_ended_ns if self.proxy_ended_ns is not None else self.ended_ns
        return max(end, self.effective_start_ns)


class FaultWindows:
    _active_span: tuple[float, float, list[str]] | None = None  # absent from older snapshots

    def __init__(self) -> None:
        self._open: dict[tuple[str, str], FaultWindow] = {}
        self._closed: dict[tuple[str, str], FaultWindow] = {}
        """The last closed window per key: the proxy's report of the same revert lands here."""
        self.windows: list[FaultWindow] = []
        self._active_span = None
        """``(lo, hi, ids)``: the ids :meth:`active_at` gives for any time in ``[lo, hi)``."""

    def apply(self, t: int, ev: FaultChange) -> FaultWindow | None:
        """Fold one fault event; returns the window it opened, if any."""
        self._active_span = None
        if isinstance(ev, ToxicAdded | ToxicUpdated):
            return self._open_window(
                t, ev.proxy, ev.toxic.name, ev.fault_id, ev.toxic.type, ev.source
            )
        if isinstance(ev, ProxyDisabled):
            return self._open_window(
                t, ev.proxy, DISABLED, ev.fault_id, "proxy_disabled", ev.source
            )
        by_proxy = ev.source == "proxy"
        if isinstance(ev, ToxicRemoved):
            self._close(t, (ev.proxy, ev.toxic_name), by_proxy)
        elif isinstance(ev, ProxyEnabled):
            self._close(t, (ev.proxy, DISABLED), by_proxy)
        else:
            keys = {k for k in (*self._open, *self._closed) if k[0] == ev.proxy}
            for key in sorted(keys):
                self._close(t, key, by_proxy)
        return None

    def _open_window(
        self, t: int, proxy: str, toxic: str, fault_id: str | None, ftype: str, source: str
    ) -> FaultWindow | None:
        key = (proxy, toxic)
        w = self._open.get(key)
        if w is not None:
            w.sources.add(source)
            if source == "proxy" and w.proxy_started_ns is None:
                w.proxy_started_ns = t
            if fault_id and w.fault_id != fault_id and not w.fault_id_from_event:
                w.fault_id = fault_id
                w.fault_id_from_event = True
            return None
        name = fault_id or (toxic if toxic else f"{proxy}:disabled")
        w = FaultWindow(
            proxy, toxic, name, ftype, t, sources={source}, fault_id_from_event=bool(fault_id)
        )
        if source == "proxy":
            w.proxy_started_ns = t
        self._open[key] = w
        self._closed.pop(key, None)
        self.windows.append(w)
        return w

    def _close(self, t: int, key: tuple[str, str], by_proxy: bool) -> None:
        w = self._open.pop(key, None)
        if w is not None:
            w.ended_ns = max(t, w.started_ns)
            self._closed[key] = w
        else:
            w = self._closed.get(key)
            if w is None:
                return
        if by_proxy and w.proxy_ended_ns is None:
            w.proxy_ended_ns = t

    def active_at(self, t: int) -> list[str]:
        """Fault ids active at ``t``, in the order they began (the list is shared: read only)."""
        span = self._active_span
        if span is not None and span[0] <= t < span[1]:
            return span[2]
        # The answer holds from the latest window bound at or before t to the first after it.
        lo: float = -math.inf
        hi: float = math.inf
        out: list[str] = []
        for w in self.windows:
            start, end = w.started_ns, w.ended_ns
            if start <= t:
                lo = max(lo, start)
                if end is None or t < end:
                    out.append(w.fault_id)
            else:
                hi = min(hi, start)
            if end is not None:
                if end <= t:
                    lo = max(lo, end)
                else:
                    hi = min(hi, end)
        self._active_span = (lo, hi, out)
        return out

    def after_effect_at(self, t: int, after_ns: int) -> list[str]:
        """With no fault active at ``t``, the fault ids that ended less than ``after_ns``
        before it (what begins then is their after-effect), in the order they began."""
        if self.active_at(t):
            return []
        out: list[str] = []
        for w in self.windows:
            end = w.ended_ns
            if end is not None and end <= t < end + after_ns and w.fault_id not in out:
                out.append(w.fault_id)
        return out

    def active_windows_at(self, t: int) -> list[FaultWindow]:
        return [w for w in self.windows if w.active_at(t)]

    def by_id(self, fault_id: str) -> list[FaultWindow]:
        return [w for w in self.windows if w.fault_id == fault_id]
