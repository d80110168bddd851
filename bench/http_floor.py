"""The floor of an HTTP load generator in Python: the I/O of each request and nothing else.

``python -m bench.http_floor --port P`` opens ``--users`` keep-alive connections to the echo
server and sends ``--rate`` requests/s in all (POST of ``--body-bytes`` bytes) for
``--duration-s``, from a tick every ``--tick-ms`` as the HTTP engine does, at most one request
in flight per connection. No session, stamp, check, event, trace or timeout wheel: a request
is pre-encoded bytes and an answer is a latency appended to a list. What this costs per request
is what any Python generator pays before it does the work a chaos tool needs done per request.

``--loop epoll``: Python's ``select.epoll`` on non-blocking sockets, the answer's framing read
with ``bytes.find`` (the least a Python process can do). ``--loop uvloop``: the HTTP engine's own
stack, an ``asyncio.Protocol`` on uvloop feeding ``httptools`` (llhttp); with ``--kafka``, each
request's two events (``session.send`` and ``session.receive``, the generators' own
:class:`~generators.recorder.SessionLog` bytes) also go to Kafka through the project's
:class:`~spine.eventlog.publisher.Publisher`, with the linger ``aftershock generate`` gives it
(its local log in a temporary directory, removed at the end): the floor of an engine that
records every event.

Prints one JSON line: answers, sent, skipped (a send falling due while the connection's
previous answer was still out), timeouts (answers outstanding over 5 s at the end), p99 in ms.
``bench/bench_http.py --client floor-epoll|floor-uvloop`` runs it beside autocannon.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import select
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import cast

from httptools import HttpResponseParser

from generators.cli import PUBLISH_LINGER_MS
from generators.recorder import Recorder, SessionLog
from schemas.events import Protocol as WireProtocol
from spine.eventlog.publisher import Publisher

TIMEOUT_S = 5.0


def request_bytes(port: int, body_bytes: int) -> bytes:
    body = b"x" * body_bytes
    return (
        b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1:%d\r\ncontent-type: text/plain\r\n"
        b"content-length: %d\r\n\r\n%b" % (port, len(body), body)
    )


class Tally:
    """What every variant counts: latencies of answers, sends made and skipped."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.sent = 0
        self.skipped = 0

    def report(self, outstanding: list[float], now: float) -> str:
        lat = sorted(self.latencies)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else None
        timeouts = sum(1 for sent in outstanding if sent and now - sent > TIMEOUT_S)
        return json.dumps(
            {
                "answers": len(lat),
                "sent": self.sent,
                "skipped": self.skipped,
                "timeouts": timeouts,
                "p99_ms": p99,
            }
        )


def run_epoll(args: argparse.Namespace) -> str:
    request = request_bytes(args.port, args.body_bytes)
    interval = args.users / args.rate
    tick = args.tick_ms / 1000
    socks: list[socket.socket] = []
    for _ in range(args.users):
        s = socket.create_connection(("127.0.0.1", args.port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        socks.append(s)
    by_fd = {s.fileno(): i for i, s in enumerate(socks)}
    ep = select.epoll()
    for s in socks:
        ep.register(s.fileno(), select.EPOLLIN)
    buffers = [b""] * args.users
    sent_at = [0.0] * args.users
    tally = Tally()
    start = time.monotonic()
    due = [start + interval * i / args.users for i in range(args.users)]
    end = start + args.duration_s
    next_tick = start
    now = start
    while now < end:
        if now >= next_tick:
            for i in range(args.users):
                if due[i] > now:
                    continue
                due[i] += interval
                if sent_at[i]:
                    tally.skipped += 1
                    continue
                sent_at[i] = now
                socks[i].send(request)
                tally.sent += 1
            next_tick += tick
        for fd, _ in ep.poll(max(0.0, next_tick - time.monotonic())):
            i = by_fd[fd]
            data = socks[i].recv(65536)
            if not data:
                raise RuntimeError("the server closed a connection")
            buf = buffers[i] + data
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                buffers[i] = buf
                continue
            at = buf.lower().find(b"content-length:", 0, head_end)
            length = int(buf[at + 15 : buf.find(b"\r\n", at)])
            if len(buf) < head_end + 4 + length:
                buffers[i] = buf
                continue
            buffers[i] = buf[head_end + 4 + length :]
            answered = time.monotonic()
            tally.latencies.append(answered - sent_at[i])
            sent_at[i] = 0.0
        now = time.monotonic()
    return tally.report(sent_at, time.monotonic())


_NO_TRACE: tuple[str | None, str | None] = (None, None)


class _Conn(asyncio.Protocol):
    def __init__(self, tally: Tally, log: SessionLog | None, nbytes: int) -> None:
        self.tally = tally
        self.parser = HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.sent_at = 0.0
        self.log = log
        self.seq = 0
        self.nbytes = nbytes

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        latency = time.monotonic() - self.sent_at
        self.tally.latencies.append(latency)
        self.sent_at = 0.0
        if self.log is not None:
            self.log.receive_own(self.seq, self.nbytes, latency * 1000, _NO_TRACE, 200)


def _same(conn: _Conn) -> _Conn:
    return conn


async def run_uvloop(args: argparse.Namespace) -> str:
    loop = asyncio.get_running_loop()
    request = request_bytes(args.port, args.body_bytes)
    interval = args.users / args.rate
    tick = args.tick_ms / 1000
    tally = Tally()
    pub: Publisher | None = None
    recorder: Recorder | None = None
    if args.kafka:
        state = Path(tempfile.mkdtemp(prefix="http-floor-"))
        pub = Publisher(args.kafka, args.topic, state_dir=state, linger_ms=PUBLISH_LINGER_MS)
        await pub.start()
        recorder = Recorder(
            pub,
            experiment_id="bench-http-floor",
            run_id=uuid.uuid4().hex,
            generator_id=f"floor-{os.getpid()}",
            target="echo",
            protocol=WireProtocol.HTTP,
        )
    conns: list[_Conn] = []
    for i in range(args.users):
        log = None if recorder is None else recorder.session(("t1", f"u{i}", f"s{i}"))
        if log is not None:
            log.use_trace(_NO_TRACE)
        conn = _Conn(tally, log, args.body_bytes)
        await loop.create_connection(functools.partial(_same, conn), "127.0.0.1", args.port)
        conns.append(conn)
    start = time.monotonic()
    due = [start + interval * i / args.users for i in range(args.users)]
    done = loop.create_future()

    def on_tick(at: float) -> None:
        now = time.monotonic()
        if now >= start + args.duration_s:
            done.set_result(None)
            return
        for i, c in enumerate(conns):
            if due[i] > now:
                continue
            due[i] += interval
            if c.sent_at:
                tally.skipped += 1
                continue
            c.sent_at = now
            assert c.transport is not None
            c.transport.write(request)
            tally.sent += 1
            if c.log is not None:
                c.seq += 1
                c.log.send(c.seq, args.body_bytes, None, "response", _NO_TRACE)
        loop.call_at(at + tick, on_tick, at + tick)

    first = loop.time()
    loop.call_at(first, on_tick, first)
    await done
    report = tally.report([c.sent_at for c in conns], time.monotonic())
    if pub is not None:
        await pub.aclose()
        shutil.rmtree(state, ignore_errors=True)
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--rate", type=float, default=4000.0)
    p.add_argument("--duration-s", type=float, default=25.0)
    p.add_argument("--body-bytes", type=int, default=100)
    p.add_argument("--tick-ms", type=float, default=5.0)
    p.add_argument("--loop", choices=("epoll", "uvloop"), default="epoll")
    p.add_argument("--kafka", default="", help="bootstrap: publish each request's events")
    p.add_argument("--topic", default="bench-http-floor")
    args = p.parse_args()
    if args.kafka and args.loop != "uvloop":
        p.error("--kafka needs --loop uvloop")
    if args.loop == "epoll":
        print(run_epoll(args), flush=True)
    else:
        import uvloop

        print(uvloop.run(run_uvloop(args)), flush=True)


if __name__ == "__main__":
    main()
