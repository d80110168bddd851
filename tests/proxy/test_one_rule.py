"""One rule for the whole API: a request changes state completely and answers 2xx, or changes
nothing and answers 4xx. Each case here broke that rule once."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import socket
import time
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from injector.proxy import ProxyServer
from injector.proxy.allowlist import (
    ListenAllowlist,
    host_problem,
    ip_literal,
    parse_upstream,
    split_host_port,
)
from injector.proxy.errors import BadRequest, Forbidden, ListenError
from tests.proxy.conftest import raw_http
from tests.proxy.helpers import read_exactly

if TYPE_CHECKING:
    from injector.proxy.allowlist import IpAddress
    from spine.eventlog import MemorySink


async def _post(server: ProxyServer, path: str, body: bytes) -> tuple[int, dict]:
    response = await raw_http(server.api_url, "POST", path, body)
    return response.status, json.loads(response.body) if response.body else {}


async def _listing(server: ProxyServer) -> dict:
    response = await raw_http(server.api_url, "GET", "/proxies")
    assert response.status == 200, response.body
    return json.loads(response.body)


async def test_lone_surrogate_name_is_stored_as_go_stores_it(server: ProxyServer) -> None:
    status, created = await _post(
        server, "/proxies", b'{"name":"\\ud800","upstream":"127.0.0.1:1","listen":"127.0.0.1:0"}'
    )
    assert status == 201
    assert created["name"] == "\ufffd"
    assert list(await _listing(server)) == ["\ufffd"]
    assert (await raw_http(server.api_url, "GET", "/metrics")).status == 200
    assert (await raw_http(server.api_url, "POST", "/reset")).status == 204
    gone = await raw_http(server.api_url, "DELETE", "/proxies/%EF%BF%BD")
    assert gone.status == 204
    assert await _listing(server) == {}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"name": NaN}',
         "bad request body: invalid character 'N' looking for beginning of value"),
        (b'{"type":"latency","toxicity":NaN}',
         "bad request body: invalid character 'N' looking for beginning of value"),
        (b'{"type":"latency","toxicity":-Infinity}',
         "bad request body: invalid character 'I' in numeric literal"),
        (b'{"type":"latency","toxicity":1e999}',
         "bad request body: json: cannot unmarshal number 1e999 into Go struct field "
         "ToxicWrapper.toxicity of type float32"),
        (b'{"type":"latency","toxicity":1e39}',
         "bad request body: json: cannot unmarshal number 1e39 into Go struct field "
         "ToxicWrapper.toxicity of type float32"),
        (b'{"type":"latency","toxicity":' + b"9" * 400 + b"}",
         "bad request body: json: cannot unmarshal number " + "9" * 400 + " into Go struct "
         "field ToxicWrapper.toxicity of type float32"),
        (b'{"type":"latency","attributes":{"latency":1e30}}',
         "bad request body: json: cannot unmarshal number 1e30 into Go struct field "
         "LatencyToxic.attributes.latency of type int64"),
        (b'{"type":"latency","attributes":{"latency":' + b"9" * 5000 + b"}}",
         "bad request body: json: cannot unmarshal number " + "9" * 5000 + " into Go struct "
         "field LatencyToxic.attributes.latency of type int64"),
        (b'{"type":"latency","attributes":{"latency":86400001}}',
         "bad request body: attributes.latency: Input should be less than or equal to 86400000"),
        (b'{"type":"latency","attributes":{"jitter":-1}}',
         "bad request body: attributes.jitter: Input should be greater than or equal to 0"),
        (b'{"type":"corrupt","attributes":{"probability":1e999}}',
         "bad request body: json: cannot unmarshal number 1e999 into Go struct field "
         "CorruptToxic.attributes.probability of type float64"),
        (b'{"type":"slicer","attributes":{"average_size":-5}}',
         "bad request body: attributes.average_size: Input should be greater than or equal "
         "to 0"),
        (b'{"type":"latency","toxicity":1.5}',
         "bad request body: toxicity must be between 0 and 1, got 1.5"),
        (b'{"type":"latency","ttl_ms":1e3}',
         "bad request body: json: cannot unmarshal number 1e3 into Go struct field "
         "ToxicWrapper.ttl_ms of type int64"),
        (b'{"type":"latency","name":"' + b"n" * 201 + b'"}',
         "bad request body: name must be at most 200 characters, got 201"),
    ],
)  # fmt: skip
async def test_bad_numbers_and_names_are_400_and_change_nothing(
    server: ProxyServer, sink: MemorySink, body: bytes, error: str
) -> None:
    status, _ = await _post(
        server, "/proxies", b'{"name":"p","upstream":"127.0.0.1:1","listen":"127.0.0.1:0"}'
    )
    assert status == 201
    before = len(sink.events)
    path = "/proxies" if body.startswith(b'{"name"') else "/proxies/p/toxics"
    assert await _post(server, path, body) == (400, {"error": error, "status": 400})
    assert [p["toxics"] for p in (await _listing(server)).values()] == [[]]
    assert len(sink.events) == before
    assert (await raw_http(server.api_url, "GET", "/metrics")).status == 200


async def test_longest_toxic_name_is_added_with_its_event(
    server: ProxyServer, sink: MemorySink
) -> None:
    await _post(server, "/proxies", b'{"name":"p","upstream":"127.0.0.1:1"}')
    name = "n" * 200
    status, toxic = await _post(
        server, "/proxies/p/toxics", json.dumps({"type": "noop", "name": name}).encode()
    )
    assert (status, toxic["name"]) == (200, name)
    added = sink.of_kind("fault.toxic_added")
    assert [e.toxic.name for e in added] == [name]  # type: ignore[attr-defined]


async def test_update_with_bad_attributes_changes_nothing(server: ProxyServer) -> None:
    await _post(server, "/proxies", b'{"name":"p","upstream":"127.0.0.1:1"}')
    await _post(server, "/proxies/p/toxics", b'{"type":"latency","attributes":{"latency":5}}')
    status, _ = await _post(
        server,
        "/proxies/p/toxics/latency_downstream",
        b'{"attributes":{"latency":7,"jitter":-3},"toxicity":0.5}',
    )
    assert status == 400
    toxic = (await _listing(server))["p"]["toxics"][0]
    assert (toxic["attributes"], toxic["toxicity"]) == ({"latency": 5, "jitter": 0}, 1)


@pytest.mark.parametrize(
    "upstream",
    ["a" * 64 + ".example:80", "a..b:80", "x y:80", ":80", "nohost", "127.0.0.1:99999"],
)
async def test_upstream_that_can_never_be_dialled_is_400(
    server: ProxyServer, upstream: str
) -> None:
    body = json.dumps({"name": "p", "upstream": upstream, "enabled": False}).encode()
    status, payload = await _post(server, "/proxies", body)
    assert status == 400
    assert payload["error"].startswith("bad request body: upstream: ")
    await _post(server, "/proxies", b'{"name":"d","upstream":"127.0.0.1:1","enabled":false}')
    status, payload = await _post(server, "/proxies/d", json.dumps({"upstream": upstream}).encode())
    assert status == 400
    assert (await _listing(server))["d"]["upstream"] == "127.0.0.1:1"
    assert (await raw_http(server.api_url, "POST", "/reset")).status == 204


async def test_reset_attempts_every_proxy_and_names_what_failed(server: ProxyServer) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for name, listen in (("a", "127.0.0.1:0"), ("b", f"127.0.0.1:{port}"), ("c", "")):
            body = {"name": name, "upstream": "127.0.0.1:1", "listen": listen, "enabled": False}
            assert (await _post(server, "/proxies", json.dumps(body).encode()))[0] == 201
            assert (await _post(server, f"/proxies/{name}/toxics", b'{"type":"noop"}'))[0] == 200
        status, payload = await _post(server, "/reset", b"")
    assert status == 500
    assert payload["error"] == (
        f"reset could not enable 1: proxy b: listen tcp 127.0.0.1:{port}: bind: "
        "address already in use"
    )
    listing = await _listing(server)
    assert {n: (p["enabled"], p["toxics"]) for n, p in listing.items()} == {
        "a": (True, []),
        "b": (False, []),
        "c": (True, []),
    }


async def test_failed_rebind_on_update_puts_the_proxy_back(server: ProxyServer) -> None:
    status, created = await _post(
        server, "/proxies", b'{"name":"p","upstream":"127.0.0.1:1","listen":"127.0.0.1:0"}'
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, _ = await _post(
            server, "/proxies/p", json.dumps({"listen": f"127.0.0.1:{port}"}).encode()
        )
    assert status == 500
    assert (await _listing(server))["p"] == created


async def test_chunk_size_with_a_sign_is_400(server: ProxyServer) -> None:
    host, port = server.api_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /proxies HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"
    )
    try:
        answer = await asyncio.wait_for(reader.read(-1), 10)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 400 ")


# -- upstreams: resolved outside the lock, checked on every dial -----------------------------


class FakeResolver:
    """Answers from a table, after a delay; counts lookups."""

    def __init__(self, table: dict[str, list[str]], delay_s: float = 0.0) -> None:
        self.table = table
        self.delay_s = delay_s
        self.lookups = 0

    async def __call__(self, host: str, port: int) -> list[IpAddress]:
        self.lookups += 1
        await asyncio.sleep(self.delay_s)
        return [ipaddress.ip_address(a) for a in self.table.get(host, [])]


def _use(server: ProxyServer, resolver: FakeResolver) -> None:
    collection = server.collection
    collection.allowlist = dataclasses.replace(collection.allowlist, resolver=resolver)


async def test_a_slow_resolver_does_not_hold_up_the_api(server: ProxyServer) -> None:
    _use(server, FakeResolver({"slow.test": ["127.0.0.1"]}, delay_s=2.0))
    await _post(server, "/proxies", b'{"name":"other","upstream":"127.0.0.1:1"}')
    create = asyncio.create_task(
        _post(server, "/proxies", b'{"name":"p","upstream":"slow.test:80","enabled":false}')
    )
    await asyncio.sleep(0.2)
    assert not create.done()
    started = time.perf_counter()
    status, _ = await _post(server, "/proxies/other/toxics", b'{"type":"noop","ttl_ms":1000}')
    assert status == 200
    assert "other" in await _listing(server)
    assert time.perf_counter() - started < 1.5
    assert not create.done()
    assert (await create)[0] == 201


async def test_a_name_that_does_not_resolve_is_kept_and_never_dialled(
    server: ProxyServer,
) -> None:
    status, created = await _post(
        server, "/proxies", b'{"name":"p","upstream":"somehost:12345","listen":"127.0.0.1:0"}'
    )
    assert (status, created["upstream"]) == (201, "somehost:12345")
    host, port = created["listen"].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    await _closed_by_proxy(reader)
    writer.close()


async def _closed_by_proxy(reader: asyncio.StreamReader) -> None:
    """The proxy closed the client (data it never forwarded may turn the FIN into a RST)."""
    with contextlib.suppress(ConnectionResetError):
        assert await asyncio.wait_for(reader.read(), 10) == b""


async def test_rebinding_name_never_reaches_a_forbidden_address(echo_port: int) -> None:
    """The name resolves to an allowed address when the proxy is created, then to a forbidden
    one: connections are closed and nothing ever connects to the forbidden address."""
    forbidden_hits: list[object] = []

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        forbidden_hits.append(writer.get_extra_info("peername"))
        writer.close()

    forbidden = await asyncio.start_server(count, "127.0.0.2", echo_port)
    resolver = FakeResolver({"rebind.test": ["127.0.0.1"]})
    try:
        async with ProxyServer(upstream_allowlist=["127.0.0.1/32"]) as server:
            _use(server, resolver)
            status, created = await _post(
                server,
                "/proxies",
                json.dumps({"name": "p", "upstream": f"rebind.test:{echo_port}"}).encode(),
            )
            assert status == 201
            host, port = created["listen"].rsplit(":", 1)
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"allowed")
            assert await read_exactly(reader, 7) == b"allowed"
            writer.close()
            resolver.table["rebind.test"] = ["127.0.0.2"]
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"forbidden")
            await _closed_by_proxy(reader)
            writer.close()
            assert resolver.lookups == 3  # the API's check, then one per connection
            # At API time the forbidden address is a 403.
            status, payload = await _post(
                server, "/proxies", b'{"name":"q","upstream":"rebind.test:80"}'
            )
            assert status == 403
            assert payload["error"].startswith("upstream not allowed: rebind.test:80 (127.0.0.2")
    finally:
        forbidden.close()
        await forbidden.wait_closed()
    assert forbidden_hits == []


async def test_allow_any_upstream_turns_the_check_off() -> None:
    async with ProxyServer(allow_any_upstream=True) as server:
        body = b'{"name":"p","upstream":"192.0.2.1:80","enabled":false}'
        assert (await _post(server, "/proxies", body))[0] == 201


# -- listen addresses ---------------------------------------------------------------------------


async def test_every_interface_binds_loopback_unless_allowed(server: ProxyServer) -> None:
    for listen, shown in (("0.0.0.0:0", "127.0.0.1:"), ("[::]:0", "[::1]:")):
        body = json.dumps({"name": listen, "upstream": "127.0.0.1:1", "listen": listen})
        status, created = await _post(server, "/proxies", body.encode())
        assert status == 201, created
        assert created["listen"].startswith(shown)


@pytest.mark.parametrize("listen", ["10.1.2.3:0", "192.0.2.1:0", "myhost:0"])
async def test_listen_outside_loopback_is_403_even_disabled(
    server: ProxyServer, listen: str
) -> None:
    body = {"name": "p", "upstream": "127.0.0.1:1", "listen": listen, "enabled": False}
    status, payload = await _post(server, "/proxies", json.dumps(body).encode())
    assert status == 403
    assert payload["error"].startswith(f"listen not allowed: {listen} (")
    assert await _listing(server) == {}


def test_listen_allowlist_rules() -> None:
    default = ListenAllowlist()
    assert default.bind_address("") == ("127.0.0.1", 0)
    assert default.bind_address("localhost:5") == ("127.0.0.1", 5)
    assert default.bind_address("127.0.0.9:5") == ("127.0.0.9", 5)
    assert default.bind_address("0.0.0.0:5") == ("127.0.0.1", 5)
    with pytest.raises(Forbidden):
        default.bind_address("10.0.0.1:5")
    with pytest.raises(ListenError):
        default.bind_address("nowhere")
    wide = ListenAllowlist.parse(["0.0.0.0/0"])
    assert wide.bind_address("0.0.0.0:5") == ("0.0.0.0", 5)
    assert wide.bind_address("10.0.0.1:5") == ("10.0.0.1", 5)
    with pytest.raises(ValueError, match="not a CIDR"):
        ListenAllowlist.parse(["somewhere"])


def test_empty_token_is_refused() -> None:
    with pytest.raises(ValueError, match="token is empty"):
        ProxyServer(token="")


# -- the address parsers, on any text ------------------------------------------------------------

ADDRESS_TEXT = st.text(
    alphabet=st.sampled_from("0123456789abcdefxyz.:[]%- _/\x00é") | st.characters(), max_size=80
)


@given(ADDRESS_TEXT)
def test_address_parsers_answer_any_text_with_a_value_or_their_error(text: str) -> None:
    """``split_host_port``: a port in range or ValueError; ``parse_upstream``: a dialable
    host or a 400; ``bind_address``: loopback unless allowed, or a 403/500 — never another
    exception."""
    try:
        host, port = split_host_port(text)
    except ValueError:
        pass
    else:
        assert 0 <= port <= 65535
    refusal = None
    try:
        host, port = parse_upstream(text)
    except BadRequest as exc:
        refusal = exc.message
    if refusal is not None:
        assert refusal.startswith("bad request body: upstream: ")
    else:
        assert host_problem(host) is None
        if ip_literal(host) is None:
            host.encode("idna")  # what the resolver will do with it
    try:
        host, port = ListenAllowlist().bind_address(text)
    except (Forbidden, ListenError):
        pass
    else:
        address = ipaddress.ip_address(host)
        assert address.is_loopback, (text, host)
