"""Isolation checks subscriptions: a chat that delivers a channel's messages to sessions that
never subscribed to it is reported delivery for delivery, as ``subscription`` violations; the
same heavy fan-out done right is reported clean."""

from __future__ import annotations

import pytest

from analyzers.core import Analyzer
from generators.runner import Generator, GeneratorOptions
from schemas.load import LoadProfile
from schemas.targets import Target
from spine.eventlog import MemorySink
from tests.analyzers.build import by_kind, one
from tests.truth.sut import ChannelChat

pytestmark = pytest.mark.timeout(120)

PROFILE = LoadProfile.model_validate(
    {
        "target": "chat",
        "tenants": [{"name": "acme", "users": 6, "channels": ["alpha"]}],
        "duration_s": 20,
        "ramp": {"shape": "constant"},
        "seed": 2,
        "script": [
            {"do": "connect"},
            {"do": "subscribe"},
            {"do": "think", "min_ms": 300, "max_ms": 300},
            {"do": "send", "count": 20, "rate_per_s": 50, "expect": "broadcast"},
            {
                "do": "send",
                "count": 10,
                "rate_per_s": 50,
                "expect": "broadcast",
                "channel": "beta",
                "timeout_ms": 300,
            },
            {"do": "think", "min_ms": 800, "max_ms": 800},
            {"do": "disconnect"},
        ],
    }
)


@pytest.mark.parametrize("bug", [frozenset(), frozenset({"beta"})], ids=["correct", "leaky"])
async def test_messages_on_unsubscribed_channels_are_subscription_violations(
    bug: frozenset[str],
) -> None:
    sink = MemorySink()
    exp = f"truth-subscription-{len(bug)}"
    async with ChannelChat(deliver_to_all=bug) as chat:
        await Generator(
            PROFILE,
            Target(name="chat", upstream=chat.address, protocol="ws", path="/ws"),
            sink,
            GeneratorOptions(experiment_id=exp),
        ).run()
    assert len(sink.of_kind("session.subscribed")) == 6
    analyzer = Analyzer(exp)
    analyzer.ingest(sink.events)
    analyzer.finish()
    results = analyzer.results()
    violations = by_kind(results, "result.isolation_violation")
    groups = by_kind(results, "result.isolation_group")
    assert chat.delivered >= 6 * 6 * 20  # the legitimate fan-out on alpha, every copy
    # the groups count every misdelivery the chat logged; only the first few are records
    assert sum(g.count for g in groups) == chat.misdelivered
    assert one(results, "result.live").isolation_violations == chat.misdelivered
    assert {(g.violation, g.origin_tenant, g.victim_tenant) for g in groups} <= {
        ("subscription", "acme", "acme")
    }
    cap = analyzer.config.violation_examples
    assert len(violations) == sum(min(g.count, cap) for g in groups)
    assert {v.violation for v in violations} <= {"subscription"}
    assert {v.channel for v in violations} <= {"beta"}
    if bug:
        assert chat.misdelivered == 6 * 6 * 10
        assert len(violations) == cap < chat.misdelivered
