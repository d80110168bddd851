"""Distributed generators: several processes (on one or many hosts) run one plan through Redis.

Keys, all under ``aftershock:{experiment_id}:gen:``:

=================  ==========================================================================
``plan``           JSON: the run file, the number of members, run options (set once, NX)
``seq``            INCR counter handing out member indices (0-based) in join order
``members``        hash generator_id → member index
``ready``          set of generator ids that finished set-up; the last one sets ``start_at``
``start_at``       wall-clock ns at which every member starts its load phase (the barrier)
``hb:{gen_id}``    the member's latest statistics as JSON; expires when heartbeats stop
``signal``         ``stop`` (wind down) or ``abort`` (stop at once); members poll it
``done``           hash generator_id → final statistics JSON
=================  ==========================================================================

Member k of n runs sessions k, k+n, k+2n, ... of the population order, so every tenant is
spread over every member and the shares differ by at most one session.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
import typing
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from generators.errors import CoordinationError
from generators.profile_file import check_run_data
from generators.stats import GeneratorStats

START_DELAY_S = 0.5
HEARTBEAT_TTL_MS = 5000
Signal = Literal["stop", "abort"]
EVENTS_MODES = ("kafka", "jsonl", "none")


def prefix(experiment_id: str) -> str:
    return f"aftershock:{experiment_id}:gen:"


@dataclass(frozen=True, slots=True)
class Plan:
    run_file: dict[str, Any]
    members: int
    options: dict[str, Any]

    def to_json(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str, where: str = "generator plan") -> Plan:
        """The plan in ``raw``, checked through (its run file too); raises ``CoordinationError``
        naming ``where`` (the Redis key it was read from) and the field."""

        def bad(why: str) -> CoordinationError:
            return CoordinationError(f"{where}: {why}")

        data = _json_object(raw, where)
        for key in ("members", "run_file", "options"):
            if key not in data:
                raise bad(f"{key}: missing")
        members, run_file, options = data["members"], data["run_file"], data["options"]
        if type(members) is not int or members < 1:
            raise bad(f"members: a whole number of at least 1 was expected, not {members!r}")
        if not isinstance(run_file, dict):
            raise bad(f"run_file: a JSON object was expected, not {type(run_file).__name__}")
        if not isinstance(options, dict):
            raise bad(f"options: a JSON object was expected, not {type(options).__name__}")
        if options.get("events", "none") not in EVENTS_MODES:
            raise bad(f"options.events: one of {', '.join(EVENTS_MODES)} was expected")
        bootstrap = options.get("kafka_bootstrap")
        if bootstrap is not None and not isinstance(bootstrap, str):
            raise bad("options.kafka_bootstrap: text or null was expected")
        _, problems = check_run_data(run_file, within=("run_file",))
        if problems:
            raise bad("invalid run file:\n  " + "\n  ".join(problems))
        return cls(run_file=run_file, members=members, options=options)


def _json_object(raw: bytes | str, where: str) -> dict[str, Any]:
    """The JSON object in ``raw`` (read from Redis at ``where``), else ``CoordinationError``."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CoordinationError(f"{where}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CoordinationError(f"{where}: a JSON object was expected, not {type(data).__name__}")
    return data


_STATS_TYPES = typing.get_type_hints(GeneratorStats)


def stats_from_json(raw: bytes | str, where: str) -> GeneratorStats:
    """A member's statistics as it wrote them to Redis (``where``: the key, and the field of a
    hash); raises ``CoordinationError`` naming ``where`` and the field."""
    data = _json_object(raw, where)
    values: dict[str, Any] = {}
    for name, kind in _STATS_TYPES.items():
        if name not in data:
            raise CoordinationError(f"{where}: {name}: missing")
        value = values[name] = data[name]
        if kind is int:
            ok, expected = type(value) is int and value >= 0, "a count"
        else:  # float, or float | None
            number = type(value) in (int, float) and math.isfinite(value)
            ok, expected = number or (value is None and kind is not float), "a number"
        if not ok:
            raise CoordinationError(f"{where}: {name}: {expected} was expected, not {value!r:.40}")
    return GeneratorStats(**values)


class Coordination:
    """One process's view of a distributed experiment. Async context manager (owns the client)."""

    def __init__(self, redis_url: str, experiment_id: str) -> None:
        self.experiment_id = experiment_id
        self.prefix = prefix(experiment_id)
        self._redis: aioredis.Redis = aioredis.Redis.from_url(redis_url)

    async def __aenter__(self) -> Coordination:
        try:
            await self._redis.ping()
        except RedisError as exc:
            await self._redis.aclose()
            raise CoordinationError(f"cannot reach Redis for coordination: {exc}") from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._redis.aclose()

    def _k(self, name: str) -> str:
        return self.prefix + name

    # coordinator -------------------------------------------------------------------------------

    async def publish_plan(self, plan: Plan) -> None:
        if not await self._redis.set(self._k("plan"), plan.to_json(), nx=True):
            raise CoordinationError(
                f"experiment {self.experiment_id!r} already has a generator plan; "
                "choose another experiment id"
            )

    async def send_signal(self, signal: Signal) -> None:
        await self._redis.set(self._k("signal"), signal)

    async def heartbeats(self) -> dict[str, GeneratorStats]:
        out: dict[str, GeneratorStats] = {}
        async for key in self._redis.scan_iter(match=self._k("hb:*"), count=1000):
            raw = await self._redis.get(key)
            if raw is not None:
                text = key if isinstance(key, str) else key.decode(errors="replace")
                name = text.removeprefix(self._k("hb:"))
                out[name] = stats_from_json(raw, text)
        return out

    async def finished(self) -> dict[str, GeneratorStats]:
        raw = await self._redis.hgetall(self._k("done"))
        out: dict[str, GeneratorStats] = {}
        for key, value in raw.items():
            name = key if isinstance(key, str) else key.decode(errors="replace")
            out[name] = stats_from_json(value, f"{self._k('done')}[{name}]")
        return out

    # member ------------------------------------------------------------------------------------

    async def wait_plan(self, timeout_s: float) -> Plan:
        deadline = time.monotonic() + timeout_s
        while True:
            raw = await self._redis.get(self._k("plan"))
            if raw is not None:
                return Plan.from_json(raw, self._k("plan"))
            if time.monotonic() > deadline:
                raise CoordinationError(
                    f"no generator plan for experiment {self.experiment_id!r} after "
                    f"{timeout_s:g} s: start the coordinator (aftershock generate FILE "
                    "--processes N) first"
                )
            await asyncio.sleep(0.1)

    async def join(self, generator_id: str, plan: Plan) -> int:
        """Take the next member index; refuses more members than the plan has."""
        existing = await self._redis.hget(self._k("members"), generator_id)
        if existing is not None:
            return int(existing)
        index = int(await self._redis.incr(self._k("seq"))) - 1
        if index >= plan.members:
            raise CoordinationError(
                f"experiment {self.experiment_id!r} already has its {plan.members} generators"
            )
        await self._redis.hset(self._k("members"), generator_id, index)
        return index

    async def ready_and_wait_start(self, generator_id: str, members: int, timeout_s: float) -> int:
        """The start barrier: returns the wall-clock ns at which the load phase starts."""
        await self._redis.sadd(self._k("ready"), generator_id)
        if await self._redis.scard(self._k("ready")) >= members:
            start = time.time_ns() + int(START_DELAY_S * 1e9)
            await self._redis.set(self._k("start_at"), start, nx=True)
        deadline = time.monotonic() + timeout_s
        while True:
            raw = await self._redis.get(self._k("start_at"))
            if raw is not None:
                return int(raw)
            if await self.signal() is not None:
                raise CoordinationError("the experiment was stopped before it started")
            if time.monotonic() > deadline:
                have = await self._redis.scard(self._k("ready"))
                raise CoordinationError(
                    f"start barrier: only {have} of {members} generators joined within "
                    f"{timeout_s:g} s"
                )
            await asyncio.sleep(0.05)

    async def signal(self) -> Signal | None:
        raw = await self._redis.get(self._k("signal"))
        if raw in (b"stop", b"abort"):
            return "stop" if raw == b"stop" else "abort"
        return None

    async def heartbeat(self, generator_id: str, stats: GeneratorStats) -> None:
        await self._redis.set(
            self._k(f"hb:{generator_id}"),
            orjson.dumps(dataclasses.asdict(stats)),
            px=HEARTBEAT_TTL_MS,
        )

    async def done(self, generator_id: str, stats: GeneratorStats) -> None:
        await self._redis.hset(
            self._k("done"), generator_id, orjson.dumps(dataclasses.asdict(stats))
        )


def wall_to_monotonic(wall_ns: int) -> float:
    return time.monotonic() + (wall_ns - time.time_ns()) / 1e9
