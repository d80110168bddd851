"""Bad input of every kind gets a clear error and the server keeps serving."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import TYPE_CHECKING

import pytest

from tests.proxy.conftest import parse_response, raw_http

if TYPE_CHECKING:
    from injector.proxy import ProxyServer


async def _still_serving(server: ProxyServer) -> None:
    response = await raw_http(server.api_url, "GET", "/version")
    assert response.status == 200


async def _raw_exchange(server: ProxyServer, data: bytes) -> bytes:
    host, port = server.api_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(-1), 10)
    finally:
        writer.close()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /proxies HTTP/9.9\r\n\r\n",
        b"GET /proxies HTTP/1.1\r\nno colon here\r\n\r\n",
        b"POST /proxies HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"POST /proxies HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"POST /proxies HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
async def test_malformed_http_gets_4xx_or_5xx_and_close(
    server: ProxyServer, request_bytes: bytes
) -> None:
    response = parse_response(await _raw_exchange(server, request_bytes))
    assert 400 <= response.status < 600
    assert response.header("connection") == "close"
    await _still_serving(server)


async def test_chunked_body_is_accepted(server: ProxyServer) -> None:
    body = b'{"name":"c","upstream":"127.0.0.1:1","listen":"127.0.0.1:0"}'
    chunked = hex(len(body))[2:].encode() + b"\r\n" + body + b"\r\n0\r\n\r\n"
    data = await _raw_exchange(
        server,
        b"POST /proxies HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + chunked,
    )
    assert parse_response(data).status == 201


async def test_huge_body_gets_413_and_server_keeps_serving(server: ProxyServer) -> None:
    big = b"[" + b'"x",' * 400_000 + b'"x"]'
    response = await raw_http(server.api_url, "POST", "/populate", big)
    assert response.status == 413
    assert json.loads(response.body) == {
        "error": f"request body too large: {len(big)} bytes, limit is 1048576 bytes",
        "status": 413,
    }
    await _still_serving(server)


async def test_huge_headers_get_431(server: ProxyServer) -> None:
    data = await _raw_exchange(
        server, b"GET /proxies HTTP/1.1\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
    )
    assert parse_response(data).status == 431
    await _still_serving(server)


async def test_deeply_nested_json_is_a_bad_request(server: ProxyServer) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    response = await raw_http(server.api_url, "POST", "/populate", body[:1_000_000])
    assert response.status == 400
    await _still_serving(server)


async def test_wrong_types_everywhere(server: ProxyServer) -> None:
    await raw_http(
        server.api_url, "POST", "/proxies", b'{"name":"p","upstream":"127.0.0.1:1","listen":""}'
    )
    cases = [
        ("/proxies", b'{"name":"q","upstream":"127.0.0.1:1","enabled":"yes"}',
         "bad request body: json: cannot unmarshal string into Go struct field Proxy.enabled"
         " of type bool"),
        ("/proxies/p", b'{"listen":5}',
         "bad request body: json: cannot unmarshal number into Go struct field Proxy.listen"
         " of type string"),
        ("/proxies/p/toxics", b'{"type":"latency","attributes":{"latency":1.5}}',
         "bad request body: json: cannot unmarshal number 1.5 into Go struct field "
         "LatencyToxic.attributes.latency of type int64"),
        ("/proxies/p/toxics", b'{"type":"latency","attributes":[]}',
         "bad request body: json: cannot unmarshal array into Go struct field "
         "ToxicWrapper.attributes of type toxics.Toxic"),
        ("/proxies/p/toxics", b'{"type":"latency","ttl_ms":-5}',
         "bad request body: ttl_ms must be between 1 and 604800000, got -5"),
    ]  # fmt: skip
    for path, body, message in cases:
        response = await raw_http(server.api_url, "POST", path, body)
        assert (response.status, json.loads(response.body)["error"]) == (400, message), path
    await _still_serving(server)


async def test_port_in_use_is_500_with_the_bind_error(server: ProxyServer) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        body = json.dumps({"name": "x", "listen": f"127.0.0.1:{port}", "upstream": "127.0.0.1:1"})
        response = await raw_http(server.api_url, "POST", "/proxies", body.encode())
    assert response.status == 500
    assert json.loads(response.body) == {
        "error": f"listen tcp 127.0.0.1:{port}: bind: address already in use",
        "status": 500,
    }
    assert (await raw_http(server.api_url, "GET", "/proxies")).body == b"{}"


async def test_bad_listen_address(server: ProxyServer) -> None:
    body = b'{"name":"x","listen":"nowhere","upstream":"127.0.0.1:1"}'
    response = await raw_http(server.api_url, "POST", "/proxies", body)
    assert (response.status, json.loads(response.body)["error"]) == (
        500,
        "listen tcp: address nowhere: missing port in address",
    )
