"""Game-day controls through Redis: pause, resume, abort, skip.

``aftershock control CMD EXPERIMENT_ID`` pushes a JSON command onto the list
``aftershock:{experiment_id}:control``; the running injector pops it, acts, and records an
``experiment.control`` event. While it runs, the injector keeps ``aftershock:{experiment_id}:state``
(JSON: status, run_id, offset) fresh with a short expiry, so a command sent to an experiment
nobody runs is reported instead of silently waiting.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
from typing import TYPE_CHECKING, Literal

import redis.asyncio as aioredis  # noqa: TC002
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.exceptions import RedisError

from injector.errors import ControlChannelError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

Command = Literal["pause", "resume", "abort", "skip"]


class ControlCommand(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    command: Command
    issued_by: str = ""
    ts_ns: int = Field(default_factory=time.time_ns)


class RunState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    status: str
    run_id: str
    offset_s: float
    pid: int = Field(default_factory=os.getpid)


def control_key(experiment_id: str) -> str:
    return f"aftershock:{experiment_id}:control"


def state_key(experiment_id: str) -> str:
    return f"aftershock:{experiment_id}:state"


def default_issuer() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


async def send_command(
    client: aioredis.Redis, experiment_id: str, command: Command, issued_by: str = ""
) -> RunState | None:
    """Queue a command; returns the run's last published state (None: no run is listening)."""
    cmd = ControlCommand(command=command, issued_by=issued_by or default_issuer())
    try:
        await client.lpush(control_key(experiment_id), cmd.model_dump_json())
        raw = await client.get(state_key(experiment_id))
    except RedisError as exc:
        raise ControlChannelError(f"cannot send {command!r} through Redis: {exc}") from exc
    if raw is None:
        return None
    try:
        return RunState.model_validate_json(raw)
    except ValidationError:
        return None


async def publish_state(
    client: aioredis.Redis, experiment_id: str, state: RunState, ttl_s: float = 5.0
) -> None:
    await client.set(state_key(experiment_id), state.model_dump_json(), px=int(ttl_s * 1000))


async def clear_state(client: aioredis.Redis, experiment_id: str) -> None:
    await client.delete(state_key(experiment_id))


async def commands(
    client: aioredis.Redis, experiment_id: str, *, poll_s: float = 0.5
) -> AsyncIterator[ControlCommand]:
    """Commands for ``experiment_id`` in the order they were sent. Commands queued before the
    run started are dropped: a stale "abort" must not kill a new run."""
    key = control_key(experiment_id)
    await client.delete(key)
    while True:
        item = await client.brpop([key], timeout=poll_s)
        if item is None:
            continue
        _key, raw = item
        try:
            yield ControlCommand.model_validate_json(raw)
        except ValidationError:
            continue
