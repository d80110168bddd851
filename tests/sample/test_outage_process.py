"""The message service as a user runs it (its own process, on uvloop) must outlive Redis
outages under traffic: uvloop reports writes on a transport the outage closed as RuntimeError,
which once escaped the Redis supervisor and ended the process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import TYPE_CHECKING

import aiohttp
import orjson

from tests.sample.conftest import login

if TYPE_CHECKING:
    from tests.processes import Processes
    from tests.sample.relay import Relay


async def _publisher(
    http: aiohttp.ClientSession, ws_url: str, token: object, stop: asyncio.Event
) -> None:
    """Publish as fast as answers allow; reconnect after every failure."""
    while not stop.is_set():
        try:
            ws = await http.ws_connect(ws_url, headers={"Authorization": f"Bearer {token}"})
        except aiohttp.ClientError:
            await asyncio.sleep(0.02)
            continue
        try:
            await ws.send_str('{"op":"subscribe","channels":["general"]}')
            while not stop.is_set():
                frame = orjson.dumps({"op": "publish", "channel": "general", "data": "x" * 200})
                await ws.send_str(frame.decode())
                msg = await ws.receive(timeout=2)
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
        except (aiohttp.ClientError, TimeoutError, ConnectionError):
            pass
        finally:
            await ws.close()


async def test_message_service_process_survives_redis_outages_under_load(
    redis_relay: Relay, http: aiohttp.ClientSession, procs: Processes
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    proc = await procs.exec(
        sys.executable, "-m", "examples.chat", "--redis-url", f"redis://{redis_relay.addr}/0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    stop = asyncio.Event()
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            info = json.loads(await proc.stdout.readline())
        base = info["gateway_url"]

        async def healthy() -> bool:
            if proc.returncode is not None:
                assert proc.stderr is not None
                err = (await proc.stderr.read()).decode()[-3000:]
                raise AssertionError(f"the chat process died during a Redis outage:\n{err}")
            try:
                async with http.get(f"{base}/healthz") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        async with asyncio.timeout(30):
            while not await healthy():
                await asyncio.sleep(0.05)
        token = (await login(http, base, "t"))["access_token"]
        async with asyncio.TaskGroup() as tg:
            for _ in range(20):
                tg.create_task(_publisher(http, info["ws_url"], token, stop))
            for _ in range(6):
                await asyncio.sleep(0.4)
                redis_relay.cut()
                await asyncio.sleep(0.3)
                redis_relay.restore()
                await healthy()  # fails if the process is gone
            stop.set()
        async with asyncio.timeout(30):
            while not await healthy():
                await asyncio.sleep(0.05)
        assert proc.returncode is None
    finally:
        stop.set()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-3000:]
    assert b"Traceback" not in err, err.decode()[-3000:]
