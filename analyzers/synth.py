"""A synthetic, realistic event stream for benchmarks and soak tests of the analyzers.

Sessions of several tenants send echo and broadcast messages at a steady rate, replies come
back after a few ms, and a fault window makes one target fail for a while. Deterministic for a
given seed; event time advances by ``1 / rate`` per event.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from schemas.events import Receive, Send, SessionError, ToxicAdded, ToxicRemoved, ToxicSpec

if TYPE_CHECKING:
    from collections.abc import Iterator

    from schemas.events import Event

T0_NS = 1_700_000_000_000_000_000


def synthetic_events(
    n: int,
    *,
    experiment_id: str = "bench",
    rate_per_s: float = 10_000.0,
    sessions: int = 200,
    tenants: int = 4,
    fault_every_s: float = 60.0,
    fault_for_s: float = 10.0,
    seed: int = 1,
    start_ns: int = T0_NS,
) -> Iterator[Event]:
    """``n`` events, in time order, as generators and the injector would record them."""
    rng = random.Random(seed)
    step_ns = int(1e9 / rate_per_s)
    seqs = [0] * sessions
    names = [f"s{i}" for i in range(sessions)]
    tenant_of = [f"t{i % tenants}" for i in range(sessions)]
    targets = ["gateway", "raw"]
    t = start_ns
    made = 0
    fault_on = False
    next_fault = start_ns + int(fault_every_s * 1e9 / 2)
    common: dict[str, Any] = {"experiment_id": experiment_id, "run_id": "r1"}
    while made < n:
        if not fault_on and t >= next_fault:
            fault_on = True
            yield ToxicAdded.model_construct(
                **common,
                event_id=f"{t:016x}d{made:015x}",
                generator_id="injector",
                ts_ns=t,
                mono_ns=t - start_ns + 1,
                kind="fault.toxic_added",
                proxy="gateway",
                source="injector",
                fault_id=f"f{made}",
                toxic=ToxicSpec(name=f"f{made}", type="reset_peer"),
                ttl_ms=None,
                trace_id=None,
                span_id=None,
                schema_version=1,
            )
            fault_name = f"f{made}"
            made += 1
        elif fault_on and t >= next_fault + int(fault_for_s * 1e9):
            fault_on = False
            next_fault += int(fault_every_s * 1e9)
            yield ToxicRemoved.model_construct(
                **common,
                event_id=f"{t:016x}e{made:015x}",
                generator_id="injector",
                ts_ns=t,
                mono_ns=t - start_ns + 1,
                kind="fault.toxic_removed",
                proxy="gateway",
                source="injector",
                fault_id=None,
                toxic_name=fault_name,
                reason="api",
                trace_id=None,
                span_id=None,
                schema_version=1,
            )
            made += 1
        i = rng.randrange(sessions)
        session = names[i]
        tenant = tenant_of[i]
        target = targets[i % 2]
        seq = seqs[i]
        seqs[i] = seq + 1
        base: dict[str, Any] = {
            **common,
            "generator_id": f"g{i % 2}",
            "mono_ns": t - start_ns + 1,
            "tenant": tenant,
            "user": f"u{i}",
            "session": session,
            "target": target,
            "protocol": "ws",
            "trace_id": None,
            "span_id": None,
            "schema_version": 1,
        }
        yield Send.model_construct(
            **base,
            event_id=f"{t:016x}a{made:015x}",
            ts_ns=t,
            kind="session.send",
            seq=seq,
            bytes=128,
            channel=None,
            expect="echo",
        )
        made += 1
        t += step_ns
        if fault_on and target == "gateway":
            yield SessionError.model_construct(
                **base,
                event_id=f"{t:016x}c{made:015x}",
                ts_ns=t,
                kind="session.error",
                error_class="ConnectionReset",
                message="reset by peer",
                phase="receive",
                seq=seq,
            )
        else:
            yield Receive.model_construct(
                **base,
                event_id=f"{t:016x}b{made:015x}",
                ts_ns=t,
                kind="session.receive",
                seq=None,
                bytes=128,
                latency_ms=rng.uniform(1, 20),
                origin_tenant=tenant,
                origin_user=f"u{i}",
                origin_session=session,
                origin_seq=seq,
                checksum_ok=True,
                status=None,
                channel=None,
            )
        made += 1
        t += step_ns
