"""Load shapes: offsets per shape, and a run driven by a fake clock starts sessions on plan."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from generators.clock import FakeClock
from generators.population import build_population, shard
from generators.session import unit_fraction
from generators.shapes import planned_active, stability_levels, start_offsets
from schemas.load import RampShape
from spine.eventlog import MemorySink
from tests.generators.conftest import profile
from tests.generators.fakes import FakeEngine, fake_generator


def test_linear_spreads_evenly() -> None:
    offs = start_offsets(RampShape(shape="linear", ramp_s=10), 10)
    assert offs == [float(i) for i in range(10)]


def test_constant_starts_all_at_once_unless_staggered() -> None:
    assert start_offsets(RampShape(shape="constant"), 3) == [0.0, 0.0, 0.0]
    staggered = start_offsets(RampShape(shape="constant", stagger_ms=250), 3)
    assert staggered == [0.0, 0.25, 0.5]


def test_exponential_doubles() -> None:
    offs = start_offsets(RampShape(shape="exponential", ramp_s=8), 256)
    # 2^(t/ramp·log2 n): at t=1 two sessions, at t=2 four, ... all 256 at t=8
    assert [planned_active(offs, t) for t in range(9)] == [1, 2, 4, 8, 16, 32, 64, 128, 256]


def test_stepped_reaches_the_total_in_equal_steps() -> None:
    offs = start_offsets(RampShape(shape="stepped", ramp_s=8, steps=4), 100)
    assert [planned_active(offs, t) for t in (0, 1.9, 2, 4, 6, 8)] == [0, 0, 25, 50, 75, 100]


def test_burst_groups() -> None:
    offs = start_offsets(RampShape(shape="burst", burst_size=3, burst_every_s=2), 7)
    assert offs == [0, 0, 0, 2, 2, 2, 4]


def test_stability_levels() -> None:
    assert stability_levels(10, 10, 35) == [10, 20, 30, 35]
    assert stability_levels(100, 0, 1000, factor=2) == [100, 200, 400, 800, 1000]
    with pytest.raises(ValueError, match="start"):
        stability_levels(0, 1, 10)


def test_population_round_robin_interleaves_tenants_and_shards_evenly() -> None:
    prof = profile(
        tenants=[
            {"name": "a", "users": 3, "sessions_per_user": 2},
            {"name": "b", "users": 1},
        ]
    )
    plans = build_population(prof)
    assert [p.session for p in plans[:4]] == ["a-u0-s0", "b-u0-s0", "a-u1-s0", "a-u2-s0"]
    assert len(plans) == 7
    assert len({p.session for p in plans}) == 7
    parts = [shard(plans, k, 3) for k in range(3)]
    assert sorted(p.index for part in parts for p in part) == list(range(7))
    shuffled = build_population(prof.model_copy(update={"assignment": "random"}))
    assert {p.session for p in shuffled} == {p.session for p in plans}
    assert shuffled == build_population(prof.model_copy(update={"assignment": "random"}))


@pytest.mark.parametrize(
    "ramp",
    [
        {"shape": "linear", "ramp_s": 10},
        {"shape": "exponential", "ramp_s": 10},
        {"shape": "stepped", "ramp_s": 10, "steps": 5},
        {"shape": "burst", "burst_size": 7, "burst_every_s": 3},
        {"shape": "constant", "stagger_ms": 400},
    ],
)
async def test_run_on_a_fake_clock_starts_sessions_as_planned(ramp: dict[str, object]) -> None:
    clock = FakeClock()
    prof = profile(
        tenants=[{"name": "a", "users": 20}, {"name": "b", "users": 12}],
        ramp=ramp,
        duration_s=30,
        script=[{"do": "connect"}, {"do": "think", "min_ms": 60_000, "max_ms": 60_000}],
    )
    sink = MemorySink()
    offsets = start_offsets(prof.ramp, prof.total_sessions)
    run = asyncio.create_task(
        fake_generator(prof, FakeEngine(), tick_s=0.5, sink=sink, clock=clock).run()
    )
    observed = []
    planned = []
    for t in range(25):
        await clock.advance(0 if t == 0 else 1)
        observed.append(len(sink.of_kind("session.connected")))
        planned.append(planned_active(offsets, float(t)))
    assert observed == planned
    assert observed[-1] == 32
    await clock.advance(10)  # past duration_s: the run winds down
    stats = await asyncio.wait_for(run, 5)
    assert stats.active == 0
    assert len(sink.of_kind("session.disconnect")) == 32


async def test_sessions_keep_their_send_phase_after_a_stalled_tick() -> None:
    clock = FakeClock()
    engine = FakeEngine(clock)
    prof = profile(
        tenants=[{"name": "a", "users": 4}],
        duration_s=20,
        script=[{"do": "connect"}, {"do": "send", "rate_per_s": 1, "expect": "none"}],
    )
    gen = fake_generator(prof, engine, tick_s=0.01, clock=clock)
    run = asyncio.create_task(gen.run())
    await clock.advance(3)
    phases = sorted(round(c.sent_at[-1] % 1, 2) for c in engine.connections)
    assert len(set(phases)) == 4  # the first-send phases spread the four sessions
    clock._now += 1.5  # the loop stalls: every session is overdue at the next tick
    await clock.advance(0.01)
    await clock.advance(3)
    after = sorted(round(c.sent_at[-1] % 1, 2) for c in engine.connections)
    assert after == phases  # they did not bunch into the tick that caught up
    gen.stop()
    await clock.advance(1)
    await asyncio.wait_for(run, 5)


def test_unit_fraction_is_a_fixed_even_spread() -> None:
    values = [unit_fraction(f"7:{i}:0") for i in range(2000)]
    assert all(0 <= v < 1 for v in values)
    assert values == [unit_fraction(f"7:{i}:0") for i in range(2000)]  # same key, same value
    deciles = [sum(1 for v in values if k / 10 <= v < (k + 1) / 10) for k in range(10)]
    assert min(deciles) > 140, deciles
    assert max(deciles) < 260, deciles
    assert unit_fraction("8:0:0") != unit_fraction("7:0:0")


async def _first_send_phases(seed: int, script: list[dict[str, Any]]) -> list[float]:
    clock = FakeClock()
    engine = FakeEngine(clock)
    prof = profile(tenants=[{"name": "a", "users": 6}], duration_s=5, seed=seed, script=script)
    gen = fake_generator(prof, engine, tick_s=0.01, clock=clock)
    run = asyncio.create_task(gen.run())
    await clock.advance(1.5)
    phases = [round(c.sent_at[0] % 1, 2) for c in engine.connections]
    # Nothing in this script draws a number: the sessions keep no generator of their own.
    assert all(c.handler._rng is None for c in engine.connections)  # type: ignore[attr-defined]
    gen.stop()
    await clock.advance(1)
    await asyncio.wait_for(run, 5)
    return phases


async def test_first_send_phases_follow_the_seed_without_a_generator_per_session() -> None:
    script: list[dict[str, Any]] = [
        {"do": "connect"},
        {"do": "think", "min_ms": 100},
        {"do": "send", "rate_per_s": 1, "expect": "none", "size": {"dist": "fixed", "bytes": 64}},
    ]
    first = await _first_send_phases(7, script)
    assert len(set(first)) == 6  # spread over the interval
    assert await _first_send_phases(7, script) == first  # the same seed, the same phases
    assert await _first_send_phases(8, script) != first
