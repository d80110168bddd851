"""Running a game day against the shipped sample chat system on free loopback ports.

The shipped experiments name fixed loopback addresses (gateway ``127.0.0.1:8080``, its proxy
``127.0.0.1:18080``, ...). :func:`plan_sample` picks free ports instead, maps every address of
the experiment onto them (including URLs such as the auth flow's ``base_url``), and says how
the sample must be started so each of its hops goes through the matching proxy listener;
:class:`SampleProcess` starts it so.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp

from aftershock.gameday.children import die_with_parent
from aftershock.report.errors import RunSetupError
from schemas.experiment import Experiment
from spine.localhost import free_port

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from schemas.targets import Target

SAMPLE_ROLES = ("gateway", "message", "redis")
"""Target names of the sample's hops: clients → gateway → message service → Redis."""


def is_sample_experiment(exp: Experiment) -> bool:
    names = {t.name for t in exp.aftershock.targets}
    return set(SAMPLE_ROLES) <= names


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


class SampleProcess:
    """The sample chat system in its own process (``python -m examples.chat``), so it runs on
    its own core and fails on its own, as a real system under test would.

    Ready once it prints its addresses and ``/healthz`` answers 200; its log goes to
    ``log_path``, its spans to ``otlp_endpoint`` when set, else to ``spans_path``. Leaving
    the context stops it (SIGTERM, then SIGKILL after ``stop_timeout_s``).
    """

    def __init__(
        self,
        plan: SamplePlan,
        *,
        bugs: tuple[str, ...] = (),
        log_path: Path,
        spans_path: Path | None = None,
        otlp_endpoint: str | None = None,
        ready_timeout_s: float = 30.0,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self.plan = plan
        self.bugs = bugs
        self.log_path = log_path
        self.spans_path = spans_path
        self.otlp_endpoint = otlp_endpoint
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.gateway_url = f"http://127.0.0.1:{plan.gateway_port}"
        self._proc: asyncio.subprocess.Process | None = None

    def argv(self) -> list[str]:
        args = [
            sys.executable, "-m", "examples.chat",
            "--redis-url", self.plan.redis_url,
            "--message-addr", self.plan.message_addr,
            "--gateway-port", str(self.plan.gateway_port),
            "--message-port", str(self.plan.message_port),
            "--log-level", "warning",
            "--service-name", "chat",
        ]  # fmt: skip
        for bug in self.bugs:
            args += ["--bug", bug]
        if self.spans_path is not None:
            args += ["--spans-file", str(self.spans_path)]
        return args

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "OTEL_EXPORTER_OTLP_ENDPOINT"}
        if self.otlp_endpoint:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.otlp_endpoint
        return env

    async def __aenter__(self) -> SampleProcess:
        log = self.log_path.open("ab")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv(),
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=self.env(),
                preexec_fn=die_with_parent,
                start_new_session=True,  # a Ctrl-C reaches the run, which stops it in order
            )
        finally:
            log.close()
        try:
            assert self._proc.stdout is not None
            async with asyncio.timeout(self.ready_timeout_s):
                line = await self._proc.stdout.readline()
            if not line:
                raise RunSetupError(
                    f"the sample system exited with {await self._proc.wait()} before it "
                    f"was ready; see {self.log_path}"
                )
            await self.wait_healthy()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def exited(self) -> int | None:
        """The exit status if the process ended on its own (it should not while a run is on)."""
        proc = self._proc
        return None if proc is None else proc.returncode

    async def watch(self, on_exit: Callable[[int], None]) -> None:
        """Call ``on_exit(status)`` if the process ends before :meth:`stop`."""
        proc = self._proc
        if proc is None:
            return
        status = await proc.wait()
        if self._proc is proc:
            on_exit(status)

    async def wait_healthy(self) -> None:
        """Until ``/healthz`` answers 200: the gateway reaches the message service and that
        reaches Redis, so the steady-state check does not race the sample's own start."""
        url = f"{self.gateway_url}/healthz"
        last = "no answer"
        try:
            async with asyncio.timeout(self.ready_timeout_s), aiohttp.ClientSession() as http:
                while True:
                    try:
                        async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                            if r.status == 200:
                                return
                            last = f"HTTP {r.status}: {(await r.text())[:200]}"
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        last = repr(exc)
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise RunSetupError(
                f"the sample system did not become healthy within {self.ready_timeout_s:g} s "
                f"({url}: {last}); see {self.log_path}"
            ) from None

    def kill(self) -> None:
        """SIGKILL now, without waiting (an interrupted run that stopped waiting);
        :meth:`stop` still reaps it."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            async with asyncio.timeout(self.stop_timeout_s):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
