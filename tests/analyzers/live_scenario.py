"""Ten seconds of a game day written out by hand, so the time series and the dashboard's
figures are known exactly.

Session ``acme-1`` on ``gateway`` sends ten messages a second; each is echoed 10 ms later
with latencies 1..10 ms, except in seconds 6 and 7, where every send fails
(``closed_1011``). Every second also brings one 503 response with its ``session.error``
(one failure, not two). ``globex-1`` and ``globex-2`` connect at 0.1 s; ``globex-2`` is
closed by the server with 1011 at 9.5 s (a failure). Its generator's clock runs 3 s behind
(``clock_offsets_ns`` puts it right). Faults: ``redis-outage`` (proxy disabled at 1 s,
reported by injector and proxy, never re-enabled) and ``message-latency``, seen only as a
``fault.toxic_updated`` at 2 s and removed at 4 s. The steady-state probe ``gateway-up``
runs before the method (met) and after it (``deviated`` says whether it was met then).
"""

from __future__ import annotations

from analyzers.core import AnalyzerConfig
from schemas.events import (
    Connected,
    Disconnect,
    Event,
    ExperimentEnded,
    ExperimentPhase,
    ExperimentStarted,
    HypothesisProbeRan,
    ProxyDisabled,
    Receive,
    Send,
    SessionError,
    ToxicRemoved,
    ToxicSpec,
    ToxicUpdated,
)

T0 = 1_800_000_000 * 10**9
S = 10**9
MS = 10**6
EXP = "live-scenario"
LATE = "g-late"
LATE_BY_NS = 3 * S
CONFIG = AnalyzerConfig(clock_offsets_ns={LATE: LATE_BY_NS}, baseline_phase="method")


def _ids(generator: str = "g1") -> dict[str, str]:
    return {"experiment_id": EXP, "run_id": "run-1", "generator_id": generator}


def scenario(*, ended: bool = True, deviated: bool = False) -> list[Event]:
    inj = _ids("injector")
    sess = {"tenant": "acme", "user": "u1", "session": "acme-1", "target": "gateway",
            "protocol": "ws"}  # fmt: skip
    evs: list[Event] = [
        ExperimentStarted(**inj, ts_ns=T0, title="Live scenario"),
        HypothesisProbeRan(
            **inj,
            ts_ns=T0 + 150 * MS,
            probe="gateway-up",
            when="before",
            duration_s=0.1,
            tolerance_met=True,
        ),
        ExperimentPhase(**inj, ts_ns=T0 + 200 * MS, phase="fault:redis-outage"),
        Connected(**_ids(), **sess, ts_ns=T0 + 100 * MS, connect_ms=2.0),
    ]
    for name, gen, shift in (("globex-1", "g1", 0), ("globex-2", LATE, LATE_BY_NS)):
        g = {**sess, "tenant": "globex", "session": name}
        evs.append(Connected(**_ids(gen), **g, ts_ns=T0 + 100 * MS - shift, connect_ms=2.0))
    late = {**sess, "tenant": "globex", "session": "globex-2"}
    evs.append(
        Disconnect(**_ids(LATE), **late, ts_ns=T0 + 9500 * MS - LATE_BY_NS, by="server",
                   code=1011, reason="upstream gone")
    )  # fmt: skip
    for src in ("injector", "proxy"):
        evs.append(
            ProxyDisabled(**_ids(src), ts_ns=T0 + S, proxy="redis", source=src,
                          fault_id="redis-outage")
        )  # fmt: skip
    evs.append(
        ToxicUpdated(**inj, ts_ns=T0 + 2 * S, proxy="message", fault_id="message-latency",
                     toxic=ToxicSpec(name="message-latency", type="latency",
                                     attributes={"latency": 100}))
    )  # fmt: skip
    evs.append(ToxicRemoved(**inj, ts_ns=T0 + 4 * S, proxy="message", toxic_name="message-latency"))
    for sec in range(10):
        base = T0 + sec * S
        for i in range(10):
            t = base + 300 * MS + i * 50 * MS
            evs.append(Send(**_ids(), **sess, ts_ns=t, seq=sec * 10 + i, bytes=10))
            if sec in (6, 7):
                evs.append(
                    SessionError(**_ids(), **sess, ts_ns=t + 5 * MS, error_class="closed_1011",
                                 message="upstream down", phase="send", seq=sec * 10 + i)
                )  # fmt: skip
            else:
                evs.append(
                    Receive(**_ids(), **sess, ts_ns=t + 10 * MS, seq=sec * 10 + i, bytes=10,
                            latency_ms=float(i + 1))
                )  # fmt: skip
        evs.append(
            Receive(**_ids(), **sess, ts_ns=base + 900 * MS, bytes=0, status=503)
        )  # fmt: skip
        evs.append(
            SessionError(**_ids(), **sess, ts_ns=base + 900 * MS, error_class="http_503",
                         message="503", phase="receive")
        )  # fmt: skip
    if ended:
        evs.append(
            HypothesisProbeRan(**inj, ts_ns=T0 + 9980 * MS, probe="gateway-up", when="after",
                               duration_s=0.25, tolerance_met=not deviated,
                               detail="status 503 not in [200]" if deviated else "")
        )  # fmt: skip
        evs.append(
            ExperimentEnded(**inj, ts_ns=T0 + 9990 * MS, status="failed" if deviated else
                            "completed", deviated=deviated,
                            reason="the steady-state hypothesis deviated" if deviated else "")
        )  # fmt: skip
    return sorted(evs, key=lambda e: e.ts_ns + (LATE_BY_NS if e.generator_id == LATE else 0))
