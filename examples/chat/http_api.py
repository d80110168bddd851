"""The gateway's HTTP endpoints: auth, load targets, health and the defect switches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeVar

import orjson
from aiohttp import web
from opentelemetry.trace import SpanKind
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .config import NAME_RE, BugsUpdate
from .errors import AuthError, LoginRefused, UpstreamUnavailable
from .telemetry import context_from_headers, tracer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .auth import TokenStore
    from .config import Defects

ITEMS = [{"id": i, "name": f"item-{i}", "price_cents": 100 * i + 99} for i in range(1, 6)]

_M = TypeVar("_M", bound=BaseModel)


class LoginRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)
    tenant: str = Field(pattern=NAME_RE.pattern)
    user: str = Field(pattern=NAME_RE.pattern)
    password: str = ""


class RefreshRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)
    refresh_token: str


class HttpError(Exception):
    """Answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class GatewayView(Protocol):
    @property
    def healthy(self) -> bool: ...

    def health(self) -> dict[str, str]: ...

    async def update_bugs(self, update: BugsUpdate) -> None: ...


class HttpApi:
    def __init__(self, gateway: GatewayView, tokens: TokenStore, defects: Defects) -> None:
        self._gateway = gateway
        self.tokens = tokens
        self._defects = defects

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/auth/login", self._login)
        app.router.add_post("/auth/refresh", self._refresh)
        app.router.add_post("/auth/logout", self._logout)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_post("/api/echo", self._api_echo)
        app.router.add_get("/api/items", self._api_items)
        app.router.add_get("/admin/bugs", self._get_bugs)
        app.router.add_post("/admin/bugs", self._post_bugs)

    @web.middleware
    async def errors(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        try:
            if request.path == "/ws":
                return await handler(request)
            with tracer.start_as_current_span(
                f"{request.method} {request.path}",
                context=context_from_headers(request.headers),
                kind=SpanKind.SERVER,
            ) as span:
                response = await handler(request)
                span.set_attribute("http.response.status_code", response.status)
                return response
        except HttpError as exc:
            return _json({"error": str(exc)}, exc.status)
        except (AuthError, LoginRefused) as exc:
            return _json({"error": str(exc)}, 401)
        except UpstreamUnavailable as exc:
            return _json({"error": str(exc)}, 503)

    async def _login(self, request: web.Request) -> web.StreamResponse:
        body = _model(LoginRequest, await _json_body(request), "login")
        pair = self.tokens.login(body.tenant, body.user, body.password)
        return _json(
            {
                "access_token": pair.access_token,
                "refresh_token": pair.refresh_token,
                "expires_in_s": pair.expires_in_s,
            }
        )

    async def _refresh(self, request: web.Request) -> web.StreamResponse:
        body = _model(RefreshRequest, await _json_body(request), "refresh")
        pair = self.tokens.refresh(body.refresh_token)
        return _json(
            {
                "access_token": pair.access_token,
                "refresh_token": pair.refresh_token,
                "expires_in_s": pair.expires_in_s,
            }
        )

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        self.tokens.logout(self._require_bearer(request))
        return web.Response(status=204)

    async def _healthz(self, request: web.Request) -> web.StreamResponse:
        return _json(self._gateway.health(), 200 if self._gateway.healthy else 503)

    async def _api_echo(self, request: web.Request) -> web.StreamResponse:
        self.tokens.verify(self._require_bearer(request))
        body = await request.read()
        return web.Response(body=body, content_type=request.content_type)

    async def _api_items(self, request: web.Request) -> web.StreamResponse:
        return _json(ITEMS)

    async def _get_bugs(self, request: web.Request) -> web.StreamResponse:
        return _json(self._defects.snapshot())

    async def _post_bugs(self, request: web.Request) -> web.StreamResponse:
        update = _model(BugsUpdate, await _json_body(request), "bugs")
        try:
            await self._gateway.update_bugs(update)
        except UpstreamUnavailable as exc:
            raise HttpError(503, f"message service unreachable; nothing changed ({exc})") from exc
        return _json(self._defects.snapshot())

    def _require_bearer(self, request: web.Request) -> str:
        token = bearer_token(request)
        if not token:
            raise HttpError(401, "missing Authorization: Bearer <access token>")
        return token


def bearer_token(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def _json_body(request: web.Request) -> object:
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, f"request body is not JSON: {exc}") from exc


def _model(model: type[_M], raw: object, what: str) -> _M:
    if not isinstance(raw, dict):
        raise HttpError(400, f"{what}: request body must be a JSON object")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors()
        )
        raise HttpError(400, f"{what}: {problems}") from exc


def _json(value: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(value), status=status, content_type="application/json")
