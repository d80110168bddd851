"""``ChatSystem``: message service and gateway started in-process, for tests and demos."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from .config import Bug, ChatConfig, Defects
from .gateway import Gateway
from .message_service import MessageService

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import TracebackType


class ChatSystem:
    """The whole sample on 127.0.0.1 (``host``), each part on a free port unless given.

    ``message_addr`` is where the gateway dials the message service: None means directly;
    give a fault-proxy listener to put that hop under faults (the proxy's upstream is then
    ``system.message_addr``, known after start; pass ``wait_ready=False`` and call
    ``wait_healthy()`` once the proxy is set up). ``redis_url`` may likewise be a proxy.
    ``clock`` (monotonic seconds) drives token expiry and slot warmth, for tests.

    Attributes after start: ``gateway_url``, ``ws_url``, ``message_addr`` (where the message
    service listens), ``tcp_echo_addr`` (raw newline echo), ``defects`` (switch at run time).
    """

    def __init__(
        self,
        redis_url: str,
        *,
        message_addr: str | None = None,
        bugs: Iterable[Bug | str] = (),
        config: ChatConfig | None = None,
        host: str = "127.0.0.1",
        gateway_port: int = 0,
        message_port: int = 0,
        echo_port: int = 0,
        wait_ready: bool = True,
        ready_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or ChatConfig()
        self.defects = Defects(bugs, slow_recovery_s=self.config.slow_recovery_s)
        self._redis_url = redis_url
        self._dial_addr = message_addr
        self._host = host
        self._ports = (gateway_port, message_port, echo_port)
        self._wait_ready = wait_ready
        self._ready_timeout_s = ready_timeout_s
        self._clock = clock
        self._stack: AsyncExitStack | None = None
        self.message_service: MessageService | None = None
        self.gateway: Gateway | None = None
        self.gateway_url = ""
        self.ws_url = ""
        self.message_addr = ""
        self.tcp_echo_addr = ""

    async def __aenter__(self) -> ChatSystem:
        gateway_port, message_port, echo_port = self._ports
        async with AsyncExitStack() as stack:
            service = await stack.enter_async_context(
                MessageService(
                    self._redis_url,
                    host=self._host,
                    port=message_port,
                    echo_port=echo_port,
                    config=self.config,
                    defects=self.defects,
                )
            )
            gateway = await stack.enter_async_context(
                Gateway(
                    self._dial_addr or service.addr,
                    host=self._host,
                    port=gateway_port,
                    config=self.config,
                    defects=self.defects,
                    clock=self._clock,
                )
            )
            self.message_service, self.gateway = service, gateway
            self.gateway_url, self.ws_url = gateway.url, gateway.ws_url
            self.message_addr, self.tcp_echo_addr = service.addr, service.echo_addr
            if self._wait_ready:
                await self.wait_healthy(self._ready_timeout_s)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def wait_healthy(self, timeout_s: float = 10.0) -> None:
        """Wait until ``/healthz`` would answer 200 (message service and Redis reachable)."""
        assert self.gateway is not None, "ChatSystem is not started"
        try:
            async with asyncio.timeout(timeout_s):
                await self.gateway.wait_healthy()
        except TimeoutError:
            raise TimeoutError(
                f"chat system not healthy after {timeout_s} s: {self.gateway.health()}"
            ) from None

    def __repr__(self) -> str:
        return f"ChatSystem(gateway_url={self.gateway_url!r}, message_addr={self.message_addr!r})"
