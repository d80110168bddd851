"""Against the sample chat system over real sockets (gateway → message service → Redis)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import pytest

from examples.chat import ChatSystem
from generators.runner import Generator, GeneratorOptions
from schemas.events import Receive, parse_event
from schemas.targets import Target
from spine.eventlog import MemorySink
from tests.generators.conftest import ON_SCHEDULE_KINDS, profile

if TYPE_CHECKING:
    from spine.stack import EmbeddedStack

pytestmark = pytest.mark.timeout(120)

CHURN = [
    {"do": "connect"},
    {"do": "subscribe"},
    {"do": "send", "count": 2, "rate_per_s": 40, "expect": "broadcast", "timeout_ms": 1000},
    {"do": "disconnect"},
] * 4


def gateway(chat: ChatSystem) -> Target:
    return Target(
        name="gw", upstream=chat.gateway_url.removeprefix("http://"), protocol="ws", path="/ws"
    )


@pytest.mark.parametrize("engine", ["ws", "picows"])
async def test_every_session_event_kind_against_the_sample(
    stack: EmbeddedStack, engine: str
) -> None:
    async with ChatSystem(redis_url=stack.redis_url) as chat:
        sink = MemorySink()
        prof = profile(auth={"base_url": chat.gateway_url})
        stats = await Generator(
            prof,
            gateway(chat),
            sink,
            GeneratorOptions(experiment_id=f"chat-{engine}", engine=engine),
        ).run()
        # and an error: a connect to a port nobody listens on is refused
        bad = Target(name="gw", upstream="127.0.0.1:1", protocol="ws", path="/ws")
        await Generator(
            profile(tenants=[{"name": "acme", "users": 1}], reconnect={"max_attempts": 1}),
            bad,
            sink,
            GeneratorOptions(experiment_id=f"chat-{engine}", engine=engine),
        ).run()
    kinds = Counter(e.kind for e in sink.events)
    assert set(kinds) == ON_SCHEDULE_KINDS
    assert stats.errors == 0
    assert kinds["session.receive"] == 32
    assert [e.phase for e in sink.of_kind("session.error")] == ["connect"]
    for e in sink.events:
        assert parse_event(e.model_dump_json()) == e


async def isolation_run(stack: EmbeddedStack, bugs: set[str]) -> list[Receive]:
    async with ChatSystem(redis_url=stack.redis_url, bugs=bugs) as chat:
        sink = MemorySink()
        prof = profile(
            tenants=[{"name": "acme", "users": 4}, {"name": "globex", "users": 4}],
            auth={"base_url": chat.gateway_url},
            script=CHURN,
            duration_s=20,
        )
        await Generator(prof, gateway(chat), sink, GeneratorOptions(experiment_id="iso")).run()
    return [e for e in sink.events if isinstance(e, Receive)]


async def test_the_isolation_defect_is_caught_by_the_stamps(stack: EmbeddedStack) -> None:
    clean = await isolation_run(stack, set())
    assert clean
    assert all(e.origin_tenant == e.tenant and e.checksum_ok for e in clean)
    buggy = await isolation_run(stack, {"isolation"})
    leaked = [e for e in buggy if e.origin_tenant != e.tenant]
    assert leaked, "a reconnect storm with the isolation defect on must leak across tenants"
    assert all(e.checksum_ok for e in leaked)  # delivered intact, just to the wrong tenant
