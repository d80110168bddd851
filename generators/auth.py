"""The login → access/refresh token → refresh before expiry → logout flow, per user.

One :class:`AuthManager` serves every session of a generator: a user's sessions share one login,
tokens are refreshed ``refresh_before_s`` ahead of expiry by one scheduler loop, and every
failure is recorded as a ``session.error`` with phase ``auth``.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
import orjson

from generators.clock import wait_any
from generators.errors import AuthError

if TYPE_CHECKING:
    from collections.abc import Callable

    from generators.clock import Clock
    from generators.recorder import Recorder
    from schemas.load import AuthFlow

Who = tuple[str, str, str]
NO_TRACE: tuple[None, None] = (None, None)


@dataclass
class _UserAuth:
    tenant: str
    user: str
    who: Who
    access: str | None = None
    refresh: str | None = None
    expires_at: float = 0.0
    login: asyncio.Future[str] | None = None
    generation: int = 0
    listeners: list[Callable[[str], None]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AuthStats:
    logins: int
    login_failures: int
    refreshes: int
    refresh_failures: int
    logouts: int
    logout_failures: int


class AuthManager:
    def __init__(
        self,
        flow: AuthFlow,
        recorder: Recorder,
        clock: Clock,
        *,
        password: str = "aftershock",
        timeout_s: float = 10.0,
        max_parallel: int = 64,
    ) -> None:
        self.flow = flow
        self._recorder = recorder
        self._clock = clock
        self._password = password
        self._http = httpx.AsyncClient(
            base_url=flow.base_url,
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=max_parallel),
        )
        self._users: dict[str, _UserAuth] = {}
        self._due: list[tuple[float, int, str]] = []
        self._wake: asyncio.Future[None] | None = None
        self._limit = asyncio.Semaphore(max_parallel)
        self._counts = dict.fromkeys(
            (
                "logins",
                "login_failures",
                "refreshes",
                "refresh_failures",
                "logouts",
                "logout_failures",
            ),
            0,
        )

    def statistics(self) -> AuthStats:
        return AuthStats(**self._counts)

    async def token(self, who: Who, on_refresh: Callable[[str], None] | None = None) -> str:
        """A valid access token for the user of ``who``; logs in once per user."""
        tenant, user, _ = who
        state = self._users.get(user)
        if state is None:
            state = self._users[user] = _UserAuth(tenant, user, who)
        if on_refresh is not None and on_refresh not in state.listeners:
            state.listeners.append(on_refresh)
        if state.access is not None and self._clock.monotonic() < state.expires_at:
            return state.access
        if state.login is None or state.login.done():
            state.login = asyncio.get_running_loop().create_future()
            login = state.login
            try:
                await self._login(state)
            except AuthError as exc:
                login.set_exception(exc)
                login.exception()  # other waiters see it; nobody else may be waiting
                raise
            assert state.access is not None
            login.set_result(state.access)
            return state.access
        return await asyncio.shield(state.login)

    async def _login(self, state: _UserAuth) -> None:
        body = {"tenant": state.tenant, "user": state.user, "password": self._password}
        try:
            data = await self._post(self.flow.login_path, body, None)
            self._store(state, data)
        except AuthError as exc:
            self._counts["login_failures"] += 1
            self._recorder.error(state.who, "LoginFailed", str(exc), "auth", NO_TRACE)
            raise
        self._counts["logins"] += 1

    def _store(self, state: _UserAuth, data: dict[str, object]) -> None:
        access, refresh, ttl = (
            data.get("access_token"),
            data.get("refresh_token"),
            data.get("expires_in_s"),
        )
        if not isinstance(access, str):
            raise AuthError(f"malformed token response: no access_token text in {sorted(data)}")
        if not access or not access.isascii() or not access.isprintable() or " " in access:
            # It goes into an Authorization header (as HTTP clients encode them: ASCII).
            raise AuthError("malformed token response: access_token is not printable ASCII")
        # A token that expires at once (or at no number) would be refreshed over and over.
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < math.inf:
            raise AuthError(
                f"malformed token response: expires_in_s must be a positive number of seconds, "
                f"not {ttl!r:.40}"
            )
        state.access = access
        state.refresh = refresh if isinstance(refresh, str) else None
        now = self._clock.monotonic()
        state.expires_at = now + float(ttl)
        state.generation += 1
        refresh_at = max(now, state.expires_at - self.flow.refresh_before_s)
        heapq.heappush(self._due, (refresh_at, state.generation, state.user))
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        for listener in state.listeners:
            listener(access)

    async def _post(
        self, path: str, body: dict[str, str] | None, bearer: str | None
    ) -> dict[str, object]:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else None
        async with self._limit:
            try:
                resp = await self._http.post(path, json=body, headers=headers)
            except httpx.HTTPError as exc:
                raise AuthError(f"POST {path}: {type(exc).__name__}: {exc}") from exc
        if resp.status_code >= 300:
            raise AuthError(
                f"POST {path} answered {resp.status_code}: {resp.text[:200]}", resp.status_code
            )
        if resp.status_code == 204 or not resp.content:
            return {}
        try:
            data = orjson.loads(resp.content)  # bounded depth; no NaN or Infinity
        except orjson.JSONDecodeError as exc:
            raise AuthError(f"POST {path} answered non-JSON: {resp.text[:200]}") from exc
        if not isinstance(data, dict):
            raise AuthError(f"POST {path} answered {type(data).__name__}, not an object")
        return data

    async def _refresh(self, state: _UserAuth) -> None:
        try:
            if state.refresh is None:
                raise AuthError("no refresh token was issued")
            data = await self._post(self.flow.refresh_path, {"refresh_token": state.refresh}, None)
            self._store(state, data)
        except AuthError as exc:
            self._counts["refresh_failures"] += 1
            state.access = None  # the next session that needs a token logs in again
            self._recorder.error(state.who, "RefreshFailed", str(exc), "auth", NO_TRACE)
            return
        self._counts["refreshes"] += 1

    async def run(self) -> None:
        """Refresh tokens ahead of expiry until cancelled."""
        async with asyncio.TaskGroup() as tg:
            while True:
                now = self._clock.monotonic()
                while self._due and self._due[0][0] <= now:
                    _, generation, user = heapq.heappop(self._due)
                    state = self._users[user]
                    if generation == state.generation and state.access is not None:
                        tg.create_task(self._refresh(state))
                self._wake = asyncio.get_running_loop().create_future()
                deadline = self._due[0][0] if self._due else None
                await wait_any(self._clock, [self._wake], deadline)

    async def aclose(self) -> None:
        """Log every logged-in user out, then close the HTTP client. Idempotent."""
        if self._http.is_closed:
            return
        try:
            async with asyncio.TaskGroup() as tg:
                for state in self._users.values():
                    if state.access is not None:
                        tg.create_task(self._logout(state))
        finally:
            await self._http.aclose()

    async def _logout(self, state: _UserAuth) -> None:
        token, state.access = state.access, None
        try:
            await self._post(self.flow.logout_path, None, token)
        except AuthError as exc:
            self._counts["logout_failures"] += 1
            self._recorder.error(state.who, "LogoutFailed", str(exc), "auth", NO_TRACE)
            return
        self._counts["logouts"] += 1
