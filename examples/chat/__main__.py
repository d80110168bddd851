"""``python -m examples.chat``: run the chat sample (both parts, or one) until interrupted.

This entry point, not the library, configures the OpenTelemetry SDK: OTLP/HTTP when
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, else a JSONL file with ``--spans-file``, else none.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import logging
import os
import signal
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from pydantic import ValidationError

from spine.localhost import raise_descriptor_limit
from spine.telemetry import JsonlSpanExporter

from .config import Bug, ChatConfig, Defects
from .gateway import Gateway
from .message_service import MessageService

if TYPE_CHECKING:
    from collections.abc import Callable

STOP_WITHIN_S = 10.0
"""After SIGTERM or SIGINT the process ends within this, its stacks on stderr if it had to."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m examples.chat",
        description="Multi-tenant chat sample: gateway (HTTP + WebSocket) -> message service "
        "(TCP) -> Redis pub/sub. Prints one JSON line with its addresses once serving.",
    )
    p.add_argument(
        "--redis-url",
        help="Redis the message service uses (required unless "
        "--role gateway), e.g. redis://127.0.0.1:6379/0 or a fault-proxy listener",
    )
    p.add_argument(
        "--role",
        choices=["all", "gateway", "message"],
        default="all",
        help="run both parts in this process (default) or only one",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--gateway-port", type=int, default=0, help="HTTP/WebSocket port (0 = free)")
    p.add_argument("--message-port", type=int, default=0, help="message service link port")
    p.add_argument("--echo-port", type=int, default=0, help="raw TCP line-echo port")
    p.add_argument(
        "--message-addr",
        help="host:port the gateway dials for the message service "
        "(default: the one started here; required with --role gateway)",
    )
    p.add_argument(
        "--bug",
        action="append",
        default=[],
        choices=[b.value for b in Bug],
        help="switch a defect on at start (repeatable)",
    )
    p.add_argument(
        "--slow-recovery-s",
        type=float,
        default=20.0,
        help="pause before reconnecting to Redis under slow_recovery (default 20)",
    )
    p.add_argument(
        "--slot-warm-s",
        type=float,
        default=1.0,
        help="window in which a released subscription slot counts as warm",
    )
    p.add_argument("--token-ttl-s", type=float, default=300.0, help="access token lifetime")
    p.add_argument("--refresh-ttl-s", type=float, default=3600.0, help="refresh token lifetime")
    p.add_argument("--password", help="require this password at login (default: any)")
    p.add_argument(
        "--spans-file",
        type=Path,
        help="write spans as JSON lines here (ignored when OTEL_EXPORTER_OTLP_ENDPOINT is set)",
    )
    p.add_argument("--service-name", default="aftershock-chat", help="OTel service.name")
    p.add_argument("--log-level", default="WARNING", help="Python logging level")
    return p


def configure_tracing(service_name: str, spans_file: Path | None) -> TracerProvider | None:
    exporter: SpanExporter
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        exporter = OTLPSpanExporter()
    elif spans_file is not None:
        exporter = JsonlSpanExporter(spans_file)
    else:
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


async def serve(args: argparse.Namespace, config: ChatConfig) -> None:
    defects = Defects(args.bug, slow_recovery_s=config.slow_recovery_s)
    async with AsyncExitStack() as stack:
        info: dict[str, str] = {}
        message_addr = args.message_addr
        if args.role in ("all", "message"):
            service = await stack.enter_async_context(
                MessageService(
                    args.redis_url,
                    host=args.host,
                    port=args.message_port,
                    echo_port=args.echo_port,
                    config=config,
                    defects=defects,
                )
            )
            info |= {"message_addr": service.addr, "tcp_echo_addr": service.echo_addr}
            message_addr = message_addr or service.addr
        if args.role in ("all", "gateway"):
            gateway = await stack.enter_async_context(
                Gateway(
                    message_addr,
                    host=args.host,
                    port=args.gateway_port,
                    config=config,
                    defects=defects,
                )
            )
            info |= {"gateway_url": gateway.url, "ws_url": gateway.ws_url}
        print(orjson.dumps(info).decode(), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        # Stopping is bounded: past STOP_WITHIN_S, every thread's stack goes to stderr and the
        # process exits (a run killed with SIGKILL must not leave its sample system behind).
        faulthandler.dump_traceback_later(STOP_WITHIN_S, exit=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.role != "gateway" and not args.redis_url:
        parser.error("--redis-url is required unless --role gateway")
    if args.role == "gateway" and not args.message_addr:
        parser.error("--message-addr is required with --role gateway")
    try:
        config = ChatConfig(
            token_ttl_s=args.token_ttl_s,
            refresh_ttl_s=args.refresh_ttl_s,
            password=args.password,
            slow_recovery_s=args.slow_recovery_s,
            slot_warm_s=args.slot_warm_s,
        )
    except ValidationError as exc:
        parser.error(str(exc))
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    raise_descriptor_limit()
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 <pid> prints every thread's stack
    provider = configure_tracing(args.service_name, args.spans_file)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(serve(args, config))
    finally:
        if provider is not None:
            provider.shutdown()
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


if __name__ == "__main__":
    raise SystemExit(main())
