"""Fault proxy benchmark: the proxy against a direct connection, side by side in one run.

Three processes: an echo/discard server, the fault proxy (``aftershock proxy serve``, uvloop),
and this load client (uvloop). Every measurement is bounded in time and sends only to
loopback. Run: ``python -m bench proxy`` (``--quick`` for a shorter run).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
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


async def _serve_backends() -> None:
    loop = asyncio.get_running_loop()
    echo = await loop.create_server(_Echo, HOST, 0, backlog=4096)
    discard = await loop.create_server(_Discard, HOST, 0, backlog=4096)
    ports = (echo.sockets[0].getsockname()[1], discard.sockets[0].getsockname()[1])
    print(json.dumps({"echo": ports[0], "discard": ports[1]}), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin


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
    await asyncio.sleep(0.3)  # warm up
    start_n, started = stats["n"], time.perf_counter()
    cpu0 = cpu.read() if cpu else 0.0
    await asyncio.sleep(seconds)
    if cpu:
        cpu.record(cpu.read() - cpu0, stats["n"] - start_n)
    rate = (stats["n"] - start_n) / (time.perf_counter() - started)
    stop[0] = True
    await asyncio.sleep(0.2)
    for proto in protos:
        proto.t.close()
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
    count = await asyncio.wait_for(proto.answer, 30)
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


async def paced_latency(port: int, conns: int, rate_per_conn: float, seconds: float) -> list[float]:
    """``conns`` connections each sending ``rate_per_conn`` msgs/s, staggered; RTTs in s."""
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
    started = loop.time() + 0.05
    ticks = int(seconds * rate_per_conn)
    # Stagger: connection i sends at started + i*interval/conns + k*interval.
    slot = interval / conns

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

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str]] = []

    def add(self, name: str, direct: str, proxied: str, relation: str) -> None:
        self.rows.append((name, direct, proxied, relation))
        print(f"{name:<52} direct {direct:<28} proxy {proxied:<34} {relation}", flush=True)

    def ratio(
        self,
        name: str,
        pairs: list[tuple[float, float]],
        unit: str,
        scale: float,
        cpu: CpuProbe,
        cpu_unit: str,
    ) -> None:
        """Median of direct/proxy pairs measured alternately; the ratio is the median ratio.
        The proxy's CPU per unit (median over the proxied rounds) follows the ratio."""
        direct = statistics.median(d for d, _ in pairs)
        proxied = statistics.median(p for _, p in pairs)
        ratio = statistics.median(p / d for d, p in pairs)
        cpu_us = statistics.median(cpu.per_unit) * 1e6 if cpu.per_unit else float("nan")
        cpu.per_unit.clear()
        self.add(
            name,
            f"{direct / scale:,.0f} {unit}",
            f"{proxied / scale:,.0f} {unit}",
            f"{ratio:.2f}x (proxy CPU {cpu_us:,.1f} µs/{cpu_unit})",
        )

    def table(self) -> str:
        lines = ["| measurement | direct | proxy | proxy / direct |", "|---|---|---|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


async def _alternate(
    rounds: int, direct: Callable[[], Awaitable[float]], proxied: Callable[[], Awaitable[float]]
) -> list[tuple[float, float]]:
    return [(await direct(), await proxied()) for _ in range(rounds)]


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs"


async def run(quick: bool) -> None:
    seconds = 1.0 if quick else 2.0
    rounds = 3
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    backend = _spawn([sys.executable, "-m", "bench.bench_proxy", "--backend"], "{")
    proxy = _spawn(
        [sys.executable, "-m", "aftershock.cli.main", "proxy", "serve", "--port", "0"],
        "fault proxy API on",
    )
    try:
        api = str(proxy.info["url"])
        echo_port, discard_port = int(str(backend.info["echo"])), int(str(backend.info["discard"]))

        def create(name: str, port: int) -> int:
            body = {"name": name, "upstream": f"{HOST}:{port}", "listen": f"{HOST}:0"}
            return _listen_port(_api(api, "POST", "/proxies", body))

        def toxic(proxy_name: str, **body: object) -> None:
            _api(api, "POST", f"/proxies/{proxy_name}/toxics", body)

        p_echo, p_discard = create("echo", echo_port), create("discard", discard_port)
        proxy_ps = psutil.Process(proxy.popen.pid)
        cpu = CpuProbe(proxy_ps)
        report = Report()

        async def bulk_pairs() -> list[tuple[float, float]]:
            return await _alternate(
                rounds,
                lambda: bulk_throughput(discard_port, seconds),
                lambda: bulk_throughput(p_discard, seconds, cpu),
            )

        report.ratio("bulk 64 KiB stream, 1 conn", await bulk_pairs(), "MB/s", 1e6, cpu, "MB")
        for label, message in (("32 B", SMALL), ("64 KiB", BIG)):
            pairs = await _alternate(
                rounds,
                lambda m=message: echo_rate(echo_port, m, 100, seconds),  # type: ignore[misc]
                lambda m=message: echo_rate(p_echo, m, 100, seconds, cpu),  # type: ignore[misc]
            )
            report.ratio(f"{label} echo, 100 conns (closed loop)", pairs, "msg/s", 1, cpu, "msg")

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
            f"{_us(p50)} / {_us(p99)}",
            f"added {_us(p50 - d50)} / {_us(p99 - d99)}",
        )

        # A 10 ms latency toxic at 10k msgs/s (100 conns x 100 msg/s), against the same load
        # through the proxy without the toxic, in alternating rounds.
        err50, err99, base50, base99, cpu_base, cpu_toxic = [], [], [], [], [], []
        for _ in range(lat_rounds):
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
            f"latency toxic 10 ms @ 10k msg/s: |error| p50 / p99 (median of {lat_rounds})",
            "-",
            f"{statistics.median(err50) * 1e3:.2f} ms / {statistics.median(err99) * 1e3:.2f} ms",
            f"same load without the toxic: RTT p50 {_us(statistics.median(base50))}, "
            f"p99 {_us(statistics.median(base99))}; proxy CPU "
            f"{statistics.median(cpu_toxic) * 1e6:.1f} µs/msg with the toxic, "
            f"{statistics.median(cpu_base) * 1e6:.1f} without",
        )

        toxic("discard", name="zero", type="latency", stream="upstream")
        report.ratio("bulk with a 0 ms latency toxic", await bulk_pairs(), "MB/s", 1e6, cpu, "MB")
        _api(api, "DELETE", "/proxies/discard/toxics/zero")
        toxic(
            "discard", name="rot", type="corrupt", stream="upstream",
            attributes={"probability": 1e-6},
        )  # fmt: skip
        report.ratio("bulk with corrupt at 1e-6", await bulk_pairs(), "MB/s", 1e6, cpu, "MB")
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
            f"{open_now} open, {verified} echo-verified",
            f"{per_conn_kib:.1f} KiB RSS each; proxy fds {proxy_ps.num_fds()}",
        )
        for transport in held:
            transport.close()
        await asyncio.sleep(0.5)
        print()
        print(report.table())
    finally:
        for proc in (proxy, backend):
            with contextlib.suppress(Exception):
                proc.popen.terminate()
                proc.popen.wait(10)


def main() -> None:
    if "--backend" in sys.argv:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2
        )
        uvloop.run(_serve_backends())
        return
    quick = "--quick" in sys.argv or os.environ.get("BENCH_QUICK") == "1"
    print(f"fault proxy benchmark ({'quick' if quick else 'full'}); 3 processes, uvloop, "
          f"{os.cpu_count()} cores", flush=True)  # fmt: skip
    uvloop.run(run(quick))


if __name__ == "__main__":
    main()
