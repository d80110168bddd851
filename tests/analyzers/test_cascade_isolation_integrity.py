"""Golden sequences for cascades, isolation violations and message integrity."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzers.core import Analyzer, AnalyzerConfig
from analyzers.core.integrity import Counts, IntegrityTracker
from schemas.targets import Target, TargetGraph
from tests.analyzers.build import (
    EXP,
    by_kind,
    ns,
    one,
    probe,
    receive,
    send,
    toxic_added,
    toxic_removed,
)

if TYPE_CHECKING:
    from schemas.events import Event


def run(events: list[Event], config: AnalyzerConfig | None = None) -> list[Any]:
    a = Analyzer(EXP, config)
    a.ingest(sorted(events, key=lambda e: e.ts_ns))
    a.finish()
    return a.results()


GRAPH = TargetGraph(
    targets=[
        Target(name="redis", upstream="127.0.0.1:6379", proxy="redis-proxy"),
        Target(name="msg", upstream="127.0.0.1:7000", depends_on=["redis"]),
        Target(name="gw", upstream="127.0.0.1:8000", depends_on=["msg"]),
        Target(name="auth", upstream="127.0.0.1:9000"),
    ]
)


def test_three_hop_cascade_orders_hops_with_delays_and_blast_radius() -> None:
    events: list[Event] = [
        toxic_added(10_000, "redis-proxy", "redis-down", fault_id="redis-down"),
        toxic_removed(20_000, "redis-proxy", "redis-down"),
    ]
    events += probe(0, 40_000, [(10_000, 21_000)], target="redis", session="probe", tenant="ops")
    events += probe(0, 40_000, [(10_500, 22_000)], target="msg", session="m1", tenant="a")
    for s, tenant in (("g1", "a"), ("g2", "b"), ("g3", "b")):
        events += probe(0, 40_000, [(11_200, 23_000)], target="gw", session=s, tenant=tenant)
    # an unrelated target fails during the fault: not part of this cascade
    events += probe(0, 40_000, [(12_000, 14_000)], target="auth", session="x1", tenant="c")
    results = run(events, AnalyzerConfig(graph=GRAPH))
    c = one(results, "result.cascade", fault_id="redis-down")
    assert c.origin_target == "redis"
    assert [(h.target, h.failed_after_ms, h.via, h.hop_delay_ms) for h in c.hops] == [
        ("redis", 0.0, None, None),
        ("msg", 500.0, "redis", 500.0),
        ("gw", 1200.0, "msg", 700.0),
    ]
    assert c.blast_targets == 3
    assert c.blast_tenants == 3  # ops, a, b — not c
    assert c.blast_sessions == 5  # probe, m1, g1, g2, g3
    assert c.contained is False


def test_a_fault_that_stays_at_its_origin_is_contained() -> None:
    events: list[Event] = [
        toxic_added(10_000, "redis-proxy", "blip", fault_id="blip"),
        toxic_removed(12_000, "redis-proxy", "blip"),
    ]
    events += probe(0, 30_000, [(10_000, 12_000)], target="redis", session="probe")
    events += probe(0, 30_000, [], target="gw", session="g1")
    c = one(run(events, AnalyzerConfig(graph=GRAPH)), "result.cascade", fault_id="blip")
    assert [h.target for h in c.hops] == ["redis"]
    assert c.contained is True
    assert c.blast_targets == 1


def test_span_edges_extend_the_graph() -> None:
    a = Analyzer(EXP)
    a.add_dependency("gw", "msg")
    a.add_dependency("msg", "cache")
    events: list[Event] = [toxic_added(10_000, "cache", "c1", fault_id="c1")]
    events += probe(0, 30_000, [(10_100, 15_000)], target="cache", session="p")
    events += probe(0, 30_000, [(10_400, 15_000)], target="msg", session="m")
    events += probe(0, 30_000, [(10_900, 15_000)], target="gw", session="g")
    a.ingest(sorted(events, key=lambda e: e.ts_ns))
    a.finish()
    c = one(a.results(), "result.cascade", fault_id="c1")
    assert [(h.target, h.via) for h in c.hops] == [("cache", None), ("msg", "cache"), ("gw", "msg")]


TRACE_A = "a" * 32
TRACE_B = "b" * 32


def test_cross_tenant_delivery_among_heavy_fan_out_is_the_only_violation() -> None:
    events: list[Event] = []
    sessions = [f"a{i}" for i in range(20)]
    t = 0.0
    for seq in range(10):
        for s in sessions:
            t += 1
            events.append(send(t, seq, s, "a", expect="broadcast", channel="general"))
            for r in sessions:  # every tenant-a session gets every broadcast: legitimate
                events.append(receive(t + 5, r, s, seq, "a", channel="general"))
    # tenant b's own traffic
    for seq in range(10):
        events.append(send(t + seq, seq, "b1", "b", expect="broadcast", channel="general"))
        events.append(receive(t + seq + 5, "b1", "b1", seq, "b", channel="general"))
    # the leak: a tenant-a broadcast reaches tenant b's session during a fault
    events.append(toxic_added(5_000, "gw-proxy", "storm", "reset_peer", fault_id="storm"))
    events.append(send(6_000, 99, "a3", "a", expect="broadcast", channel="general", trace=TRACE_A))
    events.append(receive(6_005, "a3", "a3", 99, "a", channel="general"))
    events.append(
        receive(6_010, "b1", "a3", 99, "b", origin_tenant="a", channel="general", trace=TRACE_B)
    )
    results = run(events)
    violations = by_kind(results, "result.isolation_violation")
    assert len(violations) == 1
    v = violations[0]
    assert (v.violation, v.victim_tenant, v.victim_session, v.origin_tenant, v.origin_session) == (
        "tenant",
        "b",
        "b1",
        "a",
        "a3",
    )
    assert (v.victim_trace_id, v.origin_trace_id) == (TRACE_B, TRACE_A)
    assert v.faults_active == ["storm"]
    verdict = one(results, "result.verdict", phase="")
    assert verdict.passed is False
    assert any("isolation" in r for r in verdict.reasons)


def test_a_private_reply_reaching_another_user_is_a_user_violation() -> None:
    events: list[Event] = [
        send(0, 1, "s1", "a", user="alice", trace=TRACE_A),
        receive(5, "s1", "s1", 1, "a", user="alice", origin_user="alice"),
        receive(6, "s2", "s1", 1, "a", user="bob", origin_user="alice", trace=TRACE_B),
    ]
    v = one(run(events), "result.isolation_violation", violation="user")
    assert (v.victim_session, v.victim_user, v.origin_user) == ("s2", "bob", "alice")
    assert v.origin_trace_id == TRACE_A


def test_loss_duplicates_reordering_and_corruption_are_counted_per_dimension() -> None:
    events: list[Event] = [toxic_added(450, "gw-proxy", "flaky", "corrupt", fault_id="flaky")]
    for seq in range(10):
        events.append(send(seq * 100, seq, "s1", "a"))
    # arrival (by time): 0 1 2 4 3 4(dup) 5(corrupt) 6 7 8; 9 never comes
    for t, seq, good in [
        (10, 0, True),
        (110, 1, True),
        (210, 2, True),
        (410, 4, True),
        (420, 3, True),
        (430, 4, True),
        (510, 5, False),
        (610, 6, True),
        (710, 7, True),
        (810, 8, True),
    ]:
        events.append(receive(t, "s1", "s1", seq, "a", checksum_ok=good))
    events += probe(1_000, 20_000, [], session="other")  # time moves on past the timeout
    results = run(events)
    for scope, key in (("overall", ""), ("target", "gw"), ("tenant", "a")):
        i = one(results, "result.integrity", scope=scope, scope_key=key)
        # the corrupted reply (seq 5) answers nothing: seq 5 is lost as well as seq 9
        assert (i.sent, i.lost, i.duplicated, i.reordered, i.corrupted) == (10, 2, 1, 1, 1)
        assert i.received >= 10
    f = one(results, "result.integrity", scope="fault", scope_key="flaky")
    # sends 5..9 happened while the fault was active; the duplicate (430 ms) did not
    assert (f.sent, f.lost, f.duplicated, f.corrupted) == (5, 2, 0, 1)


def test_a_reply_after_the_timeout_is_lost_and_late_not_duplicate() -> None:
    events: list[Event] = [send(0, 1), receive(7_000, "s1", "s1", 1)]
    events += probe(100, 10_000, [], session="other")
    i = one(run(events), "result.integrity", scope="overall")
    assert (i.lost, i.late_replies, i.duplicated) == (1, 1, 0)


def test_a_sequence_number_sent_again_expires_at_its_own_deadline() -> None:
    # A session that starts its sequence numbers over (a reconnect) sends seq 1 twice: the
    # first is answered at once, the second (3 s later) never. The first send's deadline
    # (5 s) must not expire the second: it is lost at its own deadline, 8 s.
    tracker = IntegrityTracker(timeout_ns=5_000_000_000, reorder_window=64)
    dims = (("overall", ""),)
    tracker.send(ns(0), send(0, 1), dims)
    tracker.receive(receive(10, "s1", "s1", 1), dims)
    tracker.send(ns(3_000), send(3_000, 1), dims)
    assert tracker.expire(ns(5_000)) == []  # only the answered send's deadline has passed
    assert tracker.pending == 1
    assert tracker.expire(ns(8_000) - 1) == []
    assert tracker.due(ns(8_000))
    [lost] = tracker.expire(ns(8_000))
    assert (lost.t, lost.seq) == (ns(8_000), 1)
    assert tracker.counts[("overall", "")].lost == 1
    assert tracker.expire(ns(60_000)) == []
    assert tracker.pending == 0


def test_expiry_does_not_depend_on_how_events_are_grouped() -> None:
    # Sends every 100 ms for 20 s, every fifth never answered, some answers after the
    # timeout: the same figures whether the analyzer gets one event at a time or all at once.
    events: list[Event] = []
    for i in range(200):
        t = i * 100.0
        events.append(send(t, i, "s1"))
        if i % 5:
            events.append(receive(t + (1_500 if i % 7 == 0 else 5), "s1", "s1", i))
    events += probe(20_000, 30_000, [], session="other")
    ordered = sorted(events, key=lambda e: e.ts_ns)
    got = []
    for batch in (1, 13, len(ordered)):
        a = Analyzer(EXP, AnalyzerConfig(reply_timeout_s=1.0, allowed_lateness_s=0.0))
        for i in range(0, len(ordered), batch):
            a.ingest(ordered[i : i + batch])
        a.finish()
        got.append([r.model_dump() for r in a.results() if r.kind == "result.integrity"])
    assert got[0] == got[1] == got[2]
    i = one(a.results(), "result.integrity", scope="overall", scope_key="")
    # 40 never answered; 23 answered 1.5 s late (i % 7 == 0 and i % 5 != 0)
    late = sum(1 for i in range(200) if i % 5 and i % 7 == 0)
    assert (i.sent, i.lost, i.late_replies) == (200, 40 + late, late)


@pytest.mark.parametrize("lateness_s", [0.0, 1.0])
def test_loss_shows_up_as_failures_in_health(lateness_s: float) -> None:
    # a blackhole: sends every 100 ms for 10 s get no reply; no client error is reported
    events: list[Event] = []
    for i in range(300):
        t = i * 100.0
        events.append(send(t, i, "s1"))
        if not 10_000 <= t < 20_000:
            events.append(receive(t + 5, "s1", "s1", i))
    cfg = AnalyzerConfig(reply_timeout_s=1.0, allowed_lateness_s=lateness_s)
    results = run(events, cfg)
    ep = one(results, "result.episode", scope="target")
    assert ep.error_classes.get("lost_reply", 0) > 0
    assert one(results, "result.integrity", scope="overall").lost == 100


def test_violations_are_grouped_with_exact_counts_and_a_few_examples() -> None:
    # More violations than the example cap in every group: a count taken from the individual
    # records would be wrong.
    leaks: list[tuple[float, str, str]] = []  # (time ms, origin tenant, expected group)
    events: list[Event] = [toxic_added(5_000, "gw-proxy", "storm", "reset_peer", fault_id="storm")]
    events.append(toxic_removed(8_000, "gw-proxy", "storm"))
    for i in range(12):  # during the fault
        leaks.append((5_100 + i * 100, "a", "tenant/gw/a>b/storm/-"))
    for i in range(7):  # within after_effect_s of its end, no fault active
        leaks.append((9_000 + i * 100, "a", "tenant/gw/a>b/-/storm"))
    for i in range(4):  # long after
        leaks.append((30_000 + i * 100, "a", "tenant/gw/a>b/-/-"))
    for i in range(3):  # another origin tenant
        leaks.append((30_050 + i * 100, "c", "tenant/gw/c>b/-/-"))
    for n, (t, origin, _) in enumerate(leaks):
        events.append(send(t - 5, n, f"{origin}1", origin, expect="broadcast", channel="general"))
        events.append(
            receive(t, f"b{n % 3}", f"{origin}1", n, "b", origin_tenant=origin, channel="general",
                    trace=f"{n:032x}")
        )  # fmt: skip
    results = run(events, AnalyzerConfig(violation_examples=2))
    groups = {g.group_id: g for g in by_kind(results, "result.isolation_group")}
    expected: dict[str, list[float]] = {}
    for t, _, key in leaks:
        expected.setdefault(key, []).append(t)
    assert {k: g.count for k, g in groups.items()} == {k: len(v) for k, v in expected.items()}
    for key, times in expected.items():
        g = groups[key]
        assert (g.first_ns, g.last_ns) == (ns(times[0]), ns(times[-1]))
        assert g.examples_kept == 2
        assert len(g.example_trace_ids) == 2
        assert len(g.example_sessions) == 2
    during = groups["tenant/gw/a>b/storm/-"]
    assert (during.faults_active, during.faults_after) == (["storm"], [])
    assert groups["tenant/gw/a>b/-/storm"].faults_after == ["storm"]
    # the examples are the first two of each group, nothing more
    examples = by_kind(results, "result.isolation_violation")
    assert sorted(v.seen_ns for v in examples) == sorted(
        ns(t) for times in expected.values() for t in times[:2]
    )
    assert {v.fault_relation for v in examples if v.faults_active} == {"during"}
    assert {v.fault_relation for v in examples if v.faults_after} == {"after"}
    # every figure counts every violation, not the records kept
    verdict = one(results, "result.verdict", phase="")
    assert "isolation_violations 26 exceeds 0" in verdict.reasons
    assert one(results, "result.live").isolation_violations == 26
    # a cap of 0 keeps groups only
    bare = run(events, AnalyzerConfig(violation_examples=0))
    assert by_kind(bare, "result.isolation_violation") == []
    assert sum(g.count for g in by_kind(bare, "result.isolation_group")) == 26


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 120), max_size=200),
    st.sampled_from([16, 32]),
)
def test_duplicates_and_reordering_follow_their_definition(seqs: list[int], window: int) -> None:
    """Whatever order sequence numbers arrive in (gaps, repeats, stragglers), each receipt is
    counted as the definition says, kept against every number that arrived before it."""
    tracker = IntegrityTracker(timeout_ns=5_000_000_000, reorder_window=window)
    dims = (("overall", ""),)
    arrived: set[int] = set()
    high = -1
    duplicated = reordered = 0
    for i, seq in enumerate(seqs):
        if seq > high:
            high = seq
        elif seq <= high - window:
            reordered += 1  # too far below the highest to be told from a duplicate
        elif seq in arrived:
            duplicated += 1
        else:
            reordered += 1
        arrived.add(seq)
        tracker.receive(receive(float(i), "s1", "other", seq), dims)
    c = tracker.counts.get(("overall", ""), Counts())
    assert (c.received, c.duplicated, c.reordered) == (len(seqs), duplicated, reordered)
