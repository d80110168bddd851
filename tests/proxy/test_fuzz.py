"""Thousands of malformed API requests against one server, then the server must still list,
reset, proxy traffic, and have no listener it does not report.

Every answer must be a 2xx or a 4xx, except the 5xx Toxiproxy itself answers: a listener that
cannot bind (``listen tcp ...``), also when ``/reset`` cannot re-enable a proxy.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from injector.proxy.toxics import REGISTRY
from schemas.events import (
    ProxyCreated,
    ProxyDeleted,
    ProxyDisabled,
    ProxyEnabled,
    ToxicAdded,
    ToxicRemoved,
)
from tests.proxy.conftest import ThreadedServer

if TYPE_CHECKING:
    from schemas.events import Event

EXAMPLES = int(os.environ.get("AFTERSHOCK_FUZZ_EXAMPLES", "5000"))
"""Requests sent (about 25 s on a quiet machine)."""
BIND_FAILURE = ("listen tcp", "reset could not enable")


@dataclass(frozen=True)
class Raw:
    """JSON text put into a body as is (so bodies can hold what no encoder writes)."""

    text: str


NASTY_NUMBERS = [
    "NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e30", "1e39", "-5", "-0", "0.5",
    "9" * 400, "9" * 5000, "9223372036854775807", "9223372036854775808", "-9223372036854775809",
    "1.0", "2", "86400001", "0", "1", "100", "3.4028235e38", "1e-400", "0.0",
]  # fmt: skip
NASTY_STRINGS = [
    '"\\ud800"', '"\\udfff\\ud800"', '"\\ud83d\\ude00"', '"\\u0000"', '""', '"x"',
    json.dumps("n" * 201), json.dumps("n" * 200), '"UPSTREAM"', '"downstream"', '"up"',
    '"latency"', '"timeout"', '"bogus"', '"a/b"', '"%2F"', '"\\n"', '"flip"', '"replace"',
]  # fmt: skip
NAMES = ["p", "q", "\ud800", "n" * 201, "a/b", "x y", "é", "latency_downstream", "t"]


def _host_ports(echo_port: int, api_port: int) -> tuple[list[str], list[str]]:
    upstreams = [
        f"127.0.0.1:{echo_port}", "somehost:12345", "10.0.0.1:80", "a" * 64 + ".com:1",
        "[::1]:1", "localhost:1", "", "nohost", "127.0.0.1:99999", ":80", "\\ud800:1",
        "a..b:1", "[::1:1", "127.0.0.1:", "x\\u0000y:1", f"localhost:{echo_port}",
    ]  # fmt: skip
    listens = [
        "127.0.0.1:0", "localhost:0", "0.0.0.0:0", "[::]:0", "[::1]:0", "", "10.0.0.1:0",
        "nowhere", "127.0.0.1:-1", "host.name:0", f"127.0.0.1:{api_port}", "127.0.0.1:99999",
        "[fe80::1]:0", "127.0.0.2:0", ":0",
    ]  # fmt: skip
    return upstreams, listens


def _json_text(value: object) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{_json_text(k)}:{_json_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_json_text(v) for v in value) + "]"
    return json.dumps(value)


def requests(echo_port: int, api_port: int) -> st.SearchStrategy[tuple[str, str, bytes | None]]:
    upstreams, listens = _host_ports(echo_port, api_port)
    scalar = st.one_of(
        st.sampled_from(NASTY_NUMBERS).map(Raw),
        st.sampled_from(NASTY_STRINGS).map(Raw),
        st.none(),
        st.booleans(),
        st.integers(-(10**20), 10**20),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=6),
    )
    value = st.recursive(
        scalar,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
        max_leaves=6,
    )
    attribute_keys = sorted(
        {key for name in REGISTRY.names() for key in REGISTRY.get(name).config.model_fields}  # type: ignore[union-attr]
    )
    attributes = st.dictionaries(st.sampled_from(attribute_keys), value, max_size=4)
    match = st.fixed_dictionaries(
        {},
        optional={
            "clients": st.lists(st.sampled_from(["127.0.0.1/32", "x", "::1", "1.2.3.4/99"]))
            | value,
            "contains": value,
            "within_bytes": value,
        },
    )
    name = st.sampled_from(NAMES).map(lambda n: Raw(json.dumps(n))) | value
    proxy_fields = {
        "listen": st.sampled_from(listens).map(lambda u: Raw(f'"{u}"')) | value,
        "enabled": st.booleans() | value,
        "ttl_ms": st.sampled_from(NASTY_NUMBERS).map(Raw) | value,
    }
    upstream = st.sampled_from(upstreams).map(lambda u: Raw(f'"{u}"')) | value
    new_proxy = st.fixed_dictionaries({"name": name, "upstream": upstream}, optional=proxy_fields)
    proxy_update = st.fixed_dictionaries({}, optional={"upstream": upstream, **proxy_fields})
    toxic_fields = {
        "name": name,
        "stream": st.sampled_from(["upstream", "Downstream", "sideways", ""]) | value,
        "toxicity": st.sampled_from(NASTY_NUMBERS).map(Raw) | value,
        "attributes": attributes | value,
        "match": match | value,
        "ttl_ms": st.sampled_from(NASTY_NUMBERS).map(Raw) | value,
    }
    toxic_type = st.sampled_from([*REGISTRY.names(), "bogus", ""]) | value
    new_toxic = st.fixed_dictionaries({"type": toxic_type}, optional=toxic_fields)
    toxic_update = st.fixed_dictionaries({}, optional=toxic_fields)

    def body_of(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[bytes | None]:
        text = strategy.map(_json_text)
        return st.one_of(
            text.map(str.encode),
            text.map(str.encode),
            text.map(str.encode),
            # Cut short, or not JSON at all, or not UTF-8.
            st.tuples(text, st.integers(0, 40)).map(lambda t: t[0][: t[1]].encode()),
            value.map(_json_text).map(str.encode),
            st.binary(max_size=32),
            st.none(),
        )

    known = st.sampled_from(["p", "q", "p", "q", "after"]) | st.sampled_from(NAMES).map(
        lambda n: n.replace("\ud800", "\ufffd")
    )
    segment = st.one_of(
        known.map(lambda s: quote(s, safe="")),
        st.sampled_from(["%ED%A0%80", "%FF", "%", "%zz", "..", "."]),
    )
    toxic_name = (
        st.sampled_from([f"{t}_{d}" for t in REGISTRY.names() for d in ("downstream", "upstream")])
        | segment
    )
    change = st.sampled_from(["POST", "PATCH"])
    plain_proxy = st.builds(
        lambda n, e: {"name": n, "upstream": f"127.0.0.1:{echo_port}", "enabled": e},
        st.sampled_from(["p", "q"]),
        st.booleans(),
    ).map(lambda b: json.dumps(b).encode())
    plain_toxic = st.builds(
        lambda t, d: {"type": t, "stream": d, "toxicity": 1},
        st.sampled_from(REGISTRY.names()),
        st.sampled_from(["upstream", "downstream"]),
    ).map(lambda b: json.dumps(b).encode())
    return st.one_of(
        st.tuples(st.just("POST"), st.just("/proxies"), body_of(new_proxy)),
        st.tuples(st.just("POST"), st.just("/populate"), body_of(st.lists(new_proxy, max_size=3))),
        st.tuples(change, segment.map(lambda p: f"/proxies/{p}"), body_of(proxy_update)),
        st.tuples(
            st.just("POST"), segment.map(lambda p: f"/proxies/{p}/toxics"), body_of(new_toxic)
        ),
        st.tuples(
            change,
            st.tuples(segment, toxic_name).map(lambda t: f"/proxies/{t[0]}/toxics/{t[1]}"),
            body_of(toxic_update),
        ),
        st.tuples(
            st.just("POST"),
            st.one_of(
                segment.map(lambda p: f"/proxies/{p}/renew"),
                st.tuples(segment, toxic_name).map(
                    lambda t: f"/proxies/{t[0]}/toxics/{t[1]}/renew"
                ),
            ),
            body_of(st.fixed_dictionaries({}, optional={"ttl_ms": value})),
        ),
        st.tuples(
            st.sampled_from(["GET", "DELETE", "GET"]),
            st.one_of(
                segment.map(lambda p: f"/proxies/{p}"),
                segment.map(lambda p: f"/proxies/{p}/toxics"),
                segment.map(lambda p: f"/proxies/{p}/connections"),
                st.tuples(segment, toxic_name).map(lambda t: f"/proxies/{t[0]}/toxics/{t[1]}"),
                st.sampled_from(["/proxies", "/metrics", "/version", "/capabilities"]),
            ),
            st.none(),
        ),
        st.tuples(st.just("POST"), st.just("/reset"), body_of(value)),
        # Well-formed changes, so that the malformed ones meet proxies and toxics.
        st.tuples(st.just("POST"), st.just("/proxies"), plain_proxy),
        st.tuples(
            st.just("POST"),
            st.sampled_from(["/proxies/p/toxics", "/proxies/q/toxics"]),
            plain_toxic,
        ),
    )


def _listening_ports() -> set[int]:
    """TCP ports this process listens on (from /proc: no guessing)."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


class Client:
    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def send(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        try:
            self.conn.request(method, path, body=body)
            response = self.conn.getresponse()
            return response.status, response.read()
        except (http.client.HTTPException, ConnectionError):
            # The server may close after an answer it chose to close on: reconnect once.
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.conn.request(method, path, body=body)
            response = self.conn.getresponse()
            return response.status, response.read()


def _check_answer(method: str, path: str, body: bytes | None, status: int, data: bytes) -> None:
    where = f"{method} {path} {body!r:.300} -> {status} {data!r:.300}"
    assert status < 500 or (status == 500 and json.loads(data)["error"].startswith(BIND_FAILURE)), (
        where
    )
    if status >= 400 and data and status not in (404, 405):
        decoded = json.loads(data)
        assert decoded["status"] == status, where
        assert decoded["error"], where
    if status in (200, 201) and not path.endswith("/metrics") and path != "/version":
        json.loads(data, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


def test_fuzz_api_then_still_usable() -> None:
    before = _listening_ports()
    server = ThreadedServer().start()
    client = Client(server.port)
    try:
        statuses: Counter[int] = Counter()
        started = time.monotonic()

        # Requests go in batches: hypothesis does not repeat an example, and batches let the
        # few well-formed changes come back again and again among the malformed ones.
        @settings(
            max_examples=EXAMPLES // 10,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(batch=st.lists(requests(server.echo_port, server.port), min_size=10, max_size=10))
        def one(batch: list[tuple[str, str, bytes | None]]) -> None:
            for method, path, body in batch:
                status, data = client.send(method, path, body)
                statuses[status] += 1
                _check_answer(method, path, body, status, data)

        one()
        elapsed = time.monotonic() - started
        assert sum(statuses.values()) >= EXAMPLES * 0.9, statuses
        # The fuzz did make changes, not only bounce off the parser.
        for status in (200, 201, 204, 409):
            assert statuses[status] > 0, statuses

        _events_tell_the_state(client, server)
        _still_usable(client, server, before)
        print(f"fuzz: {sum(statuses.values())} requests in {elapsed:.1f}s: {dict(statuses)}")
    finally:
        client.conn.close()
        server.stop()


def _fold(events: list[Event]) -> dict[str, tuple[bool, set[str]]]:
    """The server's proxies as its fault events tell them: enabled, and toxic names."""
    proxies: dict[str, tuple[bool, set[str]]] = {}
    for event in events:
        if isinstance(event, ProxyCreated):
            proxies[event.proxy] = (True, set())
        elif isinstance(event, ProxyDeleted):
            del proxies[event.proxy]
        elif isinstance(event, ProxyEnabled | ProxyDisabled):
            proxies[event.proxy] = (isinstance(event, ProxyEnabled), proxies[event.proxy][1])
        elif isinstance(event, ToxicAdded):
            proxies[event.proxy][1].add(event.toxic.name)
        elif isinstance(event, ToxicRemoved):
            proxies[event.proxy][1].remove(event.toxic_name)
    return proxies


def _events_tell_the_state(client: Client, server: ThreadedServer) -> None:
    """Every change was written as an event in the same step: folding the events gives
    exactly what the API lists (read between two identical event counts, since a lease may
    expire at any moment)."""
    for _ in range(50):
        seen = len(server.sink.events)
        status, data = client.send("GET", "/proxies")
        events = list(server.sink.events)
        if len(events) == seen:
            break
    assert status == 200
    listed = {
        name: (p["enabled"], {t["name"] for t in p["toxics"]})
        for name, p in json.loads(data).items()
    }
    assert any(isinstance(e, ToxicAdded) for e in events), "the fuzz added no toxic"
    assert _fold(events) == listed


def _still_usable(client: Client, server: ThreadedServer, before: set[int]) -> None:
    status, data = client.send("GET", "/proxies")
    assert status == 200
    proxies = json.loads(data)
    assert client.send("GET", "/metrics")[0] == 200

    status, data = client.send("POST", "/reset")
    # A proxy created disabled on a port that is taken cannot be re-enabled: reset says so,
    # and still does everything else.
    assert status == 204 or json.loads(data)["error"].startswith("reset could not enable"), data
    status, data = client.send("GET", "/proxies")
    proxies = json.loads(data)
    for name, proxy in proxies.items():
        assert proxy["toxics"] == [], name
        status, _ = client.send("GET", f"/proxies/{quote(name, safe='')}")
        assert status == 200, name

    # No listener the API does not report.
    reported = {int(p["listen"].rsplit(":", 1)[1]) for p in proxies.values() if p["enabled"]} | {
        server.port,
        server.echo_port,
    }
    assert _listening_ports() - before == reported

    # Traffic still flows, through a new proxy and through one the fuzz left (if any).
    body = json.dumps(
        {"name": "after-fuzz", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{server.echo_port}"}
    )
    status, data = client.send("POST", "/proxies", body.encode())
    assert status == 201, data
    listens = [
        json.loads(data)["listen"],
        *[
            p["listen"]
            for p in proxies.values()
            if p["enabled"] and p["upstream"] == f"127.0.0.1:{server.echo_port}"
        ][:1],
    ]
    for listen in listens:
        host, port = listen.rsplit(":", 1)
        with socket.create_connection((host.strip("[]"), int(port)), timeout=10) as sock:
            sock.sendall(b"still here")
            got = b""
            while len(got) < 10:
                chunk = sock.recv(64)
                assert chunk, listen
                got += chunk
            assert got == b"still here"
    for name in [*proxies, "after-fuzz"]:
        assert client.send("DELETE", f"/proxies/{quote(name, safe='')}")[0] == 204, name
    assert client.send("GET", "/proxies") == (200, b"{}")
    assert _listening_ports() - before == {server.port, server.echo_port}
