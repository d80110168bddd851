"""Targets: the services under test, how they are reached, and what depends on what."""

from __future__ import annotations

from collections import Counter

from pydantic import Field, field_validator, model_validator

from schemas.address import split_address
from schemas.base import Frozen, Identifier, Protocol


def _check_address(value: str, *, port_zero: bool) -> None:
    try:
        split_address(value, port_zero=port_zero)
    except ValueError as exc:
        raise ValueError(f"invalid address {value!r}: {exc}") from None


class Target(Frozen):
    """A service under test.

    ``upstream`` is where the real service listens (``host:port`` or ``[IPv6]:port``, as
    :func:`~schemas.address.split_address` reads it). When ``proxy`` is set, load
    and dependent services reach it through that fault-proxy listener (``listen``) instead, so
    faults can be put in the path. ``depends_on`` names the targets this one calls; it is the
    dependency graph cascade analysis walks.
    """

    name: Identifier
    upstream: str = Field(description="host:port or [IPv6 address]:port, port 1-65535")
    protocol: Protocol = Protocol.TCP
    proxy: Identifier | None = None
    listen: str | None = Field(
        default=None, description="host:port or [IPv6 address]:port, port 0-65535 (0: any free)"
    )
    path: str = "/"
    depends_on: list[Identifier] = Field(default_factory=list)

    @field_validator("upstream")
    @classmethod
    def _dialable(cls, value: str) -> str:
        _check_address(value, port_zero=False)
        return value

    @field_validator("listen")
    @classmethod
    def _bindable(cls, value: str | None) -> str | None:
        if value is not None:
            _check_address(value, port_zero=True)
        return value

    @property
    def address(self) -> str:
        """Where clients connect: the proxy listener when fronted, else the upstream."""
        return self.listen if self.proxy and self.listen else self.upstream


class TargetGraph(Frozen):
    targets: list[Target]

    @model_validator(mode="after")
    def _check_graph(self) -> TargetGraph:
        names = [t.name for t in self.targets]
        dupes = sorted(n for n, count in Counter(names).items() if count > 1)
        if dupes:
            raise ValueError(f"duplicate target names: {', '.join(dupes)}")
        known = set(names)
        for t in self.targets:
            missing = [d for d in t.depends_on if d not in known]
            if missing:
                raise ValueError(f"target {t.name!r} depends on unknown {', '.join(missing)}")
        # A cycle would make cascade order meaningless. Depth first, with a stack of its own:
        # a chain of dependencies may be longer than Python's recursion limit.
        deps = {t.name: t.depends_on for t in self.targets}
        done: set[str] = set()
        for root in names:
            if root in done:
                continue
            path, on_path, todo = [root], {root}, [iter(deps[root])]
            while todo:
                d = next(todo[-1], None)
                if d is None:
                    on_path.discard(path[-1])
                    done.add(path.pop())
                    todo.pop()
                elif d in on_path:
                    raise ValueError("dependency cycle: " + " -> ".join([*path, d]))
                elif d not in done:
                    path.append(d)
                    on_path.add(d)
                    todo.append(iter(deps[d]))
        return self

    def dependents_of(self, name: str) -> list[str]:
        """Targets that call ``name`` directly."""
        return [t.name for t in self.targets if name in t.depends_on]
