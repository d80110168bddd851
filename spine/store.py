"""Live results in Redis, for the CLI and dashboards.

Layout, per experiment ``E``:

- ``aftershock:E:results:<kind>`` — a hash: field = result key (``scope/scope_key/id``),
  value = the result record as JSON (``kind`` without its ``result.`` prefix, e.g. ``episode``);
- ``aftershock:E:results:stats`` — a hash of analyzer counters (events, duplicates, late, …);
- ``aftershock:E:results:updated_ns`` — wall-clock ns of the last write;
- ``aftershock:E:results:kinds`` — a set of the kinds written;
- ``aftershock:E:results:span`` — what the stored results cover: ``run_id``, ``first_ns`` and
  ``end_ns`` (event time), ``final`` (``1`` once the analysis saw the run end and finished) and
  ``topic`` (the events topic the run was published to; absent when unknown).
  Results marked final are never rewritten by a re-analysis of the same events, and a new
  analyzer worker starts reading its events topic where the stored spans *of that topic* say
  analysis stopped: a run logged to another topic says nothing about where to start in this one.

Writes are idempotent (same key, same value), so replaying into Redis is harmless. A new run of
an experiment starts by clearing what an earlier run left (:func:`clear_results`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from schemas.events import EventAdapter

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from redis.asyncio import Redis

    from schemas.results import ResultEvent


def prefix(experiment_id: str) -> str:
    return f"aftershock:{experiment_id}:results"


def result_field(r: ResultEvent) -> str:
    ident = (
        getattr(r, "episode_id", None)
        or getattr(r, "burst_id", None)
        or getattr(r, "source_event_id", None)
        or getattr(r, "group_id", None)
        or getattr(r, "fault_type", None)
        or getattr(r, "phase", "")
    )
    return f"{r.scope}/{r.scope_key}/{ident}"


async def write_results(
    redis: Redis,
    experiment_id: str,
    results: Sequence[ResultEvent],
    stats: Mapping[str, object] | None = None,
) -> None:
    base = prefix(experiment_id)
    pipe = redis.pipeline(transaction=False)
    kinds = set()
    for r in results:
        kind = r.kind.removeprefix("result.")
        kinds.add(kind)
        pipe.hset(f"{base}:{kind}", result_field(r), r.model_dump_json())
    if kinds:
        pipe.sadd(f"{base}:kinds", *sorted(kinds))
    if stats is not None:
        pipe.hset(
            f"{base}:stats",
            mapping={k: "" if v is None else str(v) for k, v in stats.items()},
        )
    pipe.set(f"{base}:updated_ns", str(time.time_ns()))
    await pipe.execute()


async def clear_results(redis: Redis, experiment_id: str) -> None:
    """Delete every result stored for the experiment (its kinds, counters and update time)."""
    base = prefix(experiment_id)
    kinds = [
        k.decode() if isinstance(k, bytes) else k for k in await redis.smembers(f"{base}:kinds")
    ]
    await redis.delete(
        *(f"{base}:{kind}" for kind in kinds),
        f"{base}:kinds",
        f"{base}:stats",
        f"{base}:updated_ns",
    )


async def read_results(redis: Redis, experiment_id: str) -> list[ResultEvent]:
    """Every result stored for the experiment, sorted like the analyzer emits them."""
    base = prefix(experiment_id)
    kinds = sorted(
        k.decode() if isinstance(k, bytes) else k for k in await redis.smembers(f"{base}:kinds")
    )
    out: list[ResultEvent] = []
    for kind in kinds:
        values = await redis.hgetall(f"{base}:{kind}")
        for raw in values.values():
            ev = EventAdapter.validate_json(raw)
            out.append(ev)  # type: ignore[arg-type]
    return out


@dataclass(frozen=True)
class Span:
    """What an experiment's stored results cover (event time, ns)."""

    run_id: str
    first_ns: int
    end_ns: int
    final: bool
    topic: str = ""
    """The events topic the run was published to; empty when unknown."""


async def write_span(redis: Redis, experiment_id: str, span: Span) -> None:
    await redis.hset(
        f"{prefix(experiment_id)}:span",
        mapping={
            "run_id": span.run_id,
            "first_ns": str(span.first_ns),
            "end_ns": str(span.end_ns),
            "final": "1" if span.final else "0",
            "topic": span.topic,
        },
    )


def _text(v: bytes | str) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else v


def _span(raw: Mapping[bytes | str, bytes | str]) -> Span | None:
    text = {_text(k): _text(v) for k, v in raw.items()}
    try:
        return Span(
            run_id=text["run_id"],
            first_ns=int(text["first_ns"]),
            end_ns=int(text["end_ns"]),
            final=text["final"] == "1",
            topic=text.get("topic", ""),
        )
    except (KeyError, ValueError):
        return None


async def read_span(redis: Redis, experiment_id: str) -> Span | None:
    return _span(await redis.hgetall(f"{prefix(experiment_id)}:span"))


async def resume_point_ns(redis: Redis, topic: str) -> int | None:
    """Where analysis of the events topic ``topic`` should resume (event time, ns), by the
    stored spans of runs published to it (or to an unrecorded topic): the start of the earliest
    experiment whose analysis is not final, else the end of the latest final one; None when no
    such results are stored. Runs of other topics are other logs: their times say nothing
    about this one."""
    unfinished: list[int] = []
    finished: list[int] = []
    async for key in redis.scan_iter(match="aftershock:*:results:span", count=500):
        span = _span(await redis.hgetall(key))
        if span is not None and span.topic in ("", topic):
            (finished if span.final else unfinished).append(
                span.end_ns if span.final else span.first_ns
            )
    if unfinished:
        return min(unfinished)
    return max(finished) if finished else None
