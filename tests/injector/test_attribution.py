"""Requests made for an experiment's fault carry its attribution to the fault proxy, which
stamps its own events with it; requests without it (stock clients) are still served."""

from __future__ import annotations

import asyncio

import requests
from hypothesis import given
from hypothesis import strategies as st

from injector.controller import Attribution, ToxiproxyController, attributed
from injector.proxy import ProxyServer
from schemas.events import ProxyDisabled, ProxyEnabled, ToxicAdded
from spine.eventlog import MemorySink


@given(st.text(max_size=40), st.text(max_size=40), st.none() | st.text(max_size=40))
def test_headers_carry_only_what_a_header_can(exp: str, run: str, fault: str | None) -> None:
    headers = Attribution(exp, run, fault).headers()
    for name, value in headers.items():
        assert name.startswith("X-Aftershock-")
        assert value
        assert value.isascii()
        assert value.isprintable()
    if exp.isascii() and exp.isprintable() and exp:
        assert headers["X-Aftershock-Experiment"] == exp


async def test_proxy_events_name_the_experiment_run_and_fault_of_the_request() -> None:
    sink = MemorySink()
    async with ProxyServer(host="127.0.0.1", port=0, sink=sink) as proxy:
        ctl = ToxiproxyController(str(proxy.api_url))
        await ctl.create_proxy("svc", "127.0.0.1:9", "127.0.0.1:0")
        with attributed(Attribution("exp-a", "run-1", "slow")):
            await ctl.add_toxic("svc", {"name": "slow", "type": "latency", "attributes": {}})
        with attributed(Attribution("exp-a", "run-1", "cut")):
            await ctl.update_proxy("svc", {"enabled": False})
        # a stock client sends no attribution: still served, its events unattributed
        url = f"{proxy.api_url}/proxies/svc"
        r = await asyncio.to_thread(requests.post, url, json={"enabled": True}, timeout=5)
        assert r.status_code == 200
    added = next(e for e in sink.events if isinstance(e, ToxicAdded))
    disabled = next(e for e in sink.events if isinstance(e, ProxyDisabled))
    enabled = next(e for e in sink.events if isinstance(e, ProxyEnabled))
    assert (added.experiment_id, added.run_id, added.fault_id) == ("exp-a", "run-1", "slow")
    assert (disabled.experiment_id, disabled.fault_id) == ("exp-a", "cut")
    assert (enabled.experiment_id, enabled.run_id, enabled.fault_id) == ("none", "proxy", None)
