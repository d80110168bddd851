"""Settings of the chat sample and its switchable defects."""

from __future__ import annotations

import enum
import re
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from collections.abc import Iterable

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
"""Tenants, users and channels: the tenant is the first segment of the Redis channel
``chat:{tenant}:{channel}``, so none of them may contain ``:``."""


class Bug(enum.StrEnum):
    """Defects that can be switched on for demos and tests; all are off by default."""

    ISOLATION = "isolation"
    SLOW_RECOVERY = "slow_recovery"


class ChatConfig(BaseModel):
    """Tunables of the gateway and the message service (all optional)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    token_ttl_s: float = Field(default=300.0, gt=0, description="Access token lifetime.")
    refresh_ttl_s: float = Field(default=3600.0, gt=0, description="Refresh token lifetime.")
    password: str | None = Field(
        default=None, description="When set, logins must use this password; else any works."
    )
    slow_recovery_s: float = Field(
        default=20.0, ge=0, description="Delay before reconnecting to Redis under slow_recovery."
    )
    slot_warm_s: float = Field(
        default=1.0,
        ge=0,
        description="A subscription slot released less than this long ago counts as warm.",
    )
    redis_timeout_s: float = Field(default=1.0, gt=0, description="Per-command Redis timeout.")
    redis_ping_interval_s: float = Field(
        default=0.5, gt=0, description="How often the subscriber connection is pinged."
    )
    redis_dead_after_s: float = Field(
        default=3.0, gt=0, description="Redis silent this long (own loop lag excluded) is down."
    )
    link_heartbeat_s: float = Field(
        default=0.5, gt=0, description="Message service -> gateway status frame interval."
    )
    link_timeout_s: float = Field(
        default=2.5, gt=0, description="Gateway drops a link silent for this long."
    )
    backoff_initial_s: float = Field(default=0.05, gt=0, description="First reconnect delay.")
    backoff_max_s: float = Field(default=1.0, gt=0, description="Longest reconnect delay.")
    outbox_limit: int = Field(
        default=4096, ge=1, description="Frames queued to one WebSocket before it is closed."
    )
    max_frame_bytes: int = Field(
        default=1 << 20, ge=1024, description="Largest WebSocket message or link frame."
    )


class Defects:
    """Which defects are on. Mutable at run time; shared by the gateway and message service
    of one process (``POST /admin/bugs`` also forwards changes over the link)."""

    def __init__(self, bugs: Iterable[Bug | str] = (), *, slow_recovery_s: float = 20.0) -> None:
        self._on: set[Bug] = {Bug(b) for b in bugs}
        self.slow_recovery_s = slow_recovery_s

    def enabled(self, bug: Bug) -> bool:
        return bug in self._on

    def set(self, bug: Bug, on: bool) -> None:
        if on:
            self._on.add(bug)
        else:
            self._on.discard(bug)

    def snapshot(self) -> dict[str, bool | float]:
        state: dict[str, bool | float] = {b.value: b in self._on for b in Bug}
        state["slow_recovery_s"] = self.slow_recovery_s
        return state


class BugsUpdate(BaseModel):
    """Body of ``POST /admin/bugs``: only the keys given change."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    isolation: bool | None = None
    slow_recovery: bool | None = None
    slow_recovery_s: float | None = Field(default=None, ge=0)

    def apply(self, defects: Defects) -> None:
        if self.isolation is not None:
            defects.set(Bug.ISOLATION, self.isolation)
        if self.slow_recovery is not None:
            defects.set(Bug.SLOW_RECOVERY, self.slow_recovery)
        if self.slow_recovery_s is not None:
            defects.slow_recovery_s = self.slow_recovery_s
