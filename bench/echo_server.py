"""A WebSocket echo server for the generator benchmark, run in its own process.

``python -m bench.echo_server PORT_FILE`` listens on an ephemeral loopback port (written to
PORT_FILE), answers every text frame with the same frame (which is what the chat gateway does
for ``{"op":"echo"}``), and exits on SIGTERM. Built on picows + uvloop so the server is never
the bottleneck of a client measurement.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server


class _Echo(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            transport.send(WSMsgType.TEXT, frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()


def _factory(_: WSUpgradeRequest) -> WSListener:
    return _Echo()


async def serve(port_file: Path) -> None:
    server = await ws_create_server(_factory, "127.0.0.1", 0, backlog=8192)
    port = server.sockets[0].getsockname()[1]
    port_file.write_text(str(port))
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    try:
        await stop
    finally:
        server.close()


def main() -> None:
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20_000), hard))
    try:
        import uvloop

        uvloop.run(serve(Path(sys.argv[1])))
    except ImportError:
        asyncio.run(serve(Path(sys.argv[1])))


if __name__ == "__main__":
    main()
