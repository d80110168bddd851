"""Fault proxy benchmark: the proxy against a direct connection and against a minimal
pass-through pump, side by side in one run.

Processes: the servers (raw TCP echo and discard, a picows WebSocket echo), the fault proxy
(``aftershock proxy serve``, uvloop), a minimal Protocol + uvloop pump (no toxics, no
accounting: the floor for a Python proxy on this machine), and this load client (uvloop,
picows). Only one of proxy and pump carries traffic at a time, so each measurement runs three
busy processes on the machine's cores. Every measurement is bounded in time and sends only to
loopback. Run: ``python -m bench proxy``, or ``python -m bench.bench_proxy`` with
``--quick`` for a shorter run and ``--splice`` to add a zero-copy splice(2) pump to the bulk
comparison. ``--baseline OTHER/.venv/bin/python`` instead compares the rate rows of this
checkout's proxy with another checkout's, round by round (``BENCH_ROUNDS``, default 10).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import json
import os
import random
import resource
import statistics
import struct
import subprocess
import sys
import time
import urllib.request
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psutil
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect, ws_create_server

from bench import run_stoppable
from injector.proxy.toxics import alarm as alarm_module
from injector.proxy.toxics.alarm import Alarm
from injector.proxy.toxics.latency import LatencyConfig, LatencyStage

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

HOST = "127.0.0.1"
SMALL = b"x" * 32
BIG = b"y" * 65536


# --- the echo / discard server (its own process) -------------------------------------------


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.t.write(data)

    def pause_writing(self) -> None:
        self.t.pause_reading()

    def resume_writing(self) -> None:
        self.t.resume_reading()

    def eof_received(self) -> bool:
        return False


class _Discard(asyncio.Protocol):
    """Counts bytes; on EOF answers the count (8 bytes) and closes."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t: asyncio.Transport = transport  # type: ignore[assignment]
        self.n = 0

    def data_received(self, data: bytes) -> None:
        self.n += len(data)

    def eof_received(self) -> bool:
        self.t.write(struct.pack("!Q", self.n))
        self.t.close()
        return True


class _WsEcho(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.BINARY:
            transport.send(WSMsgType.BINARY, frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()


async def _serve_backends() -> None:
    loop = asyncio.get_running_loop()
    echo = await loop.create_server(_Echo, HOST, 0, backlog=4096)
    discard = await loop.create_server(_Discard, HOST, 0, backlog=4096)
    ws = await ws_create_server(lambda _: _WsEcho(), HOST, 0, backlog=4096)
    ports = {
        "echo": echo.sockets[0].getsockname()[1],
        "discard": discard.sockets[0].getsockname()[1],
        "ws": ws.sockets[0].getsockname()[1],
    }
    print(json.dumps(ports), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin


# --- the minimal pump (its own process) -------------------------------------------------------


class _PumpSide(asyncio.Protocol):
    """One socket of a minimal pass-through: what a Python proxy cannot do with less."""

    def __init__(self, peer: _PumpSide | None = None) -> None:
        self.peer = peer
        self.t: asyncio.Transport | None = None
        self.early: list[bytes] = []
        self.early_eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None or peer.t is None:  # upstream still dialling
            self.early.append(data)
            assert self.t is not None
            self.t.pause_reading()
            return
        peer.t.write(data)

    def eof_received(self) -> bool:
        if self.peer is None or self.peer.t is None:
            self.early_eof = True
        elif self.peer.t.can_write_eof():
            self.peer.t.write_eof()
        return True

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.t is not None:
            self.peer.t.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.t is not None:
            self.peer.t.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.t is not None:
            self.peer.t.close()


class _Splicer:
    """Zero-copy client-to-upstream forwarding with splice(2) through a pipe, for comparison:
    the kernel moves pages between the sockets; Python only wakes to ask it to."""

    def __init__(self, loop: asyncio.AbstractEventLoop, client: _PumpSide, upside: _PumpSide):
        assert client.t is not None
        assert upside.t is not None
        self.loop = loop
        self.upside = upside
        client.t.pause_reading()
        # Our own descriptors: the loop refuses a second watcher on a transport's own.
        self.src = os.dup(client.t.get_extra_info("socket").fileno())
        self.dst = os.dup(upside.t.get_extra_info("socket").fileno())
        self.r, self.w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        fcntl.fcntl(self.w, 1031, 1 << 20)  # F_SETPIPE_SZ: 1 MiB
        self.in_pipe = 0
        loop.add_reader(self.src, self.readable)

    def readable(self) -> None:
        try:
            n = os.splice(self.src, self.w, 1 << 20, flags=_SPLICE_FLAGS)
        except BlockingIOError:
            return
        except OSError:
            n = 0
        if n == 0:
            self.loop.remove_reader(self.src)
            assert self.upside.t is not None
            self.upside.t.write_eof()
            for fd in (self.src, self.dst, self.r, self.w):
                os.close(fd)
            return
        self.in_pipe += n
        if not self.drain():
            self.loop.remove_reader(self.src)
            self.loop.add_writer(self.dst, self.writable)

    def drain(self) -> bool:
        while self.in_pipe:
            try:
                self.in_pipe -= os.splice(self.r, self.dst, self.in_pipe, flags=_SPLICE_FLAGS)
            except BlockingIOError:
                return False
        return True

    def writable(self) -> None:
        if self.drain():
            self.loop.remove_writer(self.dst)
            self.loop.add_reader(self.src, self.readable)


_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)


async def _serve_pump(upstreams: list[int], splice: bool) -> None:
    loop = asyncio.get_running_loop()
    listens: dict[int, int] = {}

    def factory(upstream: int) -> _PumpSide:
        client = _PumpSide()

        async def dial() -> None:
            upside = _PumpSide(client)
            try:
                await loop.create_connection(lambda: upside, HOST, upstream)
            except OSError:
                if client.t is not None:
                    client.t.close()
                return
            client.peer = upside
            assert client.t is not None
            assert upside.t is not None
            for data in client.early:
                upside.t.write(data)
            if client.early_eof:
                upside.t.write_eof()
            elif splice:
                _Splicer(loop, client, upside)
                return
            client.t.resume_reading()

        loop.create_task(dial())  # noqa: RUF006 - the pump lives until the process exits
        return client

    for upstream in upstreams:
        server = await loop.create_server(
            functools.partial(factory, upstream), HOST, 0, backlog=4096
        )
        listens[upstream] = server.sockets[0].getsockname()[1]
    print(json.dumps(listens), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)


# --- the load client -------------------------------------------------------------------------


class CpuProbe:
    """CPU seconds (user + system) of the proxy process, to report CPU per message or per MB:
    a figure that, unlike rates, hardly depends on what else the machine is running."""

    def __init__(self, process: psutil.Process) -> None:
        self.process = process
        self.per_unit: list[float] = []

    def read(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def record(self, cpu_s: float, units: float) -> None:
        if units:
            self.per_unit.append(cpu_s / units)


class _Pinger(asyncio.Protocol):
    """Closed loop: send a message, wait for all of it back, count, repeat."""

    def __init__(self, message: bytes, stats: dict[str, int], stop: list[bool]) -> None:
        self.message = message
        self.stats = stats
        self.stop = stop
        self.got = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t: asyncio.Transport = transport  # type: ignore[assignment]

    def start(self) -> None:
        self.t.write(self.message)

    def data_received(self, data: bytes) -> None:
        self.got += len(data)
        if self.got >= len(self.message):
            self.got -= len(self.message)
            self.stats["n"] += 1
            if not self.stop[0]:
                self.t.write(self.message)


async def _closed_loop_rate(
    stats: dict[str, int], stop: list[bool], seconds: float, cpu: CpuProbe | None
) -> float:
    """Echoes per second counted in ``stats["n"]`` over ``seconds`` after a warm-up, with the
    CPU per echo recorded on ``cpu``; then stops the pingers and lets them drain."""
    await asyncio.sleep(0.3)  # warm up
    start_n, started = stats["n"], time.perf_counter()
    cpu0 = cpu.read() if cpu else 0.0
    await asyncio.sleep(seconds)
    if cpu:
        cpu.record(cpu.read() - cpu0, stats["n"] - start_n)
    rate = (stats["n"] - start_n) / (time.perf_counter() - started)
    stop[0] = True
    await asyncio.sleep(0.2)
    return rate


async def echo_rate(
    port: int, message: bytes, conns: int, seconds: float, cpu: CpuProbe | None = None
) -> float:
    loop = asyncio.get_running_loop()
    stats = {"n": 0}
    stop = [False]
    protos = []
    for _ in range(conns):
        _, proto = await loop.create_connection(lambda: _Pinger(message, stats, stop), HOST, port)
        protos.append(proto)
    for proto in protos:
        proto.start()
    rate = await _closed_loop_rate(stats, stop, seconds, cpu)
    for proto in protos:
        proto.t.close()
    return rate


class _WsPinger(WSListener):
    """The closed loop over WebSocket (picows): one binary frame out, its echo back, repeat."""

    def __init__(self, message: bytes, stats: dict[str, int], stop: list[bool]) -> None:
        self.message = message
        self.stats = stats
        self.stop = stop
        self.transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.BINARY:
            self.stats["n"] += 1
            if not self.stop[0]:
                transport.send(WSMsgType.BINARY, self.message)


async def ws_echo_rate(
    port: int, message: bytes, conns: int, seconds: float, cpu: CpuProbe | None = None
) -> float:
    stats = {"n": 0}
    stop = [False]
    transports: list[WSTransport] = []
    for _ in range(conns):
        transport, _ = await ws_connect(
            lambda: _WsPinger(message, stats, stop), f"ws://{HOST}:{port}/"
        )
        transports.append(transport)
    for transport in transports:
        transport.send(WSMsgType.BINARY, message)
    rate = await _closed_loop_rate(stats, stop, seconds, cpu)
    for transport in transports:
        transport.disconnect()
    return rate


class _Bulk(asyncio.Protocol):
    def __init__(self) -> None:
        self.paused = False
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.answer = asyncio.get_running_loop().create_future()
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t: asyncio.Transport = transport  # type: ignore[assignment]

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) >= 8 and not self.answer.done():
            self.answer.set_result(struct.unpack("!Q", self.buf[:8])[0])

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(ConnectionError("closed before the count"))


async def bulk_throughput(port: int, seconds: float, cpu: CpuProbe | None = None) -> float:
    """One connection streaming 64 KiB writes one way; bytes/s counted by the receiver."""
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(_Bulk, HOST, port)
    cpu0 = cpu.read() if cpu else 0.0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        await proto.can_write.wait()
        for _ in range(16):
            proto.t.write(BIG)
        await asyncio.sleep(0)
    proto.t.write_eof()
    count: int = await asyncio.wait_for(proto.answer, 30)
    elapsed = time.perf_counter() - started
    if cpu:
        cpu.record(cpu.read() - cpu0, count / 1e6)
    proto.t.close()
    return count / elapsed


class _Timed(asyncio.Protocol):
    """Open loop: messages carry nothing; send times queue up and pair with replies in order."""

    def __init__(self, samples: list[float], size: int) -> None:
        self.samples = samples
        self.sent: deque[float] = deque()
        self.size = size
        self.got = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t: asyncio.Transport = transport  # type: ignore[assignment]

    def send(self) -> None:
        self.sent.append(time.perf_counter())
        self.t.write(SMALL[: self.size])

    def data_received(self, data: bytes) -> None:
        self.got += len(data)
        now = time.perf_counter()
        while self.got >= self.size and self.sent:
            self.got -= self.size
            self.samples.append(now - self.sent.popleft())


async def paced_latency(
    port: int, conns: int, rate_per_conn: float, seconds: float, pacer: str = "even"
) -> list[float]:
    """``conns`` connections each sending ``rate_per_conn`` msgs/s, staggered; RTTs in s.

    ``pacer="even"`` sends each message at its own time (a timerfd alarm, ~0.1 ms precise);
    ``"loop-timers"`` uses one uvloop timer per message, which fires in whole milliseconds,
    so sends leave in bursts (10 at a time at 10k msgs/s).
    """
    loop = asyncio.get_running_loop()
    samples: list[float] = []
    protos: list[_Timed] = []
    for i in range(0, conns, 200):
        batch = await asyncio.gather(
            *(
                loop.create_connection(lambda: _Timed(samples, len(SMALL)), HOST, port)
                for _ in range(min(200, conns - i))
            )
        )
        protos.extend(p for _, p in batch)
    await asyncio.sleep(0.2)
    interval = 1 / rate_per_conn
    ticks = int(seconds * rate_per_conn)
    # Stagger: connection i sends at started + i*interval/conns + k*interval.
    slot = interval / conns
    if pacer == "even":
        started = time.monotonic() + 0.05
        total = ticks * conns
        sent = 0

        def due() -> None:
            nonlocal sent
            now = time.monotonic()
            while sent < total and started + sent * slot <= now:
                protos[sent % conns].send()
                sent += 1
            if sent < total:
                alarm.arm(started + sent * slot)
            else:
                alarm.disarm()

        alarm = Alarm(loop, due)
        alarm.arm(started)
    else:
        started = loop.time() + 0.05

        def fire(proto: _Timed, k: int, at: float) -> None:
            proto.send()
            if k + 1 < ticks:
                loop.call_at(at + interval, fire, proto, k + 1, at + interval)

        for i, proto in enumerate(protos):
            at = started + i * slot
            loop.call_at(at, fire, proto, 0, at)
    await asyncio.sleep(seconds + 0.5)
    for proto in protos:
        proto.t.close()
    return samples


async def hold_connections(port: int, target: int) -> tuple[int, list[asyncio.Transport]]:
    loop = asyncio.get_running_loop()
    held: list[asyncio.Transport] = []
    samples: list[float] = []
    for i in range(0, target, 250):
        results = await asyncio.gather(
            *(
                loop.create_connection(lambda: _Timed(samples, 1), HOST, port)
                for _ in range(min(250, target - i))
            ),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                continue
            held.append(result[0])  # type: ignore[arg-type]
    # Prove each one is proxied end to end: one byte echoed on every connection.
    for transport in held:
        transport.get_protocol().send()  # type: ignore[attr-defined]
    deadline = time.perf_counter() + 20
    while len(samples) < len(held) and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    return len(samples), held


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the latency stage alone (its own process) -------------------------------------------------


class _ProbePort:
    """A link as a latency stage sees it, with nothing behind it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def buffered_changed(self, delta: int) -> None:
        pass

    def close_connection(self) -> None:
        pass

    def reset_connection(self) -> None:
        pass


async def _stage_errors(design: str, links: int, rate: float, seconds: float) -> list[float]:
    """Signed release errors (s) of 10 ms delays at ``rate`` chunks/s over ``links`` links.

    ``design``: ``wheel`` (the latency stage as shipped: a wheel on a timerfd alarm),
    ``wheel-loop-timers`` (the same wheel on loop timers) or ``call-later`` (one loop timer
    per chunk).
    """
    loop = asyncio.get_running_loop()
    errors: list[float] = []
    latency_s = 0.010
    pacer = Alarm(loop, lambda: pace())
    if design == "wheel-loop-timers":
        alarm_module._LIBC = None  # this process only: the stages' wheel gets loop timers
    pushes: list[Callable[[], None]] = []
    for i in range(links):
        due: deque[float] = deque()

        def out(_: bytes, due: deque[float] = due) -> None:
            errors.append(time.monotonic() - due.popleft())

        if design == "call-later":

            def push_timer(due: deque[float] = due, out: Callable[[bytes], None] = out) -> None:
                due.append(time.monotonic() + latency_s)
                loop.call_later(latency_s, out, SMALL)

            pushes.append(push_timer)
        else:
            stage = LatencyStage(LatencyConfig(latency=10), _ProbePort(loop), random.Random(i))
            stage.out = out
            stage.active = True

            def push_stage(due: deque[float] = due, stage: LatencyStage = stage) -> None:
                due.append(time.monotonic() + latency_s)
                stage.push(SMALL)

            pushes.append(push_stage)
    # Pushes evenly spaced (on a timerfd alarm), as chunks arrive from many sockets.
    total = int(seconds * rate)
    started = time.monotonic() + 0.05
    pushed = 0

    def pace() -> None:
        nonlocal pushed
        now = time.monotonic()
        while pushed < total and started + pushed / rate <= now:
            pushes[pushed % links]()
            pushed += 1
        if pushed < total:
            pacer.arm(started + pushed / rate)
        else:
            pacer.disarm()

    pacer.arm(started)
    await asyncio.sleep(seconds + 0.1 + latency_s * 3)
    return errors


def _stage_probe(design: str) -> None:
    cpu0 = time.process_time()
    errors = [abs(e) for e in uvloop.run(_stage_errors(design, 100, 10_000, 2.0))]
    cpu_s = time.process_time() - cpu0
    summary = [percentile(errors, 0.5), percentile(errors, 0.99), len(errors), cpu_s]
    print(json.dumps(summary), flush=True)


def stage_probe(design: str) -> list[float]:
    """|error| p50, p99 (s), the number of chunks released and the probe's CPU seconds."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_proxy", "--stage-probe", design],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return [float(x) for x in json.loads(out.stdout)]


# --- orchestration ---------------------------------------------------------------------------


@dataclass
class Proc:
    popen: subprocess.Popen[str]
    info: dict[str, object]


def _spawn(args: list[str], ready_prefix: str) -> Proc:
    popen = subprocess.Popen(
        args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
    )
    assert popen.stdout is not None
    deadline = time.time() + 20
    info: dict[str, object] = {}
    while time.time() < deadline:
        line = popen.stdout.readline()
        if not line:
            raise RuntimeError(f"{args} exited before it was ready")
        if line.startswith("{"):
            info = json.loads(line)
            break
        if line.startswith(ready_prefix):
            info = {"url": line.strip().rsplit(" ", 1)[1]}
            break
    return Proc(popen, info)


def _api(url: str, method: str, path: str, body: object | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = response.read()
    return json.loads(payload) if payload else None


def _listen_port(proxy: object) -> int:
    assert isinstance(proxy, dict)
    return int(str(proxy["listen"]).rsplit(":", 1)[1])


class Report:
    """Prints each figure as it is measured and a Markdown table at the end."""

    def __init__(self, pump_cpu: CpuProbe | None = None) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []
        self.pump_cpu = pump_cpu
        """The minimal pump's CPU per unit, reported beside the proxy's when measured."""

    def add(self, name: str, direct: str, pump: str, proxied: str, relation: str) -> None:
        self.rows.append((name, direct, pump, proxied, relation))
        print(f"{name:<44} direct {direct:<22} pump {pump:<20} proxy {proxied:<20} {relation}",
              flush=True)  # fmt: skip

    def ratio(
        self,
        name: str,
        triples: list[tuple[float, float, float]],
        unit: str,
        scale: float,
        cpu: CpuProbe,
        cpu_unit: str,
        extra: str = "",
    ) -> None:
        """Medians of (direct, pump, proxy) rounds measured in turn; ratios are medians of the
        per-round ratios, each round's proxy/direct listed after. The proxy's CPU per unit
        (median over its rounds) follows."""
        direct = statistics.median(d for d, _, _ in triples)
        pump = statistics.median(m for _, m, _ in triples)
        proxied = statistics.median(p for _, _, p in triples)
        pump_ratio = statistics.median(m / d for d, m, _ in triples)
        ratio = statistics.median(p / d for d, _, p in triples)
        rounds = ", ".join(f"{p / d:.2f}" for d, _, p in triples)
        cpu_us = statistics.median(cpu.per_unit) * 1e6 if cpu.per_unit else float("nan")
        cpu.per_unit.clear()
        if self.pump_cpu is not None and self.pump_cpu.per_unit:
            pump_us = statistics.median(self.pump_cpu.per_unit) * 1e6
            self.pump_cpu.per_unit.clear()
            extra = f"pump CPU {pump_us:,.1f} µs/{cpu_unit}" + (f"; {extra}" if extra else "")
        self.add(
            name,
            f"{direct / scale:,.0f} {unit}",
            f"{pump / scale:,.0f} ({pump_ratio:.2f}x)",
            f"{proxied / scale:,.0f} ({ratio:.2f}x)",
            f"proxy/direct by round {rounds}; proxy CPU {cpu_us:,.1f} µs/{cpu_unit}"
            + (f"; {extra}" if extra else ""),
        )

    def table(self) -> str:
        lines = [
            "| measurement | direct | minimal pump (/direct) | proxy (/direct) | notes |",
            "|---|---|---|---|---|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


async def _in_turn(
    rounds: int, *measures: Callable[[], Awaitable[float]]
) -> list[tuple[float, float, float]]:
    triples = []
    for _ in range(rounds):
        direct, pump, proxied = [await measure() for measure in measures]
        triples.append((direct, pump, proxied))
    return triples


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs"


def _ms_pair(summary: list[float]) -> str:
    """|error| p50 / p99 and the whole probe's CPU per chunk (pushing included)."""
    cpu_us = summary[3] / max(1.0, summary[2]) * 1e6
    return f"{summary[0] * 1e3:.2f} / {summary[1] * 1e3:.2f} ms, {cpu_us:.1f} µs CPU/chunk"


async def run(quick: bool, splice: bool) -> None:
    seconds = 1.0 if quick else 1.5
    echo_s = 1.0 if quick else 1.5
    rounds = 3
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    backend = _spawn([sys.executable, "-m", "bench.bench_proxy", "--backend"], "{")
    procs = [backend]
    try:
        ports = {k: int(str(v)) for k, v in backend.info.items()}
        echo_port, discard_port, ws_port = ports["echo"], ports["discard"], ports["ws"]
        pump = _spawn(
            [sys.executable, "-m", "bench.bench_proxy", "--pump",
             ",".join(str(p) for p in (echo_port, discard_port, ws_port))],
            "{",
        )  # fmt: skip
        procs.append(pump)
        via_pump = {int(k): int(str(v)) for k, v in pump.info.items()}

        proxy = _spawn(
            [sys.executable, "-m", "aftershock.cli.main", "proxy", "serve", "--port", "0"],
            "fault proxy API on",
        )
        procs.append(proxy)
        api = str(proxy.info["url"])

        def create(name: str, port: int) -> int:
            body = {"name": name, "upstream": f"{HOST}:{port}", "listen": f"{HOST}:0"}
            return _listen_port(_api(api, "POST", "/proxies", body))

        def toxic(proxy_name: str, **body: object) -> None:
            _api(api, "POST", f"/proxies/{proxy_name}/toxics", body)

        p_echo, p_discard = create("echo", echo_port), create("discard", discard_port)
        p_ws = create("ws", ws_port)
        proxy_ps = psutil.Process(proxy.popen.pid)
        cpu = CpuProbe(proxy_ps)
        pump_cpu = CpuProbe(psutil.Process(pump.popen.pid))
        report = Report(pump_cpu)

        async def bulk_triples() -> list[tuple[float, float, float]]:
            return await _in_turn(
                rounds,
                lambda: bulk_throughput(discard_port, seconds),
                lambda: bulk_throughput(via_pump[discard_port], seconds, pump_cpu),
                lambda: bulk_throughput(p_discard, seconds, cpu),
            )

        report.ratio("bulk 64 KiB stream, 1 conn", await bulk_triples(), "MB/s", 1e6, cpu, "MB")
        if splice:
            splicer = _spawn(
                [
                    sys.executable,
                    "-m",
                    "bench.bench_proxy",
                    "--pump",
                    str(discard_port),
                    "--splice",
                ],
                "{",
            )
            procs.append(splicer)
            via_splice = int(str(splicer.info[str(discard_port)]))
            # Zero-copy forwarding, as a candidate design: the splice pump in the pump's column.
            splice_cpu = CpuProbe(psutil.Process(splicer.popen.pid))
            triples = await _in_turn(
                rounds,
                lambda: bulk_throughput(discard_port, seconds),
                lambda: bulk_throughput(via_splice, seconds, splice_cpu),
                lambda: bulk_throughput(p_discard, seconds, cpu),
            )
            report.ratio(
                "bulk, splice(2) pump in the pump column", triples, "MB/s", 1e6, cpu, "MB",
                extra=f"splice pump CPU {statistics.median(splice_cpu.per_unit) * 1e6:,.1f} µs/MB",
            )  # fmt: skip
        for label, message in (("32 B", SMALL), ("64 KiB", BIG)):
            triples = await _in_turn(
                rounds,
                lambda m=message: ws_echo_rate(ws_port, m, 100, echo_s),  # type: ignore[misc]
                lambda m=message: ws_echo_rate(via_pump[ws_port], m, 100, echo_s, pump_cpu),  # type: ignore[misc]
                lambda m=message: ws_echo_rate(p_ws, m, 100, echo_s, cpu),  # type: ignore[misc]
            )
            report.ratio(f"{label} WS echo (picows), 100 conns", triples, "msg/s", 1, cpu, "msg")
        for label, message in (("32 B", SMALL),):
            triples = await _in_turn(
                rounds,
                lambda m=message: echo_rate(echo_port, m, 100, echo_s),  # type: ignore[misc]
                lambda m=message: echo_rate(via_pump[echo_port], m, 100, echo_s, pump_cpu),  # type: ignore[misc]
                lambda m=message: echo_rate(p_echo, m, 100, echo_s, cpu),  # type: ignore[misc]
            )
            report.ratio(f"{label} raw TCP echo (uvloop), 100 conns", triples, "msg/s", 1, cpu,
                         "msg")  # fmt: skip

        # Tail latency is at the mercy of other load on the machine: alternate short rounds
        # and report the median of each round's percentile.
        lat_rounds = 3 if quick else 5
        d_rounds, p_rounds = [], []
        for _ in range(lat_rounds):
            d_rounds.append(await paced_latency(echo_port, 1000, 1, 2))
            p_rounds.append(await paced_latency(p_echo, 1000, 1, 2))

        def median_pct(runs: list[list[float]], q: float) -> float:
            return statistics.median(percentile(r, q) for r in runs)

        d50, d99 = median_pct(d_rounds, 0.5), median_pct(d_rounds, 0.99)
        p50, p99 = median_pct(p_rounds, 0.5), median_pct(p_rounds, 0.99)
        report.add(
            f"RTT p50 / p99, 1k conns x 1 msg/s (median of {lat_rounds} rounds)",
            f"{_us(d50)} / {_us(d99)}",
            "-",
            f"{_us(p50)} / {_us(p99)}",
            f"added {_us(p50 - d50)} / {_us(p99 - d99)}",
        )

        # A 10 ms latency toxic at 10k msgs/s (100 conns x 100 msg/s), against the same load
        # through the proxy without the toxic, in alternating rounds.
        err50, err99, base50, base99, cpu_base, cpu_toxic = [], [], [], [], [], []
        bursty50, bursty99 = [], []
        for _ in range(lat_rounds):
            bursty = await paced_latency(p_echo, 100, 100, 1, pacer="loop-timers")
            bursty50.append(percentile(bursty, 0.5))
            bursty99.append(percentile(bursty, 0.99))
            c0 = cpu.read()
            base = await paced_latency(p_echo, 100, 100, 1)
            c1 = cpu.read()
            toxic("echo", name="lat", type="latency", attributes={"latency": 10})
            lagged = await paced_latency(p_echo, 100, 100, 1)
            c2 = cpu.read()
            _api(api, "DELETE", "/proxies/echo/toxics/lat")
            cpu_base.append((c1 - c0) / max(1, len(base)))
            cpu_toxic.append((c2 - c1) / max(1, len(lagged)))
            expected = 0.010 + percentile(base, 0.5)
            errors = [abs(s - expected) for s in lagged]
            err50.append(percentile(errors, 0.5))
            err99.append(percentile(errors, 0.99))
            base50.append(percentile(base, 0.5))
            base99.append(percentile(base, 0.99))
        report.add(
            f"latency toxic 10 ms @ 10k msg/s, end to end: |error| p50 / p99 (median of "
            f"{lat_rounds})",
            "-",
            "-",
            f"{statistics.median(err50) * 1e3:.2f} ms / {statistics.median(err99) * 1e3:.2f} ms",
            f"by round p99 {', '.join(f'{e * 1e3:.2f}' for e in err99)} ms; same load without "
            f"the toxic: RTT p50 {_us(statistics.median(base50))}, "
            f"p99 {_us(statistics.median(base99))} (sent in 1 ms bursts by loop timers: p50 "
            f"{_us(statistics.median(bursty50))}, p99 {_us(statistics.median(bursty99))}); "
            f"proxy CPU "
            f"{statistics.median(cpu_toxic) * 1e6:.1f} µs/msg with the toxic, "
            f"{statistics.median(cpu_base) * 1e6:.1f} without",
        )
        # The same delays in one process with no sockets: how precisely each timer design
        # releases, and how late the loop itself runs on this machine right now.
        probes = {d: stage_probe(d) for d in ("wheel", "wheel-loop-timers", "call-later")}
        report.add(
            "10 ms delays in-process, 100 links @ 10k chunks/s: |error| p50 / p99",
            "-",
            "-",
            f"{_ms_pair(probes['wheel'])} (shipped wheel, timerfd)",
            f"same wheel on uvloop timers {_ms_pair(probes['wheel-loop-timers'])}; one "
            f"call_later per chunk {_ms_pair(probes['call-later'])}",
        )

        toxic("discard", name="zero", type="latency", stream="upstream")
        report.ratio("bulk with a 0 ms latency toxic", await bulk_triples(), "MB/s", 1e6, cpu,
                     "MB")  # fmt: skip
        _api(api, "DELETE", "/proxies/discard/toxics/zero")
        toxic(
            "discard", name="rot", type="corrupt", stream="upstream",
            attributes={"probability": 1e-6},
        )  # fmt: skip
        report.ratio("bulk with corrupt at 1e-6", await bulk_triples(), "MB/s", 1e6, cpu, "MB")
        _api(api, "DELETE", "/proxies/discard/toxics/rot")

        # Concurrent connections: the proxy holds two descriptors per connection.
        target = 3000 if quick else 9900
        await asyncio.sleep(0.5)
        rss_before = proxy_ps.memory_info().rss
        verified, held = await hold_connections(p_echo, target)
        await asyncio.sleep(0.5)
        rss_after = proxy_ps.memory_info().rss
        listed = _api(api, "GET", "/proxies/echo/connections")
        open_now = len(listed) if isinstance(listed, list) else 0
        per_conn_kib = (rss_after - rss_before) / max(1, open_now) / 1024
        report.add(
            f"concurrent proxied connections (asked {target})",
            "-",
            "-",
            f"{open_now} open, {verified} echo-verified",
            f"{per_conn_kib:.1f} KiB RSS each; proxy fds {proxy_ps.num_fds()}",
        )
        for transport in held:
            transport.close()
        await asyncio.sleep(0.5)
        print()
        print(report.table())
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(Exception):
                proc.popen.terminate()
                proc.popen.wait(10)


async def compare(baseline_python: str, rounds: int, seconds: float) -> None:
    """The rate rows for two builds of the proxy side by side: this checkout's and the one
    ``baseline_python`` runs (another checkout's virtualenv). Each round measures direct,
    baseline and this build in turn, alternating which build goes first, so machine load
    drifts over both alike; the verdict is the median of the per-round ratios this/baseline,
    for the rate and for the proxy's CPU per unit."""
    backend = _spawn([sys.executable, "-m", "bench.bench_proxy", "--backend"], "{")
    procs = [backend]
    try:
        ports = {k: int(str(v)) for k, v in backend.info.items()}
        builds: dict[str, tuple[dict[int, int], CpuProbe]] = {}
        for label, python in (("baseline", baseline_python), ("this", sys.executable)):
            # -P: import the build that interpreter has installed, not this directory's.
            proc = _spawn(
                [python, "-P", "-m", "aftershock.cli.main", "proxy", "serve", "--port", "0"],
                "fault proxy API on",
            )
            procs.append(proc)
            api = str(proc.info["url"])
            via = {}
            for name, port in ports.items():
                body = {"name": name, "upstream": f"{HOST}:{port}", "listen": f"{HOST}:0"}
                via[port] = _listen_port(_api(api, "POST", "/proxies", body))
            builds[label] = (via, CpuProbe(psutil.Process(proc.popen.pid)))
        echo, discard, ws = ports["echo"], ports["discard"], ports["ws"]
        rows: list[tuple[str, Callable[[int, CpuProbe | None], Awaitable[float]]]] = [
            ("bulk 64 KiB stream, 1 conn", lambda p, c: bulk_throughput(p, seconds, c)),
            ("32 B WS echo (picows), 100 conns",
             lambda p, c: ws_echo_rate(p, SMALL, 100, seconds, c)),
            ("64 KiB WS echo (picows), 100 conns",
             lambda p, c: ws_echo_rate(p, BIG, 100, seconds, c)),
            ("32 B raw TCP echo (uvloop), 100 conns",
             lambda p, c: echo_rate(p, SMALL, 100, seconds, c)),
        ]  # fmt: skip
        upstream_of = {rows[0][0]: discard, rows[1][0]: ws, rows[2][0]: ws, rows[3][0]: echo}
        print(f"| measurement ({rounds} rounds) | this / baseline rate, median (by round) | "
              "this / baseline CPU per unit | baseline /direct | this /direct |")  # fmt: skip
        print("|---|---|---|---|---|")
        for name, measure in rows:
            upstream = upstream_of[name]
            rate_ratios, cpu_ratios, base_direct, this_direct = [], [], [], []
            for i in range(rounds):
                direct = await measure(upstream, None)
                order = ("baseline", "this") if i % 2 == 0 else ("this", "baseline")
                rates, cpus = {}, {}
                for label in order:
                    via, cpu = builds[label]
                    rates[label] = await measure(via[upstream], cpu)
                    cpus[label] = cpu.per_unit.pop()
                rate_ratios.append(rates["this"] / rates["baseline"])
                cpu_ratios.append(cpus["this"] / cpus["baseline"])
                base_direct.append(rates["baseline"] / direct)
                this_direct.append(rates["this"] / direct)
            print(
                f"| {name} | {statistics.median(rate_ratios):.3f} "
                f"({', '.join(f'{r:.2f}' for r in rate_ratios)}) | "
                f"{statistics.median(cpu_ratios):.3f} | "
                f"{statistics.median(base_direct):.2f}x | {statistics.median(this_direct):.2f}x |",
                flush=True,
            )
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(Exception):
                proc.popen.terminate()
                proc.popen.wait(10)


def main() -> None:
    if "--backend" in sys.argv or "--pump" in sys.argv:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2
        )
        if "--backend" in sys.argv:
            uvloop.run(_serve_backends())
        else:
            upstreams = [int(p) for p in sys.argv[sys.argv.index("--pump") + 1].split(",")]
            uvloop.run(_serve_pump(upstreams, "--splice" in sys.argv))
        return
    if "--stage-probe" in sys.argv:
        _stage_probe(sys.argv[sys.argv.index("--stage-probe") + 1])
        return
    quick = "--quick" in sys.argv or os.environ.get("BENCH_QUICK") == "1"
    if "--baseline" in sys.argv:
        baseline = sys.argv[sys.argv.index("--baseline") + 1]
        rounds = int(os.environ.get("BENCH_ROUNDS", "10"))
        print(f"fault proxy A/B against {baseline}: {rounds} rounds, load average "
              f"{os.getloadavg()[0]:.2f}, {time.strftime('%H:%M UTC', time.gmtime())}",
              flush=True)  # fmt: skip
        uvloop.run(compare(baseline, rounds, 1.0 if quick else 1.5))
        return
    print(f"fault proxy benchmark ({'quick' if quick else 'full'}); uvloop and picows, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}, "
          f"{time.strftime('%H:%M UTC', time.gmtime())}", flush=True)  # fmt: skip
    uvloop.run(run(quick, "--splice" in sys.argv))


if __name__ == "__main__":
    run_stoppable(main, "the proxy, pump and backend processes")
