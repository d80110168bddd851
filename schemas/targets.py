"""Targets: the services under test, how they are reached, and what depends on what."""

from __future__ import annotations

from pydantic import Field, model_validator

from schemas.base import Frozen, Identifier, Protocol


class Target(Frozen):
    """A service under test.

    ``upstream`` is where the real service listens (``host:port``). When ``proxy`` is set, load
    and dependent services reach it through that fault-proxy listener (``listen``) instead, so
    faults can be put in the path. ``depends_on`` names the targets this one calls; it is the
    dependency graph cascade analysis walks.
    """

    name: Identifier
    upstream: str = Field(pattern=r"^[^\s:]+:\d{1,5}$")
    protocol: Protocol = Protocol.TCP
    proxy: Identifier | None = None
    listen: str | None = Field(default=None, pattern=r"^[^\s:]+:\d{1,5}$")
    path: str = "/"
    depends_on: list[Identifier] = Field(default_factory=list)

    @property
    def address(self) -> str:
        """Where clients connect: the proxy listener when fronted, else the upstream."""
        return self.listen if self.proxy and self.listen else self.upstream


class TargetGraph(Frozen):
    targets: list[Target]

    @model_validator(mode="after")
    def _check_graph(self) -> TargetGraph:
        names = [t.name for t in self.targets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate target names: {', '.join(dupes)}")
        known = set(names)
        for t in self.targets:
            missing = [d for d in t.depends_on if d not in known]
            if missing:
                raise ValueError(f"target {t.name!r} depends on unknown {', '.join(missing)}")
        # A cycle would make cascade order meaningless.
        state: dict[str, int] = {}
        deps = {t.name: t.depends_on for t in self.targets}

        def visit(n: str, path: list[str]) -> None:
            if state.get(n) == 1:
                raise ValueError("dependency cycle: " + " -> ".join([*path, n]))
            if state.get(n) == 2:
                return
            state[n] = 1
            for d in deps[n]:
                visit(d, [*path, n])
            state[n] = 2

        for n in names:
            visit(n, [])
        return self

    def dependents_of(self, name: str) -> list[str]:
        """Targets that call ``name`` directly."""
        return [t.name for t in self.targets if name in t.depends_on]
