"""Controller over the Toxiproxy HTTP API: the embedded Aftershock fault proxy or a real Toxiproxy.

Built on ``toxiproxy-python``'s transport (``APIConsumer``). Its quirks are wrapped here:
host and port are class attributes shared by the whole process (each controller gets its own
subclass instead), requests carry no timeout (every call here has one), 5xx answers are not
raised (they are, here), every 409 is ``ProxyExists`` even for toxics (mapped by path), and calls
block (they run in a worker thread). Requests made under :func:`attributed` carry the
experiment, run and fault they act for (``X-Aftershock-*`` headers): the embedded proxy stamps
its own fault events with them, a stock Toxiproxy ignores them. The Aftershock extensions —
``/capabilities``, leases, ``match`` — ride on the same transport; a server that answers 404
to ``/capabilities`` is a standard Toxiproxy and gets standard requests only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import requests
from toxiproxy import exceptions as tp_exc
from toxiproxy.api import APIConsumer

from injector.errors import (
    BadRequest,
    ControllerError,
    ProxyExists,
    ProxyNotFound,
    ServerError,
    ServerTimeout,
    ServerUnreachable,
    ToxicExists,
    ToxicNotFound,
)
from schemas.experiment import STANDARD_TOXIC_TYPES

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@dataclass(frozen=True, slots=True)
class Attribution:
    """The experiment, run and (optionally) fault a request acts for."""

    experiment_id: str
    run_id: str
    fault_id: str | None = None

    def headers(self) -> dict[str, str]:
        values = {
            "X-Aftershock-Experiment": self.experiment_id,
            "X-Aftershock-Run": self.run_id,
            "X-Aftershock-Fault": self.fault_id,
        }
        # A header carries printable ASCII only; a name that is not is left out (the proxy's
        # events then go unattributed, the injector's own events still name it).
        return {k: v for k, v in values.items() if v and v.isascii() and v.isprintable()}


_attribution: ContextVar[Attribution | None] = ContextVar("aftershock_attribution", default=None)


@contextlib.contextmanager
def attributed(attribution: Attribution) -> Iterator[None]:
    """Requests made inside (by any controller, in this task) carry ``attribution``."""
    token = _attribution.set(attribution)
    try:
        yield
    finally:
        _attribution.reset(token)


def _headers() -> dict[str, str]:
    a = _attribution.get()
    return {} if a is None else a.headers()


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the server at ``api_url`` can do."""

    server: str
    """``"aftershock"`` or ``"toxiproxy"``."""
    version: str
    toxics: frozenset[str]
    features: frozenset[str]

    @property
    def leases(self) -> bool:
        return "leases" in self.features

    @property
    def match(self) -> bool:
        return "match" in self.features

    def lacks(self, needs: frozenset[str]) -> list[str]:
        """The subset of ``needs`` (``"toxic:<type>"``, ``"match"``, ``"leases"``) not offered."""
        out = []
        for need in sorted(needs):
            kind, _, name = need.partition(":")
            if (kind == "toxic" and name not in self.toxics) or (
                kind != "toxic" and need not in self.features
            ):
                out.append(need)
        return out


STANDARD = Capabilities(
    server="toxiproxy", version="", toxics=STANDARD_TOXIC_TYPES, features=frozenset()
)


@dataclass(frozen=True, slots=True)
class ProxyInfo:
    name: str
    listen: str
    upstream: str
    enabled: bool
    toxics: tuple[ToxicInfo, ...] = ()

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ProxyInfo:
        return cls(
            name=str(d["name"]),
            listen=str(d.get("listen", "")),
            upstream=str(d.get("upstream", "")),
            enabled=bool(d.get("enabled", True)),
            toxics=tuple(ToxicInfo.from_json(t) for t in d.get("toxics") or ()),
        )


@dataclass(frozen=True, slots=True)
class ToxicInfo:
    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, Any] = field(default_factory=dict)
    ttl_ms: int | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ToxicInfo:
        ttl = d.get("ttl_ms")
        return cls(
            name=str(d["name"]),
            type=str(d.get("type", "")),
            stream=str(d.get("stream", "downstream")),
            toxicity=float(d.get("toxicity", 1.0)),
            attributes=dict(d.get("attributes") or {}),
            ttl_ms=int(ttl) if ttl is not None else None,
        )


class Controller(Protocol):
    """The operations the executor, the reaper and the Chaos Toolkit bridge need."""

    @property
    def api_url(self) -> str: ...

    @property
    def server_instance(self) -> str | None:
        """The server instance that answered last (None: the server does not say). Another
        value than before means the server restarted and lost what it had."""

    async def capabilities(self) -> Capabilities: ...

    async def list_proxies(self) -> dict[str, ProxyInfo]: ...

    async def get_proxy(self, name: str) -> ProxyInfo: ...

    async def create_proxy(
        self, name: str, upstream: str, listen: str = "127.0.0.1:0", enabled: bool = True
    ) -> ProxyInfo: ...

    async def update_proxy(self, name: str, body: dict[str, Any]) -> ProxyInfo: ...

    async def delete_proxy(self, name: str) -> None: ...

    async def list_toxics(self, proxy: str) -> list[ToxicInfo]: ...

    async def add_toxic(self, proxy: str, body: dict[str, Any]) -> ToxicInfo: ...

    async def remove_toxic(self, proxy: str, name: str) -> None: ...

    async def renew_toxic(self, proxy: str, name: str, ttl_ms: int) -> None: ...

    async def renew_proxy(self, proxy: str, ttl_ms: int) -> None: ...

    async def reset(self) -> None: ...


class ToxiproxyController:
    """:class:`Controller` over HTTP. ``assume_standard`` ignores the server's extensions (to
    treat the embedded proxy exactly like a stock Toxiproxy)."""

    def __init__(
        self, api_url: str, *, timeout_s: float = 5.0, assume_standard: bool = False
    ) -> None:
        parts = urlsplit(api_url if "//" in api_url else f"http://{api_url}")
        if parts.scheme != "http" or not parts.hostname:
            raise ControllerError(f"toxiproxy URL must be http://host:port, got {api_url!r}")
        self._api_url = f"http://{parts.hostname}:{parts.port or 8474}"
        self._timeout_s = timeout_s
        self._assume_standard = assume_standard
        self._caps: Capabilities | None = None
        self._instance: str | None = None
        # toxiproxy-python keeps host/port on the class: a subclass per controller keeps two
        # controllers in one process from talking to each other's server.
        self._api: type[APIConsumer] = type(
            "_Consumer", (APIConsumer,), {"host": parts.hostname, "port": parts.port or 8474}
        )

    @property
    def api_url(self) -> str:
        return self._api_url

    @property
    def server_instance(self) -> str | None:
        return self._instance

    # -- transport ----------------------------------------------------------------------------

    async def _call(
        self, what: str, fn: Callable[[], requests.Response], *, on: str = "proxy"
    ) -> requests.Response:
        try:
            async with asyncio.timeout(self._timeout_s + 1.0):
                resp = await asyncio.to_thread(fn)
        except TimeoutError as exc:
            raise ServerTimeout(f"{what}: no answer from {self._api_url}") from exc
        except tp_exc.NotFound as exc:
            cls = ToxicNotFound if on == "toxic" else ProxyNotFound
            raise cls(f"{what}: {_detail(exc)}", status=404) from exc
        except tp_exc.ProxyExists as exc:
            cls2 = ToxicExists if on == "toxic" else ProxyExists
            raise cls2(f"{what}: {_detail(exc)}", status=409) from exc
        except tp_exc.InvalidToxic as exc:
            raise BadRequest(f"{what}: {_detail(exc)}", status=400) from exc
        except requests.Timeout as exc:
            raise ServerTimeout(f"{what}: no answer from {self._api_url}") from exc
        except requests.ConnectionError as exc:
            raise ServerUnreachable(f"{what}: cannot reach {self._api_url}") from exc
        except requests.RequestException as exc:
            raise ControllerError(f"{what}: {exc}") from exc
        instance = resp.headers.get("X-Aftershock-Instance")
        if instance:
            self._instance = instance
        if resp.status_code >= 500:
            raise ServerError(f"{what}: {_body_error(resp)}", status=resp.status_code)
        if resp.status_code >= 400:
            raise ControllerError(f"{what}: {_body_error(resp)}", status=resp.status_code)
        return resp

    # Headers are read here, in the caller's task: the worker thread does not see its context.
    def _get(self, path: str) -> Callable[[], requests.Response]:
        headers = _headers()
        return lambda: self._api.get(path, timeout=self._timeout_s, headers=headers)

    def _post(self, path: str, body: Any = None) -> Callable[[], requests.Response]:
        headers = _headers()
        return lambda: self._api.post(path, json=body, timeout=self._timeout_s, headers=headers)

    def _delete(self, path: str) -> Callable[[], requests.Response]:
        headers = _headers()
        return lambda: self._api.delete(path, timeout=self._timeout_s, headers=headers)

    # -- operations ---------------------------------------------------------------------------

    async def capabilities(self) -> Capabilities:
        if self._caps is not None:
            return self._caps
        if self._assume_standard:
            self._caps = STANDARD
            return STANDARD
        try:
            resp = await self._call("GET /capabilities", self._get("/capabilities"))
        except ProxyNotFound:
            # A stock Toxiproxy: confirm it is there at all.
            ver = await self._call("GET /version", self._get("/version"))
            self._caps = Capabilities(
                server="toxiproxy",
                version=str(_json(ver).get("version", "")),
                toxics=STANDARD_TOXIC_TYPES,
                features=frozenset(),
            )
            return self._caps
        d = _json(resp)
        self._caps = Capabilities(
            server=str(d.get("server", "aftershock")),
            version=str(d.get("version", "")),
            toxics=frozenset(str(t) for t in d.get("toxics", ())),
            features=frozenset(str(f) for f in d.get("features", ())),
        )
        return self._caps

    async def list_proxies(self) -> dict[str, ProxyInfo]:
        d = _json(await self._call("GET /proxies", self._get("/proxies")))
        return {name: ProxyInfo.from_json(p) for name, p in d.items()}

    async def get_proxy(self, name: str) -> ProxyInfo:
        resp = await self._call(f"GET proxy {name!r}", self._get(f"/proxies/{name}"))
        return ProxyInfo.from_json(_json(resp))

    async def create_proxy(
        self, name: str, upstream: str, listen: str = "127.0.0.1:0", enabled: bool = True
    ) -> ProxyInfo:
        body = {"name": name, "upstream": upstream, "listen": listen, "enabled": enabled}
        resp = await self._call(f"create proxy {name!r}", self._post("/proxies", body))
        return ProxyInfo.from_json(_json(resp))

    async def update_proxy(self, name: str, body: dict[str, Any]) -> ProxyInfo:
        resp = await self._call(f"update proxy {name!r}", self._post(f"/proxies/{name}", body))
        return ProxyInfo.from_json(_json(resp))

    async def delete_proxy(self, name: str) -> None:
        await self._call(f"delete proxy {name!r}", self._delete(f"/proxies/{name}"))

    async def list_toxics(self, proxy: str) -> list[ToxicInfo]:
        resp = await self._call(f"list toxics of {proxy!r}", self._get(f"/proxies/{proxy}/toxics"))
        return [ToxicInfo.from_json(t) for t in _json(resp)]

    async def add_toxic(self, proxy: str, body: dict[str, Any]) -> ToxicInfo:
        what = f"add toxic {body.get('name')!r} to {proxy!r}"
        # A 404 here means the proxy is missing; a 409 means the toxic exists.
        try:
            resp = await self._call(what, self._post(f"/proxies/{proxy}/toxics", body), on="toxic")
        except ToxicNotFound as exc:
            raise ProxyNotFound(str(exc), status=404) from exc
        return ToxicInfo.from_json(_json(resp))

    async def remove_toxic(self, proxy: str, name: str) -> None:
        await self._call(
            f"remove toxic {name!r} from {proxy!r}",
            self._delete(f"/proxies/{proxy}/toxics/{name}"),
            on="toxic",
        )

    async def renew_toxic(self, proxy: str, name: str, ttl_ms: int) -> None:
        await self._call(
            f"renew toxic {name!r} on {proxy!r}",
            self._post(f"/proxies/{proxy}/toxics/{name}/renew", {"ttl_ms": ttl_ms}),
            on="toxic",
        )

    async def renew_proxy(self, proxy: str, ttl_ms: int) -> None:
        await self._call(
            f"renew proxy {proxy!r}", self._post(f"/proxies/{proxy}/renew", {"ttl_ms": ttl_ms})
        )

    async def reset(self) -> None:
        await self._call("POST /reset", self._post("/reset"))


def _json(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError as exc:
        raise ServerError(f"answer is not JSON: {resp.text[:200]!r}") from exc


def _detail(exc: Exception) -> str:
    raw = exc.args[0] if exc.args else b""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    try:
        return str(json.loads(text).get("error", text)).strip()
    except (ValueError, AttributeError):
        return text.strip()


def _body_error(resp: requests.Response) -> str:
    try:
        return str(resp.json().get("error", resp.text)).strip()
    except (ValueError, AttributeError):
        return resp.text.strip() or f"HTTP {resp.status_code}"
