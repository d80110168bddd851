"""Fault windows: when each fault was active, from injector and proxy events alike.

A window is kept per (proxy, toxic name), and per proxy for "proxy disabled". It opens at the
first ``fault.toxic_added``/``fault.toxic_updated`` (or ``fault.proxy_disabled``) seen from any
source and closes at the first ``fault.toxic_removed`` (or ``fault.proxy_enabled``, or
``fault.proxy_deleted``); the same change reported by both the injector and the proxy is
counted once. A window is named by its ``fault_id`` when any event carried one, else by the
toxic name (the injector names toxics after fault ids) or ``<proxy>:disabled``.
"""

from __future__ import annotations

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

    def active_at(self, t: int) -> bool:
        return self.started_ns <= t and (self.ended_ns is None or t < self.ended_ns)


class FaultWindows:
    def __init__(self) -> None:
        self._open: dict[tuple[str, str], FaultWindow] = {}
        self.windows: list[FaultWindow] = []
        self._active_cache: tuple[int, list[str]] | None = None

    def apply(self, t: int, ev: FaultChange) -> FaultWindow | None:
        """Fold one fault event; returns the window it opened, if any."""
        self._active_cache = None
        if isinstance(ev, ToxicAdded | ToxicUpdated):
            return self._open_window(
                t, ev.proxy, ev.toxic.name, ev.fault_id, ev.toxic.type, ev.source
            )
        if isinstance(ev, ProxyDisabled):
            return self._open_window(
                t, ev.proxy, DISABLED, ev.fault_id, "proxy_disabled", ev.source
            )
        if isinstance(ev, ToxicRemoved):
            self._close(t, (ev.proxy, ev.toxic_name))
        elif isinstance(ev, ProxyEnabled):
            self._close(t, (ev.proxy, DISABLED))
        else:
            for key in [k for k in self._open if k[0] == ev.proxy]:
                self._close(t, key)
        return None

    def _open_window(
        self, t: int, proxy: str, toxic: str, fault_id: str | None, ftype: str, source: str
    ) -> FaultWindow | None:
        key = (proxy, toxic)
        w = self._open.get(key)
        if w is not None:
            w.sources.add(source)
            if fault_id and w.fault_id != fault_id and not w.fault_id_from_event:
                w.fault_id = fault_id
                w.fault_id_from_event = True
            return None
        name = fault_id or (toxic if toxic else f"{proxy}:disabled")
        w = FaultWindow(
            proxy, toxic, name, ftype, t, sources={source}, fault_id_from_event=bool(fault_id)
        )
        self._open[key] = w
        self.windows.append(w)
        return w

    def _close(self, t: int, key: tuple[str, str]) -> None:
        w = self._open.pop(key, None)
        if w is not None:
            w.ended_ns = max(t, w.started_ns)

    def active_at(self, t: int) -> list[str]:
        """Fault ids active at ``t``, in the order they began."""
        cache = self._active_cache
        if cache is not None and cache[0] == t:
            return cache[1]
        out = [w.fault_id for w in self.windows if w.active_at(t)]
        self._active_cache = (t, out)
        return out

    def active_windows_at(self, t: int) -> list[FaultWindow]:
        return [w for w in self.windows if w.active_at(t)]

    def by_id(self, fault_id: str) -> list[FaultWindow]:
        return [w for w in self.windows if w.fault_id == fault_id]
