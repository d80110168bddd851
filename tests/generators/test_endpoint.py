"""Target addresses: every valid form (host:port, [IPv6]:port, with a path) parses to its parts
and back to the same URL; anything else is a ``PlanError`` naming the address, never another
exception; the target model refuses exactly those (one grammar), and a target on IPv6
loopback is driven there from a run file."""

from __future__ import annotations

import asyncio
import ipaddress
import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from generators.engines.base import Endpoint
from generators.errors import PlanError
from generators.profile_file import load_run_file
from generators.runner import Generator, GeneratorOptions
from schemas.events import Receive
from schemas.targets import Target
from spine.eventlog import MemorySink
from tests.generators.conftest import profile
from tests.generators.servers import TcpEcho

if TYPE_CHECKING:
    from pathlib import Path

LABEL = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=20)
names = st.lists(LABEL, min_size=1, max_size=4).map(".".join)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
ports = st.integers(1, 65535)
paths = st.lists(st.text("abcdefghijklmnopqrstuvwxyz0123456789-._~", max_size=8), max_size=4).map(
    lambda parts: "/" + "/".join(parts)
)


@given(host=names | ipv4 | ipv6, port=ports, path=paths)
@example(host="::ffff:127.0.0.1", port=1, path="/")
@example(host="localhost", port=65535, path="/ws")
def test_a_valid_address_parses_to_its_parts_and_back(host: str, port: int, path: str) -> None:
    written = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    ep = Endpoint.parse(written, path)
    assert (ep.host, ep.port, ep.path) == (host, port, path)
    url = urlsplit(ep.url("ws"))
    assert url.hostname is not None
    assert (url.scheme, url.port, url.path) == ("ws", port, path)
    if ":" in host:
        assert ipaddress.ip_address(url.hostname) == ipaddress.ip_address(host)
    else:
        assert url.hostname == host
    assert Endpoint.parse(url.netloc, url.path) == ep  # the URL's authority reads back


addresses = (
    st.text(max_size=40)
    | st.builds(
        "{}:{}".format, names | ipv4 | st.text(max_size=12), st.text("0123456789", max_size=6)
    )
    | st.builds("[{}]:{}".format, ipv6 | st.text(max_size=12), ports)
)
"""Any text, and text shaped like each form of address with any host or port."""


def _parsed(address: str) -> Endpoint | PlanError:
    try:
        return Endpoint.parse(address)
    except PlanError as exc:
        return exc


@given(addresses)
@example("127.0.0.1:99999")
@example("127.0.0.1:0")
@example("host:٨٠")  # digits, but not ASCII ones
@example("host: 80")
@example(":80")
@example("host")
@example("::1:80")
@example("[::1")
@example("[not-ipv6]:80")
@example("a..b:80")
@example(("a" * 64) + ".example:80")  # a label the resolver cannot encode
@example("x y:80")
@example("\ud800:80")
def test_anything_else_is_a_plan_error_naming_the_address(address: str) -> None:
    ep = _parsed(address)
    if isinstance(ep, PlanError):
        assert str(ep).startswith(f"invalid address {address!r}: ")
        return
    # Accepted: then it is one of the valid forms.
    host, _, port = address.rpartition(":")
    assert port.isascii()
    assert port.isdigit()
    assert ep.port == int(port)
    assert 1 <= ep.port <= 65535
    assert host in (ep.host, f"[{ep.host}]")
    assert ep.host
    if host.startswith("["):
        ipaddress.IPv6Address(ep.host)
    else:
        assert ":" not in ep.host


@pytest.mark.parametrize("upstream", ["127.0.0.1:99999", "a..b:80", "host:٨٠", "::1:80"])
def test_a_target_that_could_not_be_reached_is_refused_by_its_model(upstream: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(f"invalid address {upstream!r}")):
        Target(name="gw", upstream=upstream, protocol="ws", path="/ws")


def test_a_generator_refuses_a_proxy_listener_without_a_port() -> None:
    """A model's listener may leave its port to the system; load cannot connect to that."""
    target = Target(name="gw", upstream="127.0.0.1:80", proxy="p", listen="127.0.0.1:0")
    with pytest.raises(PlanError, match=re.escape("target 'gw': invalid address '127.0.0.1:0'")):
        Generator(profile(), target, MemorySink(), GeneratorOptions(experiment_id="e"))


@given(addresses)
@example("[::1]:8080")
@example("127.0.0.1:0")
def test_a_target_model_takes_exactly_the_addresses_a_generator_can_reach(address: str) -> None:
    """One grammar: what validates in a run file or experiment is what an engine dials."""
    refused = _refused_by_model(address)
    if refused is None:
        assert isinstance(_parsed(address), Endpoint)
    else:
        assert isinstance(_parsed(address), PlanError)
        assert f"invalid address {address!r}: " in refused


def _refused_by_model(address: str) -> str | None:
    try:
        Target(name="gw", upstream=address)
    except ValidationError as exc:
        return str(exc)
    return None


async def test_a_run_file_target_on_ipv6_loopback_is_driven_there(tmp_path: Path) -> None:
    async with TcpEcho(host="::1") as echo:
        run_file = tmp_path / "run.yaml"
        run_file.write_text(
            f"""targets:
  - {{name: echo6, upstream: "{echo.address}", protocol: tcp}}
load:
  - target: echo6
    duration_s: 2
    ramp: {{shape: constant}}
    tenants: [{{name: acme, users: 2}}]
    script:
      - do: connect
      - do: send
        count: 5
        rate_per_s: 50
        expect: echo
"""
        )
        run = load_run_file(run_file)
        target = run.target("echo6")
        assert target.upstream == f"[::1]:{echo.port}"
        sink = MemorySink()
        opts = GeneratorOptions(experiment_id="e")
        stats = await asyncio.wait_for(Generator(run.load[0], target, sink, opts).run(), 60)
    receipts = [e for e in sink.events if isinstance(e, Receive)]
    assert echo.echoed == len(receipts) == stats.round_trips == 10
    assert all(e.checksum_ok and e.target == "echo6" for e in receipts)
