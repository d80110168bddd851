"""The proxies of one server and every change to them: the API's operations, leases, events.

Every change goes through here, so each one is published as a fault event, and leases (the
dead-man's switch) revert changes on their own when a controller stops renewing them.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from injector.proxy.allowlist import ListenAllowlist, join_host_port
from injector.proxy.errors import (
    PROXY_EXISTS,
    PROXY_NOT_FOUND,
    TOXIC_EXISTS,
    TOXIC_NOT_FOUND,
    ApiError,
    BadRequest,
    Conflict,
    ListenError,
    NotFound,
    PopulateError,
)
from injector.proxy.events import EventContext, EventEmitter, toxic_spec
from injector.proxy.model import Toxic
from injector.proxy.proxy import Proxy
from schemas.events import (
    ConnectionClosed,
    ConnectionOpened,
    ProxyCreated,
    ProxyDeleted,
    ProxyDisabled,
    ProxyEnabled,
    ToxicAdded,
    ToxicRemoved,
    ToxicUpdated,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterable
    from typing import Literal

    from injector.proxy.allowlist import UpstreamAllowlist
    from injector.proxy.bodies import ProxyInput, ToxicInput, ToxicUpdate
    from injector.proxy.link import Connection

    RemovalReason = Literal["api", "lease_expired", "rollback", "reset", "proxy_deleted"]


class ProxyCollection:
    def __init__(
        self,
        emitter: EventEmitter,
        allowlist: UpstreamAllowlist,
        spawn: Callable[[Coroutine[object, object, None]], None],
        listen_allowlist: ListenAllowlist | None = None,
    ) -> None:
        self.proxies: dict[str, Proxy] = {}
        self.emitter = emitter
        self.allowlist = allowlist
        self.listen_allowlist = listen_allowlist or ListenAllowlist()
        self._spawn = spawn
        self.lock = asyncio.Lock()
        self._proxy_leases: dict[str, tuple[int, asyncio.TimerHandle]] = {}

    # -- ProxyHost --------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[object, object, None]) -> None:
        self._spawn(coro)

    def bind_address(self, listen: str) -> tuple[str, int]:
        return self.listen_allowlist.bind_address(listen)

    def dial_targets_now(self, host: str, port: int) -> list[tuple[str, int]]:
        return self.allowlist.literal_targets(host, port)

    async def dial_targets(self, host: str, port: int) -> list[tuple[str, int]]:
        return await self.allowlist.dial_targets(host, port)

    def connection_opened(self, proxy: Proxy, conn: Connection) -> None:
        if self.emitter.connection_events:
            self.emitter.emit(
                ConnectionOpened,
                EventContext(),
                proxy=proxy.name,
                connection_id=conn.id,
                client=conn.client_text,
            )

    def connection_closed(self, proxy: Proxy, conn: Connection) -> None:
        if self.emitter.connection_events:
            self.emitter.emit(
                ConnectionClosed,
                EventContext(),
                proxy=proxy.name,
                connection_id=conn.id,
                client=conn.client_text,
                bytes_up=conn.up.received,
                bytes_down=conn.down.received,
                toxics_hit=sorted(conn.toxics_hit),
            )

    # -- lookups ------------------------------------------------------------------------------

    def get(self, name: str) -> Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise NotFound(PROXY_NOT_FOUND)
        return proxy

    def get_toxic(self, proxy_name: str, toxic_name: str) -> tuple[Proxy, Toxic]:
        proxy = self.get(proxy_name)
        toxic = proxy.find_toxic(toxic_name)
        if toxic is None:
            raise NotFound(TOXIC_NOT_FOUND)
        return proxy, toxic

    def proxy_json(self, proxy: Proxy) -> dict[str, object]:
        out = proxy.as_json()
        lease = self._proxy_leases.get(proxy.name)
        if lease is not None:
            out["ttl_ms"] = lease[0]
        return out

    # -- proxies ------------------------------------------------------------------------------
    #
    # Each change is checked in full before anything is touched, and a change that fails half
    # way (a bind failure) is undone, so a request either changes state completely or not at
    # all. Upstreams are checked before the API lock is taken (checking may resolve a name).

    async def check_upstreams(self, upstreams: Iterable[str | None]) -> None:
        """Refuse (400/403) any upstream that is not allowed; call without holding the lock."""
        for upstream in upstreams:
            if upstream is not None:
                await self.allowlist.check(upstream)

    @staticmethod
    def check_required(body: ProxyInput) -> None:
        if not body.name:
            raise BadRequest.missing_field("name")
        if not body.upstream:
            raise BadRequest.missing_field("upstream")

    async def create(self, body: ProxyInput, ctx: EventContext) -> Proxy:
        """Create a proxy; its upstream must have passed :meth:`check_upstreams`."""
        self.check_required(body)
        if body.name in self.proxies:
            raise Conflict(PROXY_EXISTS)
        self.bind_address(body.listen or "")
        return await self._create(body, ctx)

    async def _create(self, body: ProxyInput, ctx: EventContext) -> Proxy:
        assert body.name is not None
        assert body.upstream is not None
        proxy = Proxy(self, body.name, body.listen or "", body.upstream)
        if body.enabled is not False:
            await proxy.start()  # a proxy that fails to bind is not kept
        self.proxies[proxy.name] = proxy
        self.emitter.emit(
            ProxyCreated, ctx, proxy=proxy.name, listen=proxy.listen, upstream=proxy.upstream
        )
        if not proxy.enabled:
            self._disabled(proxy, body.ttl_ms, ctx)
        return proxy

    async def update(self, name: str, body: ProxyInput, ctx: EventContext) -> Proxy:
        """Update a proxy; a new upstream must have passed :meth:`check_upstreams`."""
        proxy = self.get(name)
        listen = proxy.listen if body.listen is None else body.listen
        upstream = proxy.upstream if body.upstream is None else body.upstream
        enabled = proxy.enabled if body.enabled is None else body.enabled
        was_enabled = proxy.enabled
        if listen != proxy.listen:
            self.bind_address(listen)
        before = (proxy.listen, proxy.upstream)
        if listen != proxy.listen or upstream != proxy.upstream:
            proxy.stop()
            proxy.listen = listen
            proxy.change_upstream(upstream)
        if enabled and not proxy.enabled:
            try:
                await proxy.start()
            except ApiError:
                # Put the proxy back as it was: the request changes nothing.
                proxy.listen = before[0]
                proxy.change_upstream(before[1])
                if was_enabled:
                    with contextlib.suppress(ApiError):
                        await proxy.start()
                raise
        elif not enabled and proxy.enabled:
            proxy.stop()
        if proxy.enabled:
            self._cancel_proxy_lease(proxy.name)
            if not was_enabled:
                self.emitter.emit(ProxyEnabled, ctx, proxy=proxy.name)
        elif was_enabled or body.ttl_given:
            ttl_ms = body.ttl_ms if body.ttl_given else None
            self._disabled(proxy, ttl_ms, ctx)
        elif proxy.name in self._proxy_leases:
            # Any update of a leased disable renews the lease.
            self._arm_proxy_lease(proxy, self._proxy_leases[proxy.name][0], ctx)
        return proxy

    def _disabled(self, proxy: Proxy, ttl_ms: int | None, ctx: EventContext) -> None:
        self.emitter.emit(ProxyDisabled, ctx, proxy=proxy.name, ttl_ms=ttl_ms)
        if ttl_ms is None:
            self._cancel_proxy_lease(proxy.name)
        else:
            self._arm_proxy_lease(proxy, ttl_ms, ctx)

    def renew_proxy(self, name: str, ttl_ms: int | None, ctx: EventContext) -> Proxy:
        proxy = self.get(name)
        lease = self._proxy_leases.get(name)
        if lease is None and (ttl_ms is None or proxy.enabled):
            raise BadRequest("proxy has no lease to renew: it is not disabled with ttl_ms")
        self._arm_proxy_lease(proxy, ttl_ms if ttl_ms is not None else lease[0], ctx)  # type: ignore[index]
        return proxy

    def _arm_proxy_lease(self, proxy: Proxy, ttl_ms: int, ctx: EventContext) -> None:
        self._cancel_proxy_lease(proxy.name)
        handle = self._call_later(
            ttl_ms, lambda: self._spawn(self._proxy_lease_expired(proxy, ctx))
        )
        self._proxy_leases[proxy.name] = (ttl_ms, handle)

    def _cancel_proxy_lease(self, name: str) -> None:
        lease = self._proxy_leases.pop(name, None)
        if lease is not None:
            lease[1].cancel()

    async def _proxy_lease_expired(self, proxy: Proxy, ctx: EventContext) -> None:
        async with self.lock:
            if self.proxies.get(proxy.name) is not proxy or proxy.enabled:
                return
            self._proxy_leases.pop(proxy.name, None)
            try:
                await proxy.start()
            except ApiError:
                return
            self.emitter.emit(ProxyEnabled, ctx, proxy=proxy.name)

    def delete(self, name: str, ctx: EventContext) -> None:
        proxy = self.get(name)
        proxy.stop()
        self._cancel_proxy_lease(name)
        for toxic in proxy.remove_all_toxics():
            self._toxic_gone(proxy, toxic, "proxy_deleted", ctx)
        del self.proxies[name]
        self.emitter.emit(ProxyDeleted, ctx, proxy=name)

    async def populate(self, entries: list[ProxyInput], ctx: EventContext) -> list[Proxy]:
        """Create or replace proxies; their upstreams must have passed :meth:`check_upstreams`.
        Every listen address is checked before the first change; a bind failure stops there,
        keeping what was done (as Toxiproxy does), and is answered with it."""
        for entry in entries:
            self.bind_address(entry.listen or "")
        done: list[Proxy] = []
        for entry in entries:
            assert entry.name is not None
            existing = self.proxies.get(entry.name)
            if existing is not None:
                if (
                    self._resolved_listen(entry.listen or "") == existing.listen
                    and entry.upstream == existing.upstream
                ):
                    done.append(existing)
                    continue
                self.delete(existing.name, ctx)
            try:
                done.append(await self._create(entry, ctx))
            except ApiError as exc:
                raise PopulateError(exc, done) from None
        return done

    async def reset(self, ctx: EventContext) -> None:
        """Re-enable every proxy and remove every toxic; connections stay open.

        Every proxy is attempted: one that cannot bind does not keep the others' toxics in
        place. The failures are raised together at the end (a bind failure is a 500, as
        Toxiproxy answers it), each naming its proxy."""
        failures: list[str] = []
        for proxy in list(self.proxies.values()):
            for toxic in proxy.remove_all_toxics():
                self._toxic_gone(proxy, toxic, "reset", ctx)
            if not proxy.enabled:
                try:
                    await proxy.start()
                except ApiError as exc:
                    failures.append(f"proxy {proxy.name}: {exc.message}")
                    continue
                self._cancel_proxy_lease(proxy.name)
                self.emitter.emit(ProxyEnabled, ctx, proxy=proxy.name)
            else:
                self._cancel_proxy_lease(proxy.name)
        if failures:
            raise ListenError(f"reset could not enable {len(failures)}: {'; '.join(failures)}")

    # -- toxics -------------------------------------------------------------------------------

    def add_toxic(self, proxy_name: str, body: ToxicInput, ctx: EventContext) -> Toxic:
        from injector.proxy.bodies import parse_attributes

        proxy = self.get(proxy_name)
        if proxy.find_toxic(body.name) is not None:
            raise Conflict(TOXIC_EXISTS)
        toxic = Toxic(
            name=body.name,
            kind=body.kind,
            type_as_sent=body.type_as_sent,
            stream_as_sent=body.stream_as_sent,
            direction=body.direction,
            toxicity=body.toxicity,
            config=parse_attributes(body.kind, body.attributes),
            match=body.match,
            ttl_ms=body.ttl_ms,
            networks=body.match.networks() if body.match else (),
        )
        spec = toxic_spec(toxic)
        proxy.add_toxic(toxic)
        if toxic.ttl_ms is not None:
            self._arm_toxic_lease(proxy, toxic, ctx)
        self.emitter.emit(ToxicAdded, ctx, proxy=proxy.name, toxic=spec, ttl_ms=toxic.ttl_ms)
        return toxic

    def update_toxic(
        self, proxy_name: str, toxic_name: str, body: ToxicUpdate, ctx: EventContext
    ) -> Toxic:
        from injector.proxy.bodies import parse_attributes

        proxy, toxic = self.get_toxic(proxy_name, toxic_name)
        config = toxic.config
        if body.attributes is not None:
            config = parse_attributes(toxic.kind, {**toxic.config.model_dump(), **body.attributes})
        # Nothing is changed before everything has been checked.
        toxic.config = config
        if body.toxicity is not None:
            toxic.toxicity = body.toxicity
        if body.match_given:
            toxic.match = body.match
            toxic.networks = body.match.networks() if body.match else ()
        if body.ttl_given:
            toxic.ttl_ms = body.ttl_ms
        spec = toxic_spec(toxic)
        proxy.toxic_changed(toxic)
        if toxic.ttl_ms is not None:
            self._arm_toxic_lease(proxy, toxic, ctx)  # any update renews the lease
        elif toxic.lease is not None:
            toxic.lease.cancel()
            toxic.lease = None
        self.emitter.emit(ToxicUpdated, ctx, proxy=proxy.name, toxic=spec, ttl_ms=toxic.ttl_ms)
        return toxic

    def renew_toxic(
        self, proxy_name: str, toxic_name: str, ttl_ms: int | None, ctx: EventContext
    ) -> Toxic:
        proxy, toxic = self.get_toxic(proxy_name, toxic_name)
        if ttl_ms is None and toxic.ttl_ms is None:
            raise BadRequest("toxic has no lease to renew: give ttl_ms")
        if ttl_ms is not None:
            toxic.ttl_ms = ttl_ms
        self._arm_toxic_lease(proxy, toxic, ctx)
        return toxic

    def remove_toxic(
        self, proxy_name: str, toxic_name: str, ctx: EventContext, reason: RemovalReason = "api"
    ) -> None:
        proxy, toxic = self.get_toxic(proxy_name, toxic_name)
        proxy.remove_toxic(toxic)
        self._toxic_gone(proxy, toxic, reason, ctx)

    def _toxic_gone(
        self, proxy: Proxy, toxic: Toxic, reason: RemovalReason, ctx: EventContext
    ) -> None:
        if toxic.lease is not None:
            toxic.lease.cancel()
            toxic.lease = None
        self.emitter.emit(ToxicRemoved, ctx, proxy=proxy.name, toxic_name=toxic.name, reason=reason)

    def _arm_toxic_lease(self, proxy: Proxy, toxic: Toxic, ctx: EventContext) -> None:
        if toxic.lease is not None:
            toxic.lease.cancel()
        assert toxic.ttl_ms is not None

        def expire() -> None:
            toxic.lease = None
            if self.proxies.get(proxy.name) is proxy and proxy.find_toxic(toxic.name) is toxic:
                proxy.remove_toxic(toxic)
                self._toxic_gone(proxy, toxic, "lease_expired", ctx)

        toxic.lease = self._call_later(toxic.ttl_ms, expire)

    def _call_later(self, ttl_ms: int, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(ttl_ms / 1000, callback)

    async def aclose(self) -> None:
        for name in list(self._proxy_leases):
            self._cancel_proxy_lease(name)
        for proxy in self.proxies.values():
            for toxic in proxy.toxics:
                if toxic.lease is not None:
                    toxic.lease.cancel()
                    toxic.lease = None
            proxy.close_quietly()

    def _resolved_listen(self, listen: str) -> str:
        try:
            host, port = self.bind_address(listen)
        except ApiError:
            return listen
        return join_host_port(host, port)
