"""Aftershock's extensions: corrupt, drop, per-client match, leases, connections, capabilities,
and the fault events every change publishes."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING

from injector.proxy import ProxyServer
from schemas.events import ConnectionClosed, ProxyDisabled, ToxicAdded, ToxicRemoved
from tests.promtool import check_metrics
from tests.proxy.conftest import raw_http
from tests.proxy.helpers import Api, echo_rtt, read_exactly

if TYPE_CHECKING:
    from spine.eventlog import MemorySink
    from tests.processes import Processes


async def test_capabilities(server: ProxyServer) -> None:
    response = await raw_http(server.api_url, "GET", "/capabilities")
    body = json.loads(response.body)
    assert body["server"] == "aftershock"
    assert {"latency", "corrupt", "drop", "packet_loss"} <= set(body["toxics"])
    assert body["features"] == ["leases", "match", "connections"]


async def test_standard_responses_carry_no_extension_keys(server: ProxyServer) -> None:
    async with Api(server) as api:
        await api.proxy("p", 1)
        toxic = await api.toxic("p", type="latency")
        assert set(toxic) == {"attributes", "name", "type", "stream", "toxicity"}
        proxy = (await api.client.get("/proxies/p")).json()
        assert set(proxy) == {"name", "listen", "upstream", "enabled", "toxics"}


async def test_corrupt_changes_bytes_at_the_configured_rate(
    server: ProxyServer, echo_port: int
) -> None:
    async with Api(server) as api:
        host, port = await api.proxy("p", echo_port)
        toxic = await api.toxic(
            "p",
            type="corrupt",
            attributes={"probability": 0.01, "seed": 7, "skip_bytes": 1000},
        )
        assert toxic["attributes"] == {
            "probability": 0.01,
            "per_chunk": 0,
            "mode": "flip",
            "seed": 7,
            "skip_bytes": 1000,
        }
        reader, writer = await asyncio.open_connection(host, port)
        payload = bytes(200_000)
        writer.write(payload)
        await writer.drain()
        received = await read_exactly(reader, len(payload))
        writer.close()
    assert received[:1000] == payload[:1000]  # skip_bytes left intact
    changed = sum(1 for b in received if b)
    # Binomial(199000, 0.01): mean 1990, sd ~44; six sd either side.
    assert 1990 - 270 <= changed <= 1990 + 270, changed
    # flip mode flips exactly one bit of each corrupted byte.
    assert all(bin(b).count("1") == 1 for b in received if b)


async def test_corrupt_replace_per_chunk(server: ProxyServer, echo_port: int) -> None:
    async with Api(server) as api:
        host, port = await api.proxy("p", echo_port)
        await api.toxic(
            "p",
            type="corrupt",
            stream="upstream",
            attributes={"probability": 1.0, "per_chunk": 1, "mode": "replace"},
        )
        reader, writer = await asyncio.open_connection(host, port)
        for _ in range(5):
            writer.write(b"A" * 64)
            received = await read_exactly(reader, 64)
            assert sum(1 for b in received if b != ord("A")) == 1  # one byte per chunk
        writer.close()


async def test_corrupt_rejects_out_of_range(server: ProxyServer) -> None:
    async with Api(server) as api:
        await api.proxy("p", 1)
        response = await api.client.post(
            "/proxies/p/toxics", json={"type": "corrupt", "attributes": {"probability": 2}}
        )
        assert response.status_code == 400
        assert response.json()["error"].startswith("bad request body: attributes.probability:")
        response = await api.client.post(
            "/proxies/p/toxics", json={"type": "corrupt", "attributes": {"mode": "melt"}}
        )
        assert response.status_code == 400
        assert "mode" in response.json()["error"]


async def _collecting_server() -> tuple[asyncio.Server, list[bytes]]:
    received: list[bytes] = []

    async def collect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            received.append(data)
        writer.close()

    server = await asyncio.start_server(collect, "127.0.0.1", 0)
    return server, received


async def test_drop_rate_within_statistical_bounds(server: ProxyServer) -> None:
    sink_server, received = await _collecting_server()
    async with Api(server) as api:
        host, port = await api.proxy("p", sink_server.sockets[0].getsockname()[1])
        await api.toxic("p", type="packet_loss", stream="upstream", attributes={"loss_rate": 0.3})
        _reader, writer = await asyncio.open_connection(host, port)
        sent = 300
        for _ in range(sent):
            writer.write(b"m" * 10)
            await writer.drain()
            await asyncio.sleep(0.001)  # one chunk per message
        await asyncio.sleep(0.1)
        writer.close()
        delivered = sum(len(chunk) for chunk in received) // 10
        # Binomial(300, 0.7): mean 210, sd ~8; six sd either side.
        assert 160 <= delivered <= 260, delivered
        listed = (await api.client.get("/proxies/p/toxics")).json()
        assert listed[0]["type"] == "packet_loss"
        assert listed[0]["attributes"] == {"loss_rate": 0.3, "correlation": 0}
    sink_server.close()


async def test_match_clients_targets_one_client_address(
    server: ProxyServer, echo_port: int
) -> None:
    async with Api(server) as api:
        host, port = await api.proxy("p", echo_port)
        toxic = await api.toxic(
            "p",
            type="latency",
            attributes={"latency": 1000},  # far above a busy machine's own delays
            match={"clients": ["127.0.0.2/32"]},
        )
        assert toxic["match"] == {"clients": ["127.0.0.2/32"]}
        reader, writer = await asyncio.open_connection(host, port, local_addr=("127.0.0.1", 0))
        assert await echo_rtt(reader, writer) < 0.5
        writer.close()
        reader, writer = await asyncio.open_connection(host, port, local_addr=("127.0.0.2", 0))
        assert await echo_rtt(reader, writer) >= 0.99
        writer.close()


async def test_match_contains_targets_by_first_bytes(server: ProxyServer, echo_port: int) -> None:
    async with Api(server) as api:
        host, port = await api.proxy("p", echo_port)
        await api.toxic(
            "p", type="latency", attributes={"latency": 1000}, match={"contains": "tenant=b"}
        )
        reader, writer = await asyncio.open_connection(host, port)
        assert await echo_rtt(reader, writer, b"GET / tenant=a\r\n") < 0.5
        connections = (await api.client.get("/proxies/p/connections")).json()
        assert connections[0]["toxics"] == {"upstream": [], "downstream": []}
        writer.close()
        reader, writer = await asyncio.open_connection(host, port)
        assert await echo_rtt(reader, writer, b"GET / tenant=b\r\n") >= 0.99
        connections = (await api.client.get("/proxies/p/connections")).json()
        hit = [c for c in connections if c["toxics"]["downstream"]]
        assert hit[0]["toxics"]["downstream"] == ["latency_downstream"]
        assert hit[0]["bytes_up"] == 16
        writer.close()


async def test_match_is_validated(server: ProxyServer) -> None:
    async with Api(server) as api:
        await api.proxy("p", 1)
        response = await api.client.post(
            "/proxies/p/toxics", json={"type": "latency", "match": {"clients": ["nope"]}}
        )
        assert response.status_code == 400
        assert response.json()["error"].startswith("bad request body: match.clients")


async def test_connections_listing(server: ProxyServer, echo_port: int, procs: Processes) -> None:
    async with Api(server) as api:
        host, port = await api.proxy("p", echo_port)
        await api.toxic("p", type="noop", stream="upstream")
        reader, writer = await asyncio.open_connection(host, port)
        await echo_rtt(reader, writer, b"12345")
        listed = (await api.client.get("/proxies/p/connections")).json()
        assert len(listed) == 1
        conn = listed[0]
        assert set(conn) == {"id", "client", "opened_ns", "bytes_up", "bytes_down", "toxics"}
        assert conn["client"].startswith("127.0.0.1:")
        assert (conn["bytes_up"], conn["bytes_down"]) == (5, 5)
        assert conn["toxics"] == {"upstream": ["noop_upstream"], "downstream": []}
        metrics = (await api.client.get("/metrics")).text
        check_metrics(procs, metrics)
        for family in ("received", "sent"):
            for direction in ("upstream", "downstream"):
                line = next(
                    x
                    for x in metrics.splitlines()
                    if x.startswith(f"toxiproxy_proxy_{family}_bytes_total")
                    and f'direction="{direction}"' in x
                )
                assert line.endswith(" 5"), line
        assert (await api.client.get("/proxies/none/connections")).status_code == 404
        writer.close()


LATE_S = 1.0
"""How late past its TTL a lease may be seen to expire on a busy machine (the reaper's
scheduling and the polling requests); the precise figure is a speed target, not a test's."""


async def _wait_until(predicate: object, timeout_s: float) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if await predicate():  # type: ignore[operator]
            return time.perf_counter() - started
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met in time")


async def test_toxic_lease_expires_and_renew_extends(server: ProxyServer, sink: MemorySink) -> None:
    async with Api(server) as api:
        await api.proxy("p", 1)
        added = time.perf_counter()
        toxic = await api.toxic("p", type="latency", name="f1", ttl_ms=300)
        assert toxic["ttl_ms"] == 300

        async def gone() -> bool:
            return (await api.client.get("/proxies/p/toxics/f1")).status_code == 404

        await _wait_until(gone, 30)
        # Never before its TTL; after it, as soon as a busy machine lets the reaper run.
        assert 0.29 <= time.perf_counter() - added <= 0.3 + LATE_S
        removed = [e for e in sink.events if isinstance(e, ToxicRemoved)]
        assert [(e.toxic_name, e.reason) for e in removed] == [("f1", "lease_expired")]

        # Renewals and the update come well within the TTL, the update's lifetime check well
        # after it: a busy machine's delays cannot flip either.
        ttl_s = 2.0
        await api.toxic("p", type="latency", name="f2", ttl_ms=int(ttl_s * 1000))
        for _ in range(3):
            await asyncio.sleep(0.6 * ttl_s)
            renewed = await api.client.post(
                "/proxies/p/toxics/f2/renew", json={"ttl_ms": int(ttl_s * 1000)}
            )
            assert renewed.status_code == 200
        assert (await api.client.get("/proxies/p/toxics/f2")).status_code == 200
        # An update renews too: alive 1.2 TTLs after the last renewal.
        await asyncio.sleep(0.6 * ttl_s)
        await api.client.post("/proxies/p/toxics/f2", json={"attributes": {"latency": 5}})
        await asyncio.sleep(0.6 * ttl_s)
        assert (await api.client.get("/proxies/p/toxics/f2")).status_code == 200
        renewed_at = time.perf_counter()
        await api.client.post("/proxies/p/toxics/f2/renew")
        await _wait_until(
            lambda: _status_is(api, "/proxies/p/toxics/f2", 404),
            30,  # type: ignore[arg-type]
        )
        assert ttl_s - 0.01 <= time.perf_counter() - renewed_at <= ttl_s + LATE_S
        no_lease = await api.toxic("p", type="noop")
        assert "ttl_ms" not in no_lease
        refused = await api.client.post("/proxies/p/toxics/noop_downstream/renew")
        assert refused.status_code == 400
        missing = await api.client.post("/proxies/p/toxics/ghost/renew")
        assert missing.json() == {"error": "toxic not found", "status": 404}


async def _status_is(api: Api, path: str, status: int) -> bool:
    return (await api.client.get(path)).status_code == status


async def test_disable_lease_reenables_on_expiry(
    server: ProxyServer, sink: MemorySink, echo_port: int
) -> None:
    async with Api(server) as api:
        host, port = await api.proxy("p", echo_port)
        disabled_at = time.perf_counter()
        response = await api.client.post("/proxies/p", json={"enabled": False, "ttl_ms": 300})
        assert response.json()["enabled"] is False
        assert response.json()["ttl_ms"] == 300

        async def enabled() -> bool:
            return bool((await api.client.get("/proxies/p")).json()["enabled"])

        await _wait_until(enabled, 30)
        assert 0.29 <= time.perf_counter() - disabled_at <= 0.3 + LATE_S
        reader, writer = await asyncio.open_connection(host, port)
        assert await echo_rtt(reader, writer) < 5  # answers again
        writer.close()
        kinds = [e.kind for e in sink.events]
        assert kinds[-2:] == ["fault.proxy_disabled", "fault.proxy_enabled"]
        disabled = [e for e in sink.events if isinstance(e, ProxyDisabled)]
        assert disabled[0].ttl_ms == 300

        # Renewed well inside its 2 s TTL, checked well after it (room for a busy machine).
        await api.client.post("/proxies/p", json={"enabled": False, "ttl_ms": 2000})
        await asyncio.sleep(1.2)
        renewed = await api.client.post("/proxies/p/renew", json={"ttl_ms": 3000})
        assert renewed.status_code == 200
        await asyncio.sleep(1.2)
        assert (await api.client.get("/proxies/p")).json()["enabled"] is False
        assert (await api.client.post("/proxies/p", json={"enabled": True})).status_code == 200
        refused = await api.client.post("/proxies/p/renew")
        assert refused.status_code == 400


async def test_every_change_is_a_fault_event(server: ProxyServer, sink: MemorySink) -> None:
    async with Api(server) as api:
        await api.proxy("p", 1)
        await api.client.post(
            "/proxies/p/toxics",
            json={"type": "latency", "name": "f-7", "attributes": {"latency": 9}},
            headers={"X-Aftershock-Experiment": "exp-1", "X-Aftershock-Fault": "f-7"},
        )
        await api.client.post("/proxies/p/toxics/f-7", json={"toxicity": 0.5})
        await api.client.delete("/proxies/p/toxics/f-7")
        await api.client.post("/proxies/p", json={"enabled": False})
        await api.client.post("/proxies/p", json={"enabled": True})
        await api.client.delete("/proxies/p")
    assert [e.kind for e in sink.events] == [
        "fault.proxy_created",
        "fault.toxic_added",
        "fault.toxic_updated",
        "fault.toxic_removed",
        "fault.proxy_disabled",
        "fault.proxy_enabled",
        "fault.proxy_deleted",
    ]
    added = sink.events[1]
    assert isinstance(added, ToxicAdded)
    assert (added.experiment_id, added.fault_id, added.source) == ("exp-1", "f-7", "proxy")
    assert added.toxic.attributes == {"latency": 9, "jitter": 0}
    assert all(e.proxy == "p" for e in sink.events)  # type: ignore[attr-defined]


async def test_connection_events_with_bytes_and_toxics_hit(echo_port: int) -> None:
    from spine.eventlog import MemorySink

    sink = MemorySink()
    async with ProxyServer(sink=sink, connection_events=True) as server, Api(server) as api:
        host, port = await api.proxy("p", echo_port)
        await api.toxic("p", type="noop", name="n")
        reader, writer = await asyncio.open_connection(host, port)
        await echo_rtt(reader, writer, b"abc")
        writer.close()

        async def closed() -> bool:
            return any(isinstance(e, ConnectionClosed) for e in sink.events)

        await _wait_until(closed, 2)
    event = next(e for e in sink.events if isinstance(e, ConnectionClosed))
    assert (event.bytes_up, event.bytes_down, event.toxics_hit) == (3, 3, ["n"])
    assert any(e.kind == "proxy.connection_opened" for e in sink.events)
