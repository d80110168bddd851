"""The control API byte for byte: status codes, bodies, content types and headers."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import pytest

from injector.proxy import ProxyServer
from tests.promtool import check_metrics
from tests.proxy.conftest import closed_port, raw_http

if TYPE_CHECKING:
    from tests.processes import Processes

TEXT = "text/plain; charset=utf-8"
INVALID_STREAM = "stream was invalid, can be either upstream or downstream"


async def create(server: ProxyServer, name: str = "p", upstream: str | None = None) -> dict:
    upstream = upstream or f"127.0.0.1:{closed_port()}"
    body = json.dumps({"name": name, "listen": "localhost:0", "upstream": upstream}).encode()
    response = await raw_http(server.api_url, "POST", "/proxies", body)
    assert response.status == 201, response.body
    return json.loads(response.body)


async def test_create_proxy_answers_201_with_bound_listen_and_compact_json(
    server: ProxyServer,
) -> None:
    upstream = f"127.0.0.1:{closed_port()}"
    body = json.dumps({"name": "redis", "listen": "localhost:0", "upstream": upstream}).encode()
    response = await raw_http(server.api_url, "POST", "/proxies", body)
    assert response.status == 201
    assert response.header("content-type") == "application/json"
    assert re.fullmatch(r"[0-9a-v]{20}", response.header("x-toxiproxy-request-id") or "")
    port = json.loads(response.body)["listen"].rsplit(":", 1)[1]
    assert response.body == (
        b'{"name":"redis","listen":"127.0.0.1:' + port.encode() + b'","upstream":"'
        + upstream.encode() + b'","enabled":true,"toxics":[]}'
    )  # fmt: skip


async def test_created_disabled_echoes_raw_listen(server: ProxyServer) -> None:
    body = b'{"name":"d","listen":"localhost:0","upstream":"127.0.0.1:1","enabled":false}'
    response = await raw_http(server.api_url, "POST", "/proxies", body)
    assert response.status == 201
    assert json.loads(response.body)["listen"] == "localhost:0"
    assert json.loads(response.body)["enabled"] is False


async def test_list_get_update_delete(server: ProxyServer) -> None:
    assert (await raw_http(server.api_url, "GET", "/proxies")).body == b"{}"
    created = await create(server, "a")
    listed = json.loads((await raw_http(server.api_url, "GET", "/proxies")).body)
    assert listed == {"a": created}
    got = await raw_http(server.api_url, "GET", "/proxies/a")
    assert json.loads(got.body) == created
    for method in ("POST", "PATCH"):
        updated = await raw_http(server.api_url, method, "/proxies/a", b'{"enabled":false}')
        assert updated.status == 200
        assert json.loads(updated.body)["enabled"] is False
        again = await raw_http(server.api_url, method, "/proxies/a", b'{"enabled":true}')
        # Re-enabling rebinds the same port.
        assert json.loads(again.body)["listen"] == created["listen"]
    deleted = await raw_http(server.api_url, "DELETE", "/proxies/a")
    assert deleted.status == 204
    assert deleted.body == b""
    assert deleted.header("x-toxiproxy-request-id")
    missing = await raw_http(server.api_url, "GET", "/proxies/a")
    assert missing.status == 404
    assert missing.body == b'{"error":"proxy not found","status":404}\n'
    assert missing.header("content-type") == TEXT


@pytest.mark.parametrize(
    ("body", "message", "status"),
    [
        (b"", "bad request body: EOF", 400),
        (b"{", "bad request body: unexpected EOF", 400),
        (b"nope", "bad request body: invalid character 'n' looking for beginning of value", 400),
        (b'{"upstream":"127.0.0.1:1"}', "missing required field: name", 400),
        (b'{"name":"x"}', "missing required field: upstream", 400),
        (
            b'{"name":7,"upstream":"127.0.0.1:1"}',
            "bad request body: json: cannot unmarshal number into Go struct field Proxy.name"
            " of type string",
            400,
        ),
    ],
)
async def test_create_errors_word_for_word(
    server: ProxyServer, body: bytes, message: str, status: int
) -> None:
    response = await raw_http(server.api_url, "POST", "/proxies", body)
    assert response.status == status
    assert response.header("content-type") == TEXT
    assert json.loads(response.body) == {"error": message, "status": status}
    assert response.body.endswith(b"}\n")


async def test_duplicate_proxy_is_409_and_bind_failure_500_not_kept(server: ProxyServer) -> None:
    created = await create(server, "a")
    again = await raw_http(
        server.api_url, "POST", "/proxies", b'{"name":"a","upstream":"127.0.0.1:1"}'
    )
    assert (again.status, json.loads(again.body)["error"]) == (409, "proxy already exists")
    body = json.dumps({"name": "b", "listen": created["listen"], "upstream": "127.0.0.1:1"})
    clash = await raw_http(server.api_url, "POST", "/proxies", body.encode())
    assert clash.status == 500
    assert json.loads(clash.body)["error"] == (
        f"listen tcp {created['listen']}: bind: address already in use"
    )
    assert "b" not in server.proxies


async def test_toxic_crud_and_shapes(server: ProxyServer) -> None:
    await create(server, "p")
    added = await raw_http(
        server.api_url,
        "POST",
        "/proxies/p/toxics",
        b'{"type":"latency","attributes":{"latency":100,"bogus":1}}',
    )
    assert added.status == 200
    assert added.body == (
        b'{"attributes":{"latency":100,"jitter":0},"name":"latency_downstream",'
        b'"type":"latency","stream":"downstream","toxicity":1}'
    )
    up = await raw_http(
        server.api_url,
        "POST",
        "/proxies/p/toxics",
        b'{"type":"bandwidth","stream":"UpStream","toxicity":0.25}',
    )
    assert json.loads(up.body) == {
        "attributes": {"rate": 0},
        "name": "bandwidth_UpStream",
        "type": "bandwidth",
        "stream": "UpStream",
        "toxicity": 0.25,
    }
    listed = json.loads((await raw_http(server.api_url, "GET", "/proxies/p/toxics")).body)
    assert [t["name"] for t in listed] == ["bandwidth_UpStream", "latency_downstream"]
    updated = await raw_http(
        server.api_url,
        "PATCH",
        "/proxies/p/toxics/latency_downstream",
        b'{"attributes":{"jitter":5}}',
    )
    assert json.loads(updated.body)["attributes"] == {"latency": 100, "jitter": 5}
    assert json.loads(updated.body)["toxicity"] == 1
    got = await raw_http(server.api_url, "GET", "/proxies/p/toxics/latency_downstream")
    assert got.body == updated.body
    proxy = json.loads((await raw_http(server.api_url, "GET", "/proxies/p")).body)
    assert [t["name"] for t in proxy["toxics"]] == ["bandwidth_UpStream", "latency_downstream"]
    gone = await raw_http(server.api_url, "DELETE", "/proxies/p/toxics/latency_downstream")
    assert gone.status == 204
    again = await raw_http(server.api_url, "DELETE", "/proxies/p/toxics/latency_downstream")
    assert again.body == b'{"error":"toxic not found","status":404}\n'


@pytest.mark.parametrize(
    ("body", "message", "status"),
    [
        (b'{"type":"latency","stream":"sideways"}', INVALID_STREAM, 400),
        (b'{"type":"warp"}', "invalid toxic type", 400),
        (b'{"stream":"sideways","type":"warp"}', INVALID_STREAM, 400),
        (b'{"type":"latency","name":"dup"}', "toxic already exists", 409),
        (b'{"type":"latency","name":"dup","stream":"upstream"}', "toxic already exists", 409),
        (b'{"type":"latency","attributes":{"latency":"slow"}}',
         "bad request body: json: cannot unmarshal string into Go struct field "
         "LatencyToxic.attributes.latency of type int64", 400),
        (b'{"type":"latency","toxicity":"high"}',
         "bad request body: json: cannot unmarshal string into Go struct field "
         "ToxicWrapper.toxicity of type float32", 400),
        (b"[1]", "bad request body: json: cannot unmarshal array into Go value of type "
         "toxics.ToxicWrapper", 400),
    ],
)  # fmt: skip
async def test_toxic_errors_in_upstream_order(
    server: ProxyServer, body: bytes, message: str, status: int
) -> None:
    await create(server, "p")
    noop = b'{"type":"noop","name":"dup"}'
    first = await raw_http(server.api_url, "POST", "/proxies/p/toxics", noop)
    assert first.status == 200
    response = await raw_http(server.api_url, "POST", "/proxies/p/toxics", body)
    assert (response.status, json.loads(response.body)) == (
        status,
        {"error": message, "status": status},
    )


async def test_toxic_on_missing_proxy_and_missing_toxic(server: ProxyServer) -> None:
    response = await raw_http(server.api_url, "POST", "/proxies/nope/toxics", b"{")
    assert json.loads(response.body)["error"] == "proxy not found"
    await create(server, "p")
    for method in ("GET", "POST", "PATCH", "DELETE"):
        response = await raw_http(server.api_url, method, "/proxies/p/toxics/none", b"{}")
        assert (response.status, json.loads(response.body)["error"]) == (404, "toxic not found")


async def test_unknown_path_404_wrong_method_405(server: ProxyServer) -> None:
    missing = await raw_http(server.api_url, "GET", "/nothing/here")
    assert (missing.status, missing.body) == (404, b"404 page not found\n")
    assert missing.header("content-type") == TEXT
    assert missing.header("x-toxiproxy-request-id") is None
    for method, path in (("PUT", "/proxies"), ("GET", "/reset"), ("DELETE", "/version")):
        wrong = await raw_http(server.api_url, method, path)
        assert (wrong.status, wrong.body) == (405, b"")


async def test_browser_user_agent_is_refused(server: ProxyServer) -> None:
    response = await raw_http(
        server.api_url, "GET", "/proxies", headers={"User-Agent": "Mozilla/5.0 (X11)"}
    )
    assert (response.status, response.body) == (403, b"User agent not allowed\n")
    assert response.header("x-toxiproxy-request-id")
    ok = await raw_http(server.api_url, "GET", "/proxies", headers={"User-Agent": "curl/8"})
    assert ok.status == 200


async def test_version_body_exact(server: ProxyServer) -> None:
    response = await raw_http(server.api_url, "GET", "/version")
    assert response.status == 200
    version = json.loads(response.body)["version"]
    assert response.body == b'{"version": "' + version.encode() + b'"}\n'
    assert tuple(int(x) for x in version.split(".")) >= (2, 6, 0)


async def test_reset_reenables_and_clears_toxics(server: ProxyServer) -> None:
    await create(server, "p")
    await raw_http(server.api_url, "POST", "/proxies/p/toxics", b'{"type":"latency"}')
    await raw_http(server.api_url, "POST", "/proxies/p", b'{"enabled":false}')
    response = await raw_http(server.api_url, "POST", "/reset", b"ignored")
    assert (response.status, response.body) == (204, b"")
    proxy = json.loads((await raw_http(server.api_url, "GET", "/proxies/p")).body)
    assert (proxy["enabled"], proxy["toxics"]) == (True, [])


async def test_populate(server: ProxyServer) -> None:
    empty = await raw_http(server.api_url, "POST", "/populate", b"[]")
    assert (empty.status, empty.body) == (201, b'{"proxies":null}')
    obj = await raw_http(server.api_url, "POST", "/populate", b"{}")
    assert obj.status == 400
    assert obj.header("content-type") == "application/json"
    assert json.loads(obj.body) == {
        "error": "bad request body: json: cannot unmarshal object into Go value of type "
        "[]proxy.Proxy",
        "status": 400,
        "proxies": None,
    }
    missing = await raw_http(
        server.api_url, "POST", "/populate", b'[{"name":"a","upstream":"127.0.0.1:1"},{"name":"b"}]'
    )
    assert json.loads(missing.body)["error"] == "missing required field: upstream at proxy 2"
    assert server.proxies == {}  # nothing created on a 400
    body = b'[{"name":"a","upstream":"127.0.0.1:1","listen":"127.0.0.1:0"}]'
    first = json.loads((await raw_http(server.api_url, "POST", "/populate", body)).body)
    listen = first["proxies"][0]["listen"]
    await raw_http(server.api_url, "POST", "/proxies/a/toxics", b'{"type":"noop"}')
    same = json.dumps([{"name": "a", "upstream": "127.0.0.1:1", "listen": listen}]).encode()
    kept = json.loads((await raw_http(server.api_url, "POST", "/populate", same)).body)
    assert kept["proxies"][0]["toxics"][0]["name"] == "noop_downstream"  # unchanged
    changed = json.dumps([{"name": "a", "upstream": "127.0.0.1:2", "listen": listen}]).encode()
    replaced = json.loads((await raw_http(server.api_url, "POST", "/populate", changed)).body)
    assert replaced["proxies"][0]["toxics"] == []
    clash = json.dumps(
        [
            {"name": "c", "upstream": "127.0.0.1:1", "listen": "127.0.0.1:0"},
            {"name": "d", "upstream": "127.0.0.1:1", "listen": listen},
        ]
    ).encode()
    failed = await raw_http(server.api_url, "POST", "/populate", clash)
    assert failed.status == 500
    payload = json.loads(failed.body)
    assert payload["error"] == f"listen tcp {listen}: bind: address already in use"
    assert [p["name"] for p in payload["proxies"]] == ["c"]  # what was done is kept
    assert "c" in server.proxies
    assert "d" not in server.proxies


async def test_metrics_prometheus_text(server: ProxyServer, procs: Processes) -> None:
    await create(server, "p")
    response = await raw_http(server.api_url, "GET", "/metrics")
    assert response.status == 200
    text = response.body.decode()
    check_metrics(procs, text)
    assert "# TYPE toxiproxy_proxy_received_bytes_total counter" in text
    assert re.search(
        r'toxiproxy_proxy_sent_bytes_total\{direction="downstream",listener="127.0.0.1:\d+",'
        r'proxy="p",upstream="127.0.0.1:\d+"\} 0',
        text,
    )


async def test_keep_alive_serves_many_requests_on_one_connection(server: ProxyServer) -> None:
    import asyncio

    host, port = server.api_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    # Pipelined: three requests written at once, answered in order on the same connection.
    writer.write(
        b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /proxies HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n{"
        b"GET /proxies HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    await writer.drain()
    statuses = []
    for _ in range(3):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
        await reader.readexactly(length)
        statuses.append(int(head.split(b" ")[1]))
    assert statuses == [200, 400, 200]
    writer.close()


async def test_bearer_token_required_when_configured() -> None:
    async with ProxyServer(token="s3cret") as srv:
        denied = await raw_http(srv.api_url, "GET", "/proxies")
        assert (denied.status, json.loads(denied.body)) == (
            401,
            {"error": "missing or invalid bearer token", "status": 401},
        )
        wrong = await raw_http(
            srv.api_url, "GET", "/proxies", headers={"Authorization": "Bearer nope"}
        )
        assert wrong.status == 401
        ok = await raw_http(
            srv.api_url, "GET", "/proxies", headers={"Authorization": "Bearer s3cret"}
        )
        assert ok.status == 200


async def test_upstream_allowlist_names_the_refused_upstream() -> None:
    async with ProxyServer() as srv:
        body = b'{"name":"x","upstream":"10.1.2.3:80"}'
        refused = await raw_http(srv.api_url, "POST", "/proxies", body)
        assert refused.status == 403
        message = json.loads(refused.body)["error"]
        assert message.startswith("upstream not allowed: 10.1.2.3:80 (10.1.2.3 is outside")
        assert "127.0.0.0/8" in message
        await create(srv, "ok")
        update = await raw_http(srv.api_url, "POST", "/proxies/ok", b'{"upstream":"8.8.8.8:53"}')
        assert update.status == 403
    async with ProxyServer(upstream_allowlist=["10.0.0.0/8"]) as srv:
        allowed = await raw_http(srv.api_url, "POST", "/proxies", body)
        assert allowed.status == 201


async def test_populate_refused_upstream_answers_in_populate_shape(server: ProxyServer) -> None:
    body = b'[{"name":"a","upstream":"127.0.0.1:1"},{"name":"b","upstream":"192.0.2.1:80"}]'
    response = await raw_http(server.api_url, "POST", "/populate", body)
    assert response.status == 403
    assert response.header("content-type") == "application/json"
    payload = json.loads(response.body)
    assert payload["proxies"] is None
    assert payload["error"].startswith("upstream not allowed: 192.0.2.1:80")
    assert server.proxies == {}
