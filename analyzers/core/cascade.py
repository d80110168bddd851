"""Cascade propagation: how a fault on one target spread to the targets that depend on it.

The dependency graph is the union of the experiment's ``depends_on`` edges and the caller →
callee edges seen in traces (a span whose parent span belongs to another service). A fault on
proxy P originates at the target fronted by P (or the target named P). Its **hops** are the
targets — the origin and everything depending on it, directly or not — with a failure episode
attributed to the fault (one that began while it was active, or as its after-effect within
``after_effect_s`` of its end), ordered by when the episode began, each marked ``during`` or
``after`` (it began after the fault took effect and was lifted); ``via`` is the dependency of a hop
that failed before it in the same cascade (earliest first) and ``hop_delay_ms`` the time since
that one failed. The **blast radius** counts the targets that failed and the tenants and
sessions that observed a failure on them while the fault was active or while an episode
attributed to it was open. A cascade is **contained** when no target other than the origin
failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Iterable

    from analyzers.core.health import Episode
    from schemas.targets import TargetGraph


class DependencyGraph:
    def __init__(self, graph: TargetGraph | None) -> None:
        self._deps: dict[str, set[str]] = {}
        self._proxy_to_target: dict[str, str] = {}
        self.known = graph is not None
        if graph is not None:
            for t in graph.targets:
                self._deps.setdefault(t.name, set()).update(t.depends_on)
                if t.proxy:
                    self._proxy_to_target[t.proxy] = t.name

    def add_edge(self, caller: str, callee: str) -> bool:
        """Record that ``caller`` calls ``callee``; True when the edge is new."""
        if caller == callee:
            return False
        deps = self._deps.setdefault(caller, set())
        if callee in deps:
            return False
        deps.add(callee)
        self.known = True
        return True

    def depends_on(self, name: str) -> set[str]:
        return self._deps.get(name, set())

    def origin_of(self, proxy: str) -> str:
        return self._proxy_to_target.get(proxy, proxy)

    def dependents_closure(self, origin: str) -> set[str]:
        """Every target that calls ``origin``, directly or through others."""
        out: set[str] = set()
        frontier = [origin]
        while frontier:
            n = frontier.pop()
            for caller, deps in self._deps.items():
                if n in deps and caller not in out:
                    out.add(caller)
                    frontier.append(caller)
        return out

    def edges(self) -> list[tuple[str, str]]:
        return sorted((c, d) for c, ds in self._deps.items() for d in ds)


@dataclass
class Blast:
    targets: set[str] = field(default_factory=set)
    tenants: set[str] = field(default_factory=set)
    sessions: set[tuple[str, ...]] = field(default_factory=set)
    """Whole session identities (run, generator, target, session)."""


@dataclass(frozen=True)
class Hop:
    target: str
    failed_after_ns: int
    via: str | None
    hop_delay_ns: int | None
    relation: Literal["during", "after"]


def hops_for(
    fault_id: str,
    fault_start_ns: int,
    fault_end_ns: int | None,
    origin: str,
    graph: DependencyGraph,
    target_episodes: Iterable[Episode],
) -> list[Hop]:
    """The cascade of one fault (effective start and end) from the target-scope episodes
    attributed to it."""
    scope = graph.dependents_closure(origin) | {origin} if graph.known else None
    first: dict[str, int] = {}
    for ep in target_episodes:
        if fault_id not in ep.faults_active and fault_id not in ep.faults_after:
            continue
        if scope is not None and ep.key not in scope:
            continue
        if ep.key not in first or ep.started_ns < first[ep.key]:
            first[ep.key] = ep.started_ns
    ordered = sorted(first.items(), key=lambda kv: (kv[1], kv[0]))
    hops: list[Hop] = []
    failed: dict[str, int] = {}
    for target, started in ordered:
        candidates = [(failed[d], d) for d in sorted(graph.depends_on(target)) if d in failed]
        via: str | None = None
        delay: int | None = None
        if candidates:
            t_via, via = min(candidates)
            delay = started - t_via
        elif origin in graph.depends_on(target):
            via = origin
        after = fault_end_ns is not None and started >= fault_end_ns
        hops.append(
            Hop(
                target, max(0, started - fault_start_ns), via, delay, "after" if after else "during"
            )
        )
        failed[target] = started
    return hops
