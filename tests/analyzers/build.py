"""Builders for golden event sequences: times are given in ms since a fixed origin."""

from __future__ import annotations

from typing import Any, Literal

from schemas.events import (
    Connected,
    Event,
    ExperimentPhase,
    ProxyDisabled,
    ProxyEnabled,
    Receive,
    Send,
    SessionError,
    ToxicAdded,
    ToxicRemoved,
    ToxicSpec,
)

T0 = 1_700_000_000_000_000_000
EXP = "exp-1"


def ns(t_ms: float) -> int:
    return T0 + round(t_ms * 1e6)


def _common(t_ms: float, gen: str, mono_ms: float | None) -> dict[str, Any]:
    return {
        "experiment_id": EXP,
        "run_id": "run-1",
        "generator_id": gen,
        "ts_ns": ns(t_ms),
        "mono_ns": 0 if mono_ms is None else round(mono_ms * 1e6),
    }


def _sess(
    t_ms: float,
    session: str,
    tenant: str,
    target: str,
    user: str | None,
    gen: str,
    mono_ms: float | None,
) -> dict[str, Any]:
    return {
        **_common(t_ms, gen, mono_ms),
        "tenant": tenant,
        "user": user or f"{session}-user",
        "session": session,
        "target": target,
        "protocol": "ws",
    }


def ok(
    t_ms: float,
    session: str = "s1",
    tenant: str = "a",
    target: str = "gw",
    *,
    gen: str = "g1",
    mono_ms: float | None = None,
    latency_ms: float | None = None,
) -> Receive:
    return Receive(
        **_sess(t_ms, session, tenant, target, None, gen, mono_ms), bytes=10, latency_ms=latency_ms
    )


def fail(
    t_ms: float,
    session: str = "s1",
    tenant: str = "a",
    target: str = "gw",
    cls: str = "timeout",
    *,
    gen: str = "g1",
    mono_ms: float | None = None,
) -> SessionError:
    return SessionError(
        **_sess(t_ms, session, tenant, target, None, gen, mono_ms), error_class=cls, message=cls
    )


def connected(t_ms: float, session: str = "s1", tenant: str = "a", target: str = "gw") -> Connected:
    return Connected(**_sess(t_ms, session, tenant, target, None, "g1", None), connect_ms=1.0)


def send(
    t_ms: float,
    seq: int,
    session: str = "s1",
    tenant: str = "a",
    target: str = "gw",
    *,
    user: str | None = None,
    expect: Literal["echo", "broadcast", "response", "none"] = "echo",
    channel: str | None = None,
    trace: str | None = None,
) -> Send:
    return Send(
        **_sess(t_ms, session, tenant, target, user, "g1", None),
        seq=seq,
        bytes=10,
        expect=expect,
        channel=channel,
        trace_id=trace,
    )


def receive(
    t_ms: float,
    session: str,
    origin_session: str,
    origin_seq: int,
    tenant: str = "a",
    origin_tenant: str | None = None,
    target: str = "gw",
    *,
    user: str | None = None,
    origin_user: str | None = None,
    channel: str | None = None,
    checksum_ok: bool | None = True,
    latency_ms: float | None = None,
    trace: str | None = None,
) -> Receive:
    return Receive(
        **_sess(t_ms, session, tenant, target, user, "g1", None),
        bytes=10,
        origin_tenant=origin_tenant or tenant,
        origin_user=origin_user or f"{origin_session}-user",
        origin_session=origin_session,
        origin_seq=origin_seq,
        checksum_ok=checksum_ok,
        channel=channel,
        latency_ms=latency_ms,
        trace_id=trace,
    )


def toxic_added(
    t_ms: float,
    proxy: str,
    name: str,
    ttype: str = "timeout",
    source: Literal["injector", "proxy", "api"] = "injector",
    fault_id: str | None = None,
    gen: str = "injector",
) -> ToxicAdded:
    return ToxicAdded(
        **_common(t_ms, gen, None),
        proxy=proxy,
        source=source,
        fault_id=fault_id,
        toxic=ToxicSpec(name=name, type=ttype),
    )


def toxic_removed(
    t_ms: float,
    proxy: str,
    name: str,
    source: Literal["injector", "proxy", "api"] = "injector",
    gen: str = "injector",
) -> ToxicRemoved:
    return ToxicRemoved(**_common(t_ms, gen, None), proxy=proxy, source=source, toxic_name=name)


def disabled(t_ms: float, proxy: str, fault_id: str | None = None) -> ProxyDisabled:
    return ProxyDisabled(
        **_common(t_ms, "injector", None), proxy=proxy, source="injector", fault_id=fault_id
    )


def enabled(t_ms: float, proxy: str) -> ProxyEnabled:
    return ProxyEnabled(**_common(t_ms, "injector", None), proxy=proxy, source="injector")


def phase(t_ms: float, name: str) -> ExperimentPhase:
    return ExperimentPhase(**_common(t_ms, "injector", None), phase=name)


def probe(
    start_ms: float,
    end_ms: float,
    down: list[tuple[float, float]],
    *,
    session: str = "s1",
    tenant: str = "a",
    target: str = "gw",
    every_ms: float = 100.0,
    cls: str = "timeout",
) -> list[Event]:
    """One observation every ``every_ms`` from start to end inclusive; failed inside ``down``
    (half-open ranges)."""
    out: list[Event] = []
    n = round((end_ms - start_ms) / every_ms)
    for i in range(n + 1):
        t = start_ms + i * every_ms
        if any(a <= t < b for a, b in down):
            out.append(fail(t, session, tenant, target, cls))
        else:
            out.append(ok(t, session, tenant, target))
    return out


def by_kind(results: list[Any], kind: str) -> list[Any]:
    return [r for r in results if r.kind == kind]


def one(results: list[Any], kind: str, **match: Any) -> Any:
    found = [r for r in by_kind(results, kind) if all(getattr(r, k) == v for k, v in match.items())]
    assert len(found) == 1, f"expected one {kind} {match}, found {len(found)}"
    return found[0]
