"""The population: tenants × users × sessions per user, in the order sessions are started.

``round_robin`` interleaves tenants (and within a tenant, users before second sessions of the
same user) so every tenant is present from the first seconds of a ramp; ``random`` shuffles with
the profile's seed. Distributed generators take every n-th session of the same order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from schemas.load import LoadProfile, TenantSpec


@dataclass(frozen=True, slots=True)
class SessionPlan:
    index: int
    tenant: str
    user: str
    session: str
    channels: tuple[str, ...]


def _tenant_sessions(t: TenantSpec, tag: str) -> list[tuple[str, str]]:
    return [
        (f"{t.name}-u{u}", f"{t.name}-u{u}-s{s}{tag}")
        for s in range(t.sessions_per_user)
        for u in range(t.users)
    ]


def build_population(profile: LoadProfile, session_tag: str = "") -> list[SessionPlan]:
    """The sessions, named ``<tenant>-u<k>-s<j><session_tag>`` (users ``<tenant>-u<k>``)."""
    queues = [(t, _tenant_sessions(t, session_tag)) for t in profile.tenants]
    order: list[tuple[TenantSpec, str, str]] = []
    longest = max(len(q) for _, q in queues)
    for i in range(longest):
        for tenant, q in queues:
            if i < len(q):
                order.append((tenant, *q[i]))
    if profile.assignment == "random":
        random.Random(profile.seed if profile.seed is not None else 0).shuffle(order)
    return [
        SessionPlan(index=i, tenant=t.name, user=u, session=s, channels=tuple(t.channels))
        for i, (t, u, s) in enumerate(order)
    ]


def shard(plans: list[SessionPlan], member: int, members: int) -> list[SessionPlan]:
    """Member ``member`` (0-based) of ``members`` generators takes every members-th session."""
    if not 0 <= member < members:
        raise ValueError(f"member {member} out of range for {members} generators")
    return plans[member::members]
