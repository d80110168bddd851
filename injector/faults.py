"""One fault's life on the server: its runtime record and checked state transitions."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from injector.errors import InjectorError
from injector.journal import ALLOWED, FaultRecord, FaultState
from schemas.events import ToxicSpec

if TYPE_CHECKING:
    from opentelemetry import trace

    from injector.controller import ToxicInfo
    from schemas.experiment import Fault


@dataclass
class FaultRun:
    """Runtime state of one fault (from the timeline or a chaostoxi action)."""

    fault_id: str
    proxy: str
    kind: Literal["toxic", "down"]
    source: Literal["timeline", "chaostoxi"] = "timeline"
    fault: Fault | None = None
    state: FaultState = FaultState.PENDING
    planned_at_s: float | None = None
    planned_duration_s: float | None = None
    injected_at_s: float | None = None
    jitter_ms: float | None = None
    apply_ms: float | None = None
    reverted_at_s: float | None = None
    revert_jitter_ms: float | None = None
    revert_ms: float | None = None
    lease_ttl_ms: int | None = None
    lease_renewals: int = 0
    reapplied: int = 0
    error: str | None = None
    toxic_type: str | None = None
    span: trace.Span | None = field(default=None, repr=False)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    """Held while the fault changes on the server, so a lease renewal never races a revert."""

    def to(self, new: FaultState) -> None:
        if new not in ALLOWED[self.state]:
            raise InjectorError(f"fault {self.fault_id}: {self.state} → {new} is not allowed")
        self.state = new

    def record(self) -> FaultRecord:
        return FaultRecord(
            fault_id=self.fault_id,
            proxy=self.proxy,
            kind=self.kind,
            source=self.source,
            toxic_name=self.fault_id if self.kind == "toxic" else None,
            toxic_type=self.toxic_type,
            state=self.state,
            planned_at_s=self.planned_at_s,
            planned_duration_s=self.planned_duration_s,
            injected_at_s=self.injected_at_s,
            jitter_ms=self.jitter_ms,
            apply_ms=self.apply_ms,
            reverted_at_s=self.reverted_at_s,
            revert_jitter_ms=self.revert_jitter_ms,
            revert_ms=self.revert_ms,
            lease_ttl_ms=self.lease_ttl_ms,
            lease_renewals=self.lease_renewals,
            reapplied=self.reapplied,
            error=self.error,
        )


def toxic_spec(info: ToxicInfo) -> ToxicSpec:
    """The event form of a toxic as the server reported it."""
    attrs = {
        k: v for k, v in info.attributes.items() if isinstance(v, int | float | str | bool | list)
    }
    stream = "upstream" if info.stream.lower() == "upstream" else "downstream"
    return ToxicSpec(
        name=info.name, type=info.type, stream=stream, toxicity=info.toxicity, attributes=attrs
    )
