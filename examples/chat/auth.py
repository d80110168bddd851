"""Access and refresh tokens held in memory, with an injectable clock.

Refreshing rotates the pair: the old refresh token stops working, the old access token lives
until it expires. Logging out revokes the access token and the refresh token issued with it.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import AuthError, LoginRefused, TokenExpired

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True, slots=True)
class Identity:
    tenant: str
    user: str


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in_s: float


@dataclass(frozen=True, slots=True)
class _Grant:
    identity: Identity
    expires_at: float
    partner: str  # the other token of the same pair


class TokenStore:
    def __init__(
        self,
        *,
        token_ttl_s: float,
        refresh_ttl_s: float,
        password: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._token_ttl_s = token_ttl_s
        self._refresh_ttl_s = refresh_ttl_s
        self._password = password
        self._clock = clock
        self._access: dict[str, _Grant] = {}
        self._refresh: dict[str, _Grant] = {}

    def login(self, tenant: str, user: str, password: str) -> TokenPair:
        if self._password is not None and not hmac.compare_digest(
            password.encode(), self._password.encode()
        ):
            raise LoginRefused("wrong password")
        return self._issue(Identity(tenant, user))

    def refresh(self, refresh_token: str) -> TokenPair:
        grant = self._refresh.pop(refresh_token, None)
        if grant is None:
            raise AuthError("unknown or revoked refresh token")
        if self._clock() >= grant.expires_at:
            raise TokenExpired("refresh token expired")
        return self._issue(grant.identity)

    def verify(self, access_token: str) -> Identity:
        grant = self._access.get(access_token)
        if grant is None:
            raise AuthError("unknown or revoked access token")
        if self._clock() >= grant.expires_at:
            del self._access[access_token]
            raise TokenExpired("access token expired")
        return grant.identity

    def logout(self, access_token: str) -> None:
        self.verify(access_token)
        grant = self._access.pop(access_token)
        self._refresh.pop(grant.partner, None)

    def purge_expired(self) -> int:
        """Forget expired tokens; returns how many were dropped."""
        now = self._clock()
        dropped = 0
        for table in (self._access, self._refresh):
            dead = [t for t, g in table.items() if now >= g.expires_at]
            for token in dead:
                del table[token]
            dropped += len(dead)
        return dropped

    def _issue(self, identity: Identity) -> TokenPair:
        now = self._clock()
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(32)
        self._access[access] = _Grant(identity, now + self._token_ttl_s, refresh)
        self._refresh[refresh] = _Grant(identity, now + self._refresh_ttl_s, access)
        return TokenPair(access, refresh, self._token_ttl_s)
