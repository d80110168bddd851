"""Running a game day against the shipped sample chat system on free loopback ports.

The shipped experiments name fixed loopback addresses (gateway ``127.0.0.1:8080``, its proxy
``127.0.0.1:18080``, ...). :func:`plan_sample` picks free ports instead, maps every address of
the experiment onto them (including URLs such as the auth flow's ``base_url``), and says how
the sample must be started so each of its hops goes through the matching proxy listener.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from schemas.experiment import Experiment

from aftershock.report.errors import RunSetupError

if TYPE_CHECKING:
    from schemas.targets import Target

SAMPLE_ROLES = ("gateway", "message", "redis")
"""Target names of the sample's hops: clients → gateway → message service → Redis."""


def is_sample_experiment(exp: Experiment) -> bool:
    names = {t.name for t in exp.aftershock.targets}
    return set(SAMPLE_ROLES) <= names


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class SamplePlan:
    experiment: Experiment
    """The experiment with every address moved onto the ports below."""
    gateway_port: int
    message_port: int
    redis_url: str
    """What the message service dials: the ``redis`` target's proxy listener."""
    message_addr: str
    """What the gateway dials: the ``message`` target's proxy listener."""
    addresses: dict[str, str]


def rewrite_addresses(exp: Experiment, mapping: dict[str, str]) -> Experiment:
    """The experiment with each ``host:port`` of ``mapping`` replaced wherever it appears as
    a whole address (in targets, URLs and configuration alike)."""
    if not mapping:
        return exp
    pattern = re.compile(
        r"(?<![\w.])("
        + "|".join(re.escape(a) for a in sorted(mapping, key=len, reverse=True))
        + r")(?!\d)"
    )
    raw = exp.model_dump_json(by_alias=True, exclude_none=True)
    return Experiment.model_validate_json(pattern.sub(lambda m: mapping[m.group(1)], raw))


def _hostport(url: str) -> str:
    parts = urlsplit(url)
    if not parts.hostname or not parts.port:
        raise RunSetupError(f"cannot tell host and port of {url!r}")
    return f"{parts.hostname}:{parts.port}"


def plan_sample(exp: Experiment, redis_url: str, host: str = "127.0.0.1") -> SamplePlan:
    """Free ports for the sample and each proxy listener; the sample's Redis is ``redis_url``."""
    targets: dict[str, Target] = {t.name: t for t in exp.aftershock.targets}
    missing = [r for r in SAMPLE_ROLES if r not in targets]
    if missing:
        raise RunSetupError(f"the sample system needs targets named {', '.join(missing)}")
    unproxied = [r for r in SAMPLE_ROLES if not (targets[r].proxy and targets[r].listen)]
    if unproxied:
        raise RunSetupError(
            f"targets {', '.join(unproxied)} need a proxy and a listen address to run "
            "against the sample system"
        )
    gateway_port, message_port = free_port(host), free_port(host)
    mapping = {
        targets["gateway"].upstream: f"{host}:{gateway_port}",
        targets["message"].upstream: f"{host}:{message_port}",
        targets["redis"].upstream: _hostport(redis_url),
    }
    for t in targets.values():
        if t.proxy and t.listen:
            mapping[t.listen] = f"{host}:{free_port(host)}"
    moved = rewrite_addresses(exp, mapping)
    db = urlsplit(redis_url).path or "/0"
    return SamplePlan(
        experiment=moved,
        gateway_port=gateway_port,
        message_port=message_port,
        redis_url=f"redis://{mapping[targets['redis'].listen or '']}{db}",
        message_addr=mapping[targets["message"].listen or ""],
        addresses=mapping,
    )
