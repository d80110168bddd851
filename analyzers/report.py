"""Plain-text rendering of result records, the same for live results and replay."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from spine.store import result_field

if TYPE_CHECKING:
    from collections.abc import Sequence

    from schemas.results import ResultEvent


def _f(v: float | None, unit: str = "", digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}{unit}"


def _key(r: Any) -> str:
    return r.scope if not r.scope_key else f"{r.scope}:{r.scope_key}"


KIND_ORDER = (
    "result.episode",
    "result.availability",
    "result.isolation_group",
    "result.isolation_violation",
    "result.integrity",
    "result.latency",
    "result.load",
    "result.cascade",
    "result.error_burst",
    "result.fingerprint",
    "result.series",
    "result.live",
    "result.verdict",
)


def canonical(results: Sequence[ResultEvent]) -> list[ResultEvent]:
    """One order for results however they were obtained (analyzer, Redis, file): by kind,
    then scope and key, then what tells records of a kind apart (``result_field``, unique per
    kind as in the results store)."""
    order = {kind: i for i, kind in enumerate(KIND_ORDER)}
    return sorted(
        results,
        key=lambda r: (order.get(r.kind, 99), r.kind, r.scope, r.scope_key, result_field(r)),
    )


def render(results: Sequence[ResultEvent]) -> str:
    by: dict[str, list[Any]] = {}
    for r in canonical(results):
        by.setdefault(r.kind, []).append(r)
    lines: list[str] = []

    def section(title: str) -> None:
        lines.append("")
        lines.append(f"== {title}")

    section("availability")
    for r in by.get("result.availability", []):
        lines.append(
            f"{_key(r):<28} avail {r.availability_pct:8.3f}%  episodes {r.episodes:<3} "
            f"MTBF {_f(r.mtbf_s, 's')}  MTTR {_f(r.mttr_s, 's')}  observed {r.observed_s:.3f}s"
        )
    section("episodes")
    for r in by.get("result.episode", []):
        faults = ",".join(r.faults_active) or "-"
        impact = _f(r.time_to_impact_ms, "ms", 1)
        recover = _f(r.time_to_recover_ms, "ms", 1)
        lines.append(
            f"{r.episode_id:<28} {_f(r.duration_ms, 'ms', 1):>12}  faults {faults}"
            f"  impact {impact}  recover {recover}"
        )
    section("cascades")
    for r in by.get("result.cascade", []):
        hops = " -> ".join(f"{h.target}(+{h.failed_after_ms:.0f}ms)" for h in r.hops) or "-"
        lines.append(
            f"{r.fault_id:<20} origin {r.origin_target}: {hops}; blast {r.blast_targets} targets "
            f"{r.blast_tenants} tenants {r.blast_sessions} sessions; "
            f"{'contained' if r.contained else 'NOT contained'}"
        )
    section("isolation violations")
    groups = by.get("result.isolation_group", [])
    for g in groups:
        lines.append(
            f"{g.violation}: {g.origin_tenant} -> {g.victim_tenant} on {g.target or '-'} "
            f"faults {','.join(g.faults_active) or '-'} after {','.join(g.faults_after) or '-'}: "
            f"{g.count} from {g.first_ns} to {g.last_ns}"
        )
    for r in by.get("result.isolation_violation", []):
        lines.append(
            f"  e.g. {r.violation}: {r.origin_tenant}/{r.origin_session} -> {r.victim_tenant}/"
            f"{r.victim_session} at {r.seen_ns} faults {','.join(r.faults_active) or '-'}"
        )
    if not groups:
        lines.append("none")
    section("integrity")
    for r in by.get("result.integrity", []):
        lines.append(
            f"{_key(r):<28} sent {r.sent:<8} recv {r.received:<8} lost {r.lost:<6} "
            f"dup {r.duplicated:<5} reorder {r.reordered:<5} corrupt {r.corrupted}"
        )
    section("latency (ms)")
    for r in by.get("result.latency", []):
        lines.append(
            f"{_key(r):<28} {r.phase or '(run)':<16} n {r.count:<8} p50 {_f(r.p50_ms)} "
            f"p95 {_f(r.p95_ms)} p99 {_f(r.p99_ms)} p99.9 {_f(r.p999_ms)}"
        )
    section("load")
    for r in by.get("result.load", []):
        lines.append(
            f"{_key(r):<28} {r.phase or '(run)':<16} {r.throughput_per_s:9.1f} msg/s "
            f"{r.connect_rate_per_s:7.2f} conn/s errors {r.error_ratio:.4f} "
            f"p99 {_f(r.p99_degradation_pct, '%', 1)} "
            f"tput {_f(r.throughput_degradation_pct, '%', 1)}"
        )
    section("error bursts")
    for r in by.get("result.error_burst", []):
        lines.append(f"{r.burst_id:<20} {r.errors} errors {dict(r.error_classes)}")
    section("fingerprints")
    for r in by.get("result.fingerprint", []):
        lines.append(f"{r.fault_type:<20} {r.errors} errors {dict(r.error_classes)}")
    section("last figures")
    for r in by.get("result.live", []):
        lines.append(
            f"at {r.at_s:.1f}s phase {r.current_phase or '-'} faults "
            f"{','.join(r.active_faults) or '-'} sessions {r.sessions} "
            f"{r.throughput_per_s:.1f} msg/s errors {r.error_rate_pct:.1f}% "
            f"p99 {_f(r.p99_ms, 'ms', 1)} open episodes {len(r.open_episodes)}"
        )
    section("verdict")
    for r in by.get("result.verdict", []):
        verdict = "PASS" if r.passed else "FAIL"
        lines.append(f"{r.phase or '(run)':<20} {verdict}  {'; '.join(r.reasons)}")
    return "\n".join(lines).lstrip("\n") + "\n"
