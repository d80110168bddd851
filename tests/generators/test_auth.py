"""Auth flow: one login per user, refresh ahead of expiry, logout at the end, failures recorded."""

from __future__ import annotations

import asyncio

from generators.clock import FakeClock
from generators.runner import Generator, GeneratorOptions
from schemas.events import SessionError
from schemas.targets import Target
from spine.eventlog import MemorySink
from tests.generators.conftest import profile
from tests.generators.fakes import FakeEngine, fake_generator
from tests.generators.servers import ChatLikeServer


async def advance(clock: FakeClock, seconds: int) -> None:
    for _ in range(seconds):
        await clock.advance(1)
        await asyncio.sleep(0.02)  # let real HTTP round trips finish


async def test_tokens_are_refreshed_before_they_expire_and_logged_out_at_the_end() -> None:
    clock = FakeClock()
    async with ChatLikeServer(token_ttl_s=10, clock=clock) as server:
        prof = profile(
            tenants=[{"name": "a", "users": 2, "sessions_per_user": 2}],
            duration_s=25,
            auth={"base_url": server.base_url, "refresh_before_s": 3},
            script=[{"do": "connect"}, {"do": "think", "min_ms": 60_000, "max_ms": 60_000}],
        )
        sink = MemorySink()
        gen = fake_generator(prof, FakeEngine(), tick_s=0.5, sink=sink, clock=clock)
        run = asyncio.create_task(gen.run())
        await advance(clock, 23)
        # two users, four sessions: the sessions of one user share a login
        assert sorted(u for u, _ in server.calls.logins) == ["a-u0", "a-u1"]
        refresh_times = sorted({t for _, t in server.calls.refreshes})
        assert refresh_times == [7.0, 14.0, 21.0]
        assert len(server.calls.refreshes) == 6
        await advance(clock, 5)
        await asyncio.wait_for(run, 5)
        assert sorted(server.calls.logouts) == ["a-u0", "a-u1"]
        assert not sink.of_kind("session.error")


async def test_login_failures_are_session_errors_in_phase_auth(chat: ChatLikeServer) -> None:
    chat.fail_login = True
    sink = MemorySink()
    prof = profile(
        tenants=[{"name": "a", "users": 2}],
        auth={"base_url": chat.base_url},
        reconnect={"initial_ms": 10, "max_attempts": 2},
    )
    stats = await Generator(
        prof,
        Target(name="gw", upstream=chat.address, protocol="ws", path="/ws"),
        sink,
        GeneratorOptions(experiment_id="e"),
    ).run()
    errors = [e for e in sink.events if isinstance(e, SessionError)]
    assert errors
    assert {(e.phase, e.error_class) for e in errors} == {("auth", "LoginFailed")}
    assert all("503" in e.message for e in errors)
    assert stats.connects == 0
    assert not sink.of_kind("session.connect_start")
