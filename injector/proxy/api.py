"""The control API: Toxiproxy's routes, status codes and bodies, plus Aftershock's extensions."""

from __future__ import annotations

import hmac
import itertools
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

from injector.proxy import bodies, gojson
from injector.proxy.errors import ApiError, PayloadTooLarge, PopulateError, Unauthorized
from injector.proxy.events import EventContext
from injector.proxy.http import Request, Response
from injector.proxy.model import Direction
from injector.proxy.toxics import REGISTRY

if TYPE_CHECKING:
    from injector.proxy.collection import ProxyCollection
    from injector.proxy.proxy import Proxy

TOXIPROXY_VERSION = "2.12.0"
"""The Toxiproxy version reported by ``/version`` (clients pick features from it)."""
FEATURES = ("leases", "match", "connections")

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"

_B32 = "0123456789abcdefghijklmnopqrstuv"
_counter = itertools.count(int.from_bytes(os.urandom(3), "big"))
_machine = os.urandom(5)


def request_id() -> str:
    """A 20-character sortable id in the style of upstream's (xid: time, machine, counter)."""
    raw = (
        int(time.time()).to_bytes(4, "big")
        + _machine
        + (next(_counter) & 0xFFFFFF).to_bytes(3, "big")
    )
    value = int.from_bytes(raw, "big")
    return "".join(_B32[(value >> (5 * i)) & 31] for i in reversed(range(20)))


def json_response(status: int, value: object) -> Response:
    return Response(status, gojson.encode(value), content_type=JSON)


def error_response(error: ApiError) -> Response:
    body = gojson.encode({"error": error.message, "status": error.status}) + b"\n"
    return Response(error.status, body, [("X-Content-Type-Options", "nosniff")], content_type=TEXT)


Params = dict[str, str]
Endpoint = Callable[[Request, Params, EventContext], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    pattern: re.Pattern[str]
    methods: dict[str, Endpoint]


class Api:
    def __init__(
        self,
        collection: ProxyCollection,
        token: str | None,
        version: str,
        metrics: Callable[[], bytes],
        max_body_bytes: int,
    ) -> None:
        self.collection = collection
        self.max_body_bytes = max_body_bytes
        self.token = token
        self.version = version
        self.metrics = metrics
        self.instance = os.urandom(8).hex()
        """Changes every time a server starts: a controller that sees another instance knows
        the server lost every proxy and toxic it had (sent as ``X-Aftershock-Instance``)."""
        seg = r"(?P<{}>[^/]+)"
        p, t = seg.format("proxy"), seg.format("toxic")
        table: list[tuple[str, dict[str, Endpoint]]] = [
            ("/reset", {"POST": self.reset}),
            ("/populate", {"POST": self.populate}),
            ("/proxies", {"GET": self.list_proxies, "POST": self.create_proxy}),
            (f"/proxies/{p}", {
                "GET": self.get_proxy, "POST": self.update_proxy,
                "PATCH": self.update_proxy, "DELETE": self.delete_proxy,
            }),
            (f"/proxies/{p}/toxics", {"GET": self.list_toxics, "POST": self.add_toxic}),
            (f"/proxies/{p}/toxics/{t}", {
                "GET": self.get_toxic, "POST": self.update_toxic,
                "PATCH": self.update_toxic, "DELETE": self.delete_toxic,
            }),
            ("/version", {"GET": self.get_version}),
            ("/metrics", {"GET": self.get_metrics}),
            ("/capabilities", {"GET": self.capabilities}),
            (f"/proxies/{p}/renew", {"POST": self.renew_proxy}),
            (f"/proxies/{p}/toxics/{t}/renew", {"POST": self.renew_toxic}),
            (f"/proxies/{p}/connections", {"GET": self.connections}),
        ]  # fmt: skip
        self.routes = [Route(re.compile(f"^{path}$"), methods) for path, methods in table]

    # -- dispatch -------------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        for route in self.routes:
            found = route.pattern.fullmatch(request.path)
            if found is None:
                continue
            endpoint = route.methods.get(request.method)
            if endpoint is None:
                return Response(405)
            response = await self._routed(request, endpoint, found.groupdict())
            response.headers.append(("X-Toxiproxy-Request-Id", request_id()))
            response.headers.append(("X-Aftershock-Instance", self.instance))
            return response
        return Response(404, b"404 page not found\n", [("X-Content-Type-Options", "nosniff")], TEXT)

    async def _routed(
        self,
        request: Request,
        endpoint: Endpoint,
        params: Params,
    ) -> Response:
        if request.header("user-agent").startswith("Mozilla/"):
            return Response(
                403, b"User agent not allowed\n", [("X-Content-Type-Options", "nosniff")], TEXT
            )
        if self.token is not None and not self._authorized(request):
            return error_response(Unauthorized("missing or invalid bearer token"))
        ctx = EventContext(
            experiment_id=request.header("x-aftershock-experiment") or "none",
            run_id=request.header("x-aftershock-run") or "proxy",
            fault_id=request.header("x-aftershock-fault") or None,
        )
        params = {k: unquote(v) for k, v in params.items()}
        try:
            return await endpoint(request, params, ctx)
        except ApiError as exc:
            return error_response(exc)

    def _authorized(self, request: Request) -> bool:
        scheme, _, given = request.header("authorization").partition(" ")
        assert self.token is not None
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self.token.encode()
        )

    def too_large(self, request: Request, length: int) -> Response:
        limit = self.max_body_bytes
        response = error_response(
            PayloadTooLarge(f"request body too large: {length} bytes, limit is {limit} bytes")
        )
        response.headers.append(("X-Toxiproxy-Request-Id", request_id()))
        return response

    # -- standard endpoints -------------------------------------------------------------------

    async def list_proxies(self, request: Request, params: Params, ctx: EventContext) -> Response:
        c = self.collection
        return json_response(200, {name: c.proxy_json(p) for name, p in c.proxies.items()})

    # Changes run under the collection's lock (they may await a bind); upstreams are checked
    # before it is taken, since checking may resolve a name.

    async def create_proxy(self, request: Request, params: Params, ctx: EventContext) -> Response:
        body = bodies.proxy_input(request.body)
        self.collection.check_required(body)
        await self.collection.check_upstreams([body.upstream])
        async with self.collection.lock:
            proxy = await self.collection.create(body, ctx)
            return json_response(201, self.collection.proxy_json(proxy))

    async def populate(self, request: Request, params: Params, ctx: EventContext) -> Response:
        # Populate answers errors as JSON carrying the proxies done so far.
        try:
            entries = bodies.populate_input(request.body)
            await self.collection.check_upstreams(e.upstream for e in entries)
            async with self.collection.lock:
                done = await self.collection.populate(entries, ctx)
                return self._populate_response(201, done, None)
        except PopulateError as exc:
            return self._populate_response(exc.status, exc.done, exc)
        except ApiError as exc:
            return self._populate_response(exc.status, [], exc)

    def _populate_response(
        self, status: int, done: list[Proxy], error: ApiError | None
    ) -> Response:
        body: dict[str, object] = {}
        if error is not None:
            body = {"error": error.message, "status": error.status}
        body["proxies"] = [self.collection.proxy_json(p) for p in done] or None
        return json_response(status, body)

    async def get_proxy(self, request: Request, params: Params, ctx: EventContext) -> Response:
        return json_response(200, self.collection.proxy_json(self.collection.get(params["proxy"])))

    async def update_proxy(self, request: Request, params: Params, ctx: EventContext) -> Response:
        self.collection.get(params["proxy"])
        body = bodies.proxy_input(request.body)
        await self.collection.check_upstreams([body.upstream])
        async with self.collection.lock:
            proxy = await self.collection.update(params["proxy"], body, ctx)
            return json_response(200, self.collection.proxy_json(proxy))

    async def delete_proxy(self, request: Request, params: Params, ctx: EventContext) -> Response:
        async with self.collection.lock:
            self.collection.delete(params["proxy"], ctx)
        return Response(204)

    async def list_toxics(self, request: Request, params: Params, ctx: EventContext) -> Response:
        proxy = self.collection.get(params["proxy"])
        return json_response(200, [t.as_json() for t in proxy.ordered_toxics()])

    async def add_toxic(self, request: Request, params: Params, ctx: EventContext) -> Response:
        self.collection.get(params["proxy"])
        body = bodies.toxic_input(request.body)
        async with self.collection.lock:
            toxic = self.collection.add_toxic(params["proxy"], body, ctx)
            return json_response(200, toxic.as_json())

    async def get_toxic(self, request: Request, params: Params, ctx: EventContext) -> Response:
        _, toxic = self.collection.get_toxic(params["proxy"], params["toxic"])
        return json_response(200, toxic.as_json())

    async def update_toxic(self, request: Request, params: Params, ctx: EventContext) -> Response:
        self.collection.get_toxic(params["proxy"], params["toxic"])
        body = bodies.toxic_update(request.body)
        async with self.collection.lock:
            toxic = self.collection.update_toxic(params["proxy"], params["toxic"], body, ctx)
            return json_response(200, toxic.as_json())

    async def delete_toxic(self, request: Request, params: Params, ctx: EventContext) -> Response:
        async with self.collection.lock:
            self.collection.remove_toxic(params["proxy"], params["toxic"], ctx)
        return Response(204)

    async def reset(self, request: Request, params: Params, ctx: EventContext) -> Response:
        async with self.collection.lock:
            await self.collection.reset(ctx)
        return Response(204)

    async def get_version(self, request: Request, params: Params, ctx: EventContext) -> Response:
        body = f'{{"version": "{TOXIPROXY_VERSION}"}}\n'.encode()
        return Response(200, body, content_type="application/json;charset=utf-8")

    async def get_metrics(self, request: Request, params: Params, ctx: EventContext) -> Response:
        return Response(200, self.metrics(), content_type=PROMETHEUS)

    # -- extensions -------------------------------------------------------------------------

    async def capabilities(self, request: Request, params: Params, ctx: EventContext) -> Response:
        return json_response(
            200,
            {
                "server": "aftershock",
                "version": self.version,
                "instance": self.instance,
                "toxics": REGISTRY.names(),
                "features": list(FEATURES),
            },
        )

    async def renew_proxy(self, request: Request, params: Params, ctx: EventContext) -> Response:
        self.collection.get(params["proxy"])
        ttl_ms = bodies.renew_input(request.body)
        async with self.collection.lock:
            proxy = self.collection.renew_proxy(params["proxy"], ttl_ms, ctx)
            return json_response(200, self.collection.proxy_json(proxy))

    async def renew_toxic(self, request: Request, params: Params, ctx: EventContext) -> Response:
        self.collection.get_toxic(params["proxy"], params["toxic"])
        ttl_ms = bodies.renew_input(request.body)
        async with self.collection.lock:
            toxic = self.collection.renew_toxic(params["proxy"], params["toxic"], ttl_ms, ctx)
            return json_response(200, toxic.as_json())

    async def connections(self, request: Request, params: Params, ctx: EventContext) -> Response:
        proxy = self.collection.get(params["proxy"])
        return json_response(200, [c.snapshot() for c in proxy.connections.values()])


def prometheus_text(collection: ProxyCollection) -> bytes:
    """Byte counters per proxy and direction, in the Prometheus text format."""
    families = (
        ("toxiproxy_proxy_received_bytes_total", "The total bytes received from a given proxy", 0),
        ("toxiproxy_proxy_sent_bytes_total", "The total bytes sent to a given proxy", 1),
    )
    lines: list[str] = []
    for metric, help_text, index in families:
        lines.append(f"# HELP {metric} {help_text}")
        lines.append(f"# TYPE {metric} counter")
        for proxy in collection.proxies.values():
            for direction in Direction:
                value = proxy.byte_totals(direction)[index]
                labels = ",".join(
                    f'{k}="{_label(v)}"'
                    for k, v in (
                        ("direction", direction.value),
                        ("listener", proxy.listen),
                        ("proxy", proxy.name),
                        ("upstream", proxy.upstream),
                    )
                )
                lines.append(f"{metric}{{{labels}}} {value}")
    return ("\n".join(lines) + "\n").encode()


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
