"""``python -m examples.chat`` as a user runs it: addresses on stdout, spans in a JSONL file
continuing the client's W3C trace across gateway, message service and Redis publish."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import TYPE_CHECKING

import aiohttp
import orjson
from aiohttp import web

from tests.sample.conftest import login, receive, request, subscribe

if TYPE_CHECKING:
    from pathlib import Path

    from tests.processes import Processes

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


async def test_cli_serves_and_exports_spans_continuing_the_trace(
    redis_url: str, http: aiohttp.ClientSession, tmp_path: Path, procs: Processes
) -> None:
    spans_file = tmp_path / "spans.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    proc = await procs.exec(
        sys.executable, "-m", "examples.chat", "--redis-url", redis_url,
        "--spans-file", str(spans_file), "--bug", "isolation",
        stdout=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            info = json.loads(await proc.stdout.readline())
        assert set(info) == {"gateway_url", "ws_url", "message_addr", "tcp_echo_addr"}
        async with asyncio.timeout(60):
            while True:
                async with http.get(f"{info['gateway_url']}/healthz") as r:
                    if r.status == 200:
                        break
                await asyncio.sleep(0.05)
        async with http.get(f"{info['gateway_url']}/admin/bugs") as r:
            state = await r.json()
        assert state["isolation"] is True
        assert state["slow_recovery"] is False

        token = (await login(http, info["gateway_url"], "t"))["access_token"]
        headers = {
            "Authorization": f"Bearer {token}",
            "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01",
        }
        ws = await http.ws_connect(info["ws_url"], headers=headers)
        assert await request(ws, {"op": "echo", "data": "e"}) == {"op": "echo", "data": "e"}
        await subscribe(ws, "c")
        await ws.send_str(orjson.dumps({"op": "publish", "channel": "c", "data": "p"}).decode())
        assert await receive(ws) == {"op": "message", "channel": "c", "data": "p"}
        await ws.close()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await proc.wait() == 0

    spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
    by_name: dict[str, list[dict[str, object]]] = {}
    for span in spans:
        by_name.setdefault(span["name"], []).append(span)
    traced = {s["name"] for s in spans if s["context"]["trace_id"] == f"0x{TRACE_ID}"}
    assert {"ws.session", "ws.echo", "message.echo", "ws.publish", "message.publish",
            "redis.publish", "ws.subscribe"} <= traced  # fmt: skip
    session = next(s for s in by_name["ws.session"] if s["parent_id"] == f"0x{PARENT_ID}")
    echo = by_name["ws.echo"][0]
    assert echo["parent_id"] == session["context"]["span_id"]
    assert by_name["message.echo"][0]["parent_id"] == echo["context"]["span_id"]
    publish = by_name["message.publish"][0]
    assert by_name["redis.publish"][0]["parent_id"] == publish["context"]["span_id"]
    assert "POST /auth/login" in by_name


async def test_cli_rejects_bad_options(procs: Processes) -> None:
    for args, fragment in [
        ([], b"--redis-url is required"),
        (["--redis-url", "redis://x", "--bug", "nope"], b"invalid choice"),
        (["--role", "gateway"], b"--message-addr is required"),
        (["--redis-url", "redis://x", "--token-ttl-s", "-1"], b"token_ttl_s"),
    ]:
        proc = await procs.exec(
            sys.executable, "-m", "examples.chat", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await proc.communicate()
        assert proc.returncode == 2, (args, err)
        assert fragment in err, (args, err)


async def test_cli_exports_spans_over_otlp_when_the_endpoint_is_set(
    redis_url: str, http: aiohttp.ClientSession, procs: Processes
) -> None:
    received: list[bytes] = []

    async def collect(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(status=200, content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", collect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"
    proc = await procs.exec(
        sys.executable, "-m", "examples.chat", "--redis-url", redis_url,
        stdout=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            info = json.loads(await proc.stdout.readline())
        await login(http, info["gateway_url"], "t")
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await proc.wait() == 0
        await runner.cleanup()
    assert any(b"POST /auth/login" in body for body in received)
