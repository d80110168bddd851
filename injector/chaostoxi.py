"""Chaos Toolkit's ``chaostoxi`` (chaostoolkit-toxiproxy) actions and probes, run on the controller.

An experiment written for Chaos Toolkit calls e.g. ``chaostoxi.toxic.actions``
``create_latency_toxic(for_proxy, toxic_name, latency, jitter)``. Aftershock runs those calls
unchanged against its own controller — same names, arguments, defaults and return values — and
records every toxic they create so that rollback can be guaranteed and events emitted.
Server address: the experiment's ``configuration`` (``toxiproxy_url``, or ``toxiproxy_host`` +
``toxiproxy_port``) as with the original, unless the runner was given one.
"""

from __future__ import annotations

import difflib
import inspect
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from injector.errors import ControllerError, ProxyNotFound

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from contextlib import AbstractContextManager

    from injector.controller import Controller, ProxyInfo, ToxicInfo

Stamp = dict[str, Any]
"""The common fields of the events reporting a change (times taken before its request)."""

MODULES = ("chaostoxi.proxy.actions", "chaostoxi.proxy.probes", "chaostoxi.toxic.actions")


class Recorder(Protocol):
    """What the bridge reports so the run can emit events and revert what it created.

    A change is made inside :meth:`acting` for the fault it is (a toxic's name, or
    ``<proxy>-down``): requests then carry the run's attribution, so a proxy that reports
    changes itself names the experiment, and the time it gives is taken before the request
    leaves, as for the run's own faults; the report that follows carries it."""

    def acting(self, fault_id: str) -> AbstractContextManager[Stamp]: ...

    def toxic_added(self, proxy: str, toxic: ToxicInfo, at: Stamp) -> None: ...

    def toxic_removed(self, proxy: str, name: str, at: Stamp) -> None: ...

    def proxy_enabled(self, proxy: str, enabled: bool, at: Stamp) -> None: ...


class ChaostoxiCallError(ControllerError):
    """A ``chaostoxi`` call was refused by the server (the original raises too)."""


@dataclass(frozen=True, slots=True)
class _Fn:
    handler: Callable[..., Awaitable[Any]]

    @property
    def params(self) -> dict[str, inspect.Parameter]:
        sig = inspect.signature(self.handler)
        return {n: p for n, p in list(sig.parameters.items())[1:]}


def _resolve_env(value: Any) -> Any:
    # The original resolves "env:NAME" for upstream host and port.
    if isinstance(value, str) and value.startswith("env:"):
        return os.environ[value[4:]]
    return value


class Bridge:
    """Runs ``chaostoxi`` calls. After creating or modifying a proxy, ``<proxy>_PORT`` is set
    in the environment, as the original does; the original also sets it in the configuration
    it is handed, but Chaos Toolkit hands it a copy, so ``${<proxy>_PORT}`` is never
    substituted: the experiment's configuration is left alone here too."""

    def __init__(
        self, controller: Controller, configuration: dict[str, Any], recorder: Recorder
    ) -> None:
        self.ctl = controller
        self.configuration = configuration
        self.recorder = recorder

    async def call(self, module: str, func: str, arguments: dict[str, Any]) -> Any:
        fn = _FUNCTIONS.get(module, {}).get(func)
        if fn is None:
            raise ChaostoxiCallError(f"{module} has no function {func!r}")
        return await fn.handler(self, **arguments)

    def _port_to_environment(self, proxy: ProxyInfo) -> None:
        port = proxy.listen.rsplit(":", 1)[-1]
        os.environ[f"{proxy.name}_PORT"] = port

    # -- chaostoxi.proxy.actions --------------------------------------------------------------

    async def create_proxy(
        self,
        proxy_name: str,
        upstream_host: str,
        upstream_port: int,
        listen_host: str = "0.0.0.0",
        listen_port: int = 0,
        enabled: bool = True,
    ) -> bool:
        upstream = f"{_resolve_env(upstream_host)}:{_resolve_env(upstream_port)}"
        proxy = await self.ctl.create_proxy(
            proxy_name, upstream, f"{listen_host}:{listen_port}", enabled
        )
        if not proxy.listen.rsplit(":", 1)[-1].isdigit():
            raise ChaostoxiCallError(f"cannot read the port of proxy {proxy_name!r}")
        self._port_to_environment(proxy)
        return True

    async def modify_proxy(
        self,
        proxy_name: str,
        listen_address: str | None = None,
        upstream_address: str | None = None,
        enabled: bool | None = None,
    ) -> bool:
        body: dict[str, Any] = {}
        if listen_address is not None:
            body["listen"] = listen_address
        if upstream_address is not None:
            body["upstream"] = upstream_address
        if enabled is not None:
            body["enabled"] = enabled
        with self.recorder.acting(f"{proxy_name}-down") as at:
            proxy = await self.ctl.update_proxy(proxy_name, body)
        if enabled is not None:
            self.recorder.proxy_enabled(proxy_name, enabled, at)
        self._port_to_environment(proxy)
        return True

    async def disable_proxy(self, proxy_name: str) -> bool:
        return await self.modify_proxy(proxy_name, enabled=False)

    async def enable_proxy(self, proxy_name: str) -> bool:
        return await self.modify_proxy(proxy_name, enabled=True)

    async def delete_proxy(self, proxy_name: str) -> None:
        # The original returns nothing and only logs a refusal (an unknown proxy included).
        try:
            await self.ctl.delete_proxy(proxy_name)
        except ControllerError as exc:
            if exc.status is None:
                raise

    async def reset(self) -> bool:
        await self.ctl.reset()
        return True

    # -- chaostoxi.proxy.probes ---------------------------------------------------------------

    async def proxy_exist(self, proxy_name: str) -> bool:
        try:
            return (await self.ctl.get_proxy(proxy_name)).name == proxy_name
        except ProxyNotFound:
            return False

    async def get_proxy_attribute(self, proxy_name: str, attribute: str) -> Any:
        try:
            proxy = await self.ctl.get_proxy(proxy_name)
        except ProxyNotFound:
            return None
        if attribute == "toxics":  # as the API returns them, like the original
            return [
                {
                    "name": t.name,
                    "type": t.type,
                    "stream": t.stream,
                    "toxicity": t.toxicity,
                    "attributes": t.attributes,
                }
                for t in proxy.toxics
            ]
        return getattr(proxy, attribute, None)

    # -- chaostoxi.toxic.actions --------------------------------------------------------------

    async def create_toxic(
        self,
        for_proxy: str,
        toxic_name: str,
        toxic_type: str,
        stream: str = "downstream",
        toxicity: float = 1.0,
        attributes: dict[str, Any] | None = None,
    ) -> bool:
        body = {
            "name": toxic_name,
            "type": toxic_type,
            "stream": stream,
            "toxicity": toxicity,
            "attributes": attributes or {},
        }
        with self.recorder.acting(toxic_name) as at:
            toxic = await self.ctl.add_toxic(for_proxy, body)
        self.recorder.toxic_added(for_proxy, toxic, at)
        return toxic.name == toxic_name

    async def delete_toxic(self, for_proxy: str, toxic_name: str) -> bool:
        """True once removed; False when the server refuses (an unknown toxic included), as
        the original returns the response's ``ok``."""
        try:
            with self.recorder.acting(toxic_name) as at:
                await self.ctl.remove_toxic(for_proxy, toxic_name)
        except ControllerError as exc:
            if exc.status is None:
                raise
            return False
        self.recorder.toxic_removed(for_proxy, toxic_name, at)
        return True

    async def create_latency_toxic(
        self, for_proxy: str, toxic_name: str, latency: int, jitter: int = 0
    ) -> bool:
        attrs = {"latency": latency, "jitter": jitter}
        return await self.create_toxic(for_proxy, toxic_name, "latency", attributes=attrs)

    async def create_bandwith_degradation_toxic(
        self, for_proxy: str, toxic_name: str, rate: int
    ) -> bool:
        return await self.create_toxic(
            for_proxy, toxic_name, "bandwidth", attributes={"rate": rate}
        )

    async def create_slow_connection_close_toxic(
        self, for_proxy: str, toxic_name: str, delay: int
    ) -> bool:
        return await self.create_toxic(
            for_proxy, toxic_name, "slow_close", attributes={"delay": delay}
        )

    async def create_timeout_toxic(self, for_proxy: str, toxic_name: str, timeout: int) -> bool:  # noqa: ASYNC109
        return await self.create_toxic(
            for_proxy, toxic_name, "timeout", attributes={"timeout": timeout}
        )

    async def create_slicer_toxic(
        self, for_proxy: str, toxic_name: str, average_size: int, size_variation: int, delay: int
    ) -> bool:
        attrs = {"average_size": average_size, "size_variation": size_variation, "delay": delay}
        return await self.create_toxic(for_proxy, toxic_name, "slicer", attributes=attrs)

    async def create_limiter_toxic(self, for_proxy: str, toxic_name: str, bytes_limit: int) -> bool:
        return await self.create_toxic(
            for_proxy, toxic_name, "limit_data", attributes={"bytes": bytes_limit}
        )


_FUNCTIONS: dict[str, dict[str, _Fn]] = {
    "chaostoxi.proxy.actions": {
        n: _Fn(getattr(Bridge, n))
        for n in (
            "create_proxy",
            "disable_proxy",
            "enable_proxy",
            "modify_proxy",
            "delete_proxy",
            "reset",
        )
    },
    "chaostoxi.proxy.probes": {
        n: _Fn(getattr(Bridge, n)) for n in ("proxy_exist", "get_proxy_attribute")
    },
    "chaostoxi.toxic.actions": {
        n: _Fn(getattr(Bridge, n))
        for n in (
            "delete_toxic",
            "create_toxic",
            "create_latency_toxic",
            "create_bandwith_degradation_toxic",
            "create_slow_connection_close_toxic",
            "create_timeout_toxic",
            "create_slicer_toxic",
            "create_limiter_toxic",
        )
    },
}


def is_chaostoxi(module: str) -> bool:
    return module == "chaostoxi" or module.startswith("chaostoxi.")


def check_call(
    module: str, func: str, arguments: dict[str, Any]
) -> list[tuple[tuple[str, ...], str]]:
    """Problems with a ``chaostoxi`` call's function name and arguments, as (sub-path,
    message) pairs; empty when fine or when the module is not ``chaostoxi``."""
    if not is_chaostoxi(module):
        return []
    funcs = _FUNCTIONS.get(module)
    if funcs is None:
        known = ", ".join(MODULES)
        return [(("module",), f"unknown chaostoxi module {module!r} (known: {known})")]
    fn = funcs.get(func)
    if fn is None:
        close = difflib.get_close_matches(func, sorted(funcs), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return [(("func",), f"{module} has no function {func!r}{hint}")]
    params = fn.params
    out: list[tuple[tuple[str, ...], str]] = []
    for arg in arguments:
        if arg not in params:
            # proxy actions say proxy_name, toxic actions for_proxy: a common mix-up.
            swapped = {"proxy_name": "for_proxy", "for_proxy": "proxy_name"}.get(arg)
            close = [swapped] if swapped in params else []
            close = close or difflib.get_close_matches(arg, list(params), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (takes: {', '.join(params)})"
            out.append((("arguments", arg), f"{func}() takes no argument {arg!r}{hint}"))
    for name, p in params.items():
        if p.default is inspect.Parameter.empty and name not in arguments:
            out.append((("arguments",), f"{func}() needs argument {name!r}"))
    return out
