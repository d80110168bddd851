"""A small, hand-made run: 60 s of chat traffic with two faults, and the results an analyzer
gives for it, written out by hand so the report tests know exactly what must appear."""

from __future__ import annotations

from aftershock.report.model import RunData, RunMeta
from analyzers.core import Analyzer
from schemas.events import (
    Connected,
    Event,
    ExperimentEnded,
    ExperimentStarted,
    ProxyDisabled,
    ProxyEnabled,
    Receive,
    Send,
    SessionError,
    ToxicAdded,
    ToxicRemoved,
    ToxicSpec,
)
from schemas.results import (
    Availability,
    Cascade,
    CascadeHop,
    FailureEpisode,
    Integrity,
    IsolationGroup,
    IsolationViolation,
    LatencySummary,
    LiveFigures,
    ResultEvent,
    SloCheck,
    TimeSeries,
    Verdict,
)

T0 = 1_800_000_000_000_000_000
S = 1_000_000_000
EXP = "golden"
VICTIM_TRACE = "0af7651916cd43dd8448eb211c80319c"
ORIGIN_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _ids(run_id: str) -> dict[str, str]:
    return {"experiment_id": EXP, "run_id": run_id, "generator_id": "g1"}


def golden_events(run_id: str = "run-a", *, outage: bool = True) -> list[Event]:
    """Two sessions sending one message a second for 60 s; latency fault 10–20 s on
    ``message`` (replies take 250 ms), Redis down 30–40 s (every send fails)."""
    ids = _ids(run_id)
    evs: list[Event] = [ExperimentStarted(**ids, ts_ns=T0, title="Golden game day")]
    for tenant in ("acme", "globex"):
        sess = {
            "tenant": tenant,
            "user": "u1",
            "session": f"{tenant}-s1",
            "target": "gateway",
            "protocol": "ws",
        }
        evs.append(Connected(**ids, **sess, ts_ns=T0 + S // 10, connect_ms=3.0))
        for sec in range(60):
            t = T0 + sec * S + S // 2
            evs.append(Send(**ids, **sess, ts_ns=t, seq=sec, bytes=100))
            if outage and 30 <= sec < 40:
                evs.append(
                    SessionError(
                        **ids,
                        **sess,
                        ts_ns=t + S // 100,
                        error_class="closed_1011",
                        message="upstream down",
                        phase="send",
                        seq=sec,
                    )
                )
                continue
            lat = 250.0 if 10 <= sec < 20 else 5.0 + sec % 3
            evs.append(
                Receive(
                    **ids,
                    **sess,
                    ts_ns=t + int(lat * 1e6),
                    seq=sec,
                    bytes=100,
                    latency_ms=lat,
                    origin_tenant=tenant,
                    origin_session=f"{tenant}-s1",
                    origin_seq=sec,
                    checksum_ok=True,
                )
            )
    for src in ("injector", "proxy"):  # both sources report each change; windows count once
        evs.append(
            ToxicAdded(
                **ids,
                ts_ns=T0 + 10 * S,
                proxy="message",
                source=src,
                fault_id="message-latency",
                toxic=ToxicSpec(
                    name="message-latency", type="latency", attributes={"latency": 250}
                ),
            )
        )
        evs.append(
            ToxicRemoved(
                **ids, ts_ns=T0 + 20 * S, proxy="message", source=src, toxic_name="message-latency"
            )
        )
        if outage:
            evs.append(
                ProxyDisabled(
                    **ids, ts_ns=T0 + 30 * S, proxy="redis", source=src, fault_id="redis-outage"
                )
            )
            evs.append(ProxyEnabled(**ids, ts_ns=T0 + 40 * S, proxy="redis", source=src))
    evs.append(ExperimentEnded(**ids, ts_ns=T0 + 60 * S, status="completed"))
    # In the order a run's log holds them: as they happened (the fault events among the
    # sessions', not seconds behind the watermark).
    return sorted(evs, key=lambda e: e.ts_ns)


def golden_results(run_id: str = "run-a", *, failing: bool = True) -> list[ResultEvent]:
    ids = _ids(run_id) | {"generator_id": "analyzer"}
    out: list[ResultEvent] = [
        Availability(
            **ids,
            ts_ns=T0 + 60 * S,
            scope="target",
            scope_key="gateway",
            availability_pct=83.333 if failing else 100.0,
            episodes=1 if failing else 0,
            mttr_s=10.0 if failing else None,
            observed_s=60.0,
        ),
        Availability(
            **ids,
            ts_ns=T0 + 60 * S,
            scope="target",
            scope_key="message",
            availability_pct=90.0,
            episodes=1,
            mttr_s=6.0,
            observed_s=60.0,
        ),
        Integrity(
            **ids,
            ts_ns=T0 + 60 * S,
            sent=120,
            received=100,
            lost=20,
            duplicated=0,
            reordered=0,
            corrupted=1,
        ),
        LatencySummary(
            **ids,
            ts_ns=T0 + 60 * S,
            count=100,
            p50_ms=6.0,
            p95_ms=250.0,
            p99_ms=250.0,
            p999_ms=250.0,
            max_ms=250.0,
        ),
    ]
    if failing:
        out += [
            FailureEpisode(
                **ids,
                ts_ns=T0 + 60 * S,
                scope="target",
                scope_key="gateway",
                episode_id="gateway-1",
                started_ns=T0 + 30 * S + S // 2,
                ended_ns=T0 + 40 * S + S // 2,
                duration_ms=10_000.0,
                faults_active=["redis-outage"],
                error_classes={"closed_1011": 20},
                time_to_impact_ms=500.0,
                time_to_recover_ms=500.0,
            ),
            Cascade(
                **ids,
                ts_ns=T0 + 60 * S,
                fault_id="redis-outage",
                origin_target="redis",
                hops=[
                    CascadeHop(target="message", failed_after_ms=120.0, via="redis"),
                    CascadeHop(target="gateway", failed_after_ms=510.0, via="message"),
                ],
                blast_targets=2,
                blast_tenants=2,
                blast_sessions=2,
                contained=False,
            ),
            IsolationViolation(
                **ids,
                ts_ns=T0 + 60 * S,
                victim_tenant="globex",
                victim_session="globex-s1",
                victim_trace_id=VICTIM_TRACE,
                origin_tenant="acme",
                origin_session="acme-s1",
                origin_trace_id=ORIGIN_TRACE,
                origin_seq=44,
                seen_ns=T0 + 44 * S,
                source_event_id="e" * 32,
            ),
            IsolationGroup(
                **ids,
                ts_ns=T0 + 60 * S,
                scope="tenant",
                scope_key="globex",
                group_id="tenant/gateway/acme>globex/-/-",
                target="gateway",
                victim_tenant="globex",
                origin_tenant="acme",
                count=1,
                first_ns=T0 + 44 * S,
                last_ns=T0 + 44 * S,
                example_trace_ids=[VICTIM_TRACE],
                example_sessions=["globex-s1"],
                examples_kept=1,
            ),
        ]
    checks = [
        SloCheck(
            name="gateway:availability",
            passed=not failing,
            observed=83.333 if failing else 100.0,
            threshold=95.0,
            reason="availability 83.333% below 95%" if failing else "",
        ),
        SloCheck(name="gateway:p99_latency", passed=True, observed=250.0, threshold=1500.0),
        SloCheck(
            name="isolation_violations",
            passed=not failing,
            observed=1.0 if failing else 0.0,
            threshold=0.0,
            reason="isolation_violations 1 exceeds 0" if failing else "",
        ),
    ]
    out.append(
        Verdict(
            **ids,
            ts_ns=T0 + 60 * S,
            passed=not failing,
            checks=checks,
            reasons=[c.reason for c in checks if not c.passed],
        )
    )
    out.append(
        Verdict(
            **ids,
            ts_ns=T0 + 60 * S,
            phase="fault:redis-outage",
            passed=not failing,
            checks=checks[:1],
            reasons=[c.reason for c in checks[:1] if not c.passed],
        )
    )
    return out


def golden_run(run_id: str = "run-a", *, failing: bool = True) -> RunData:
    events = golden_events(run_id, outage=failing)
    meta = RunMeta(
        experiment_id=EXP,
        run_id=run_id,
        title="Golden game day",
        started_ns=T0,
        ended_ns=T0 + 60 * S,
        status="completed",
    )
    return RunData.of(meta, [*golden_results(run_id, failing=failing), *series_of(events)])


def series_of(events: list[Event]) -> list[ResultEvent]:
    """The analyzers' time series and live figures of ``events`` (the rest is by hand)."""
    a = Analyzer(EXP)
    a.ingest(events)
    a.finish()
    return [r for r in a.results() if isinstance(r, TimeSeries | LiveFigures)]
