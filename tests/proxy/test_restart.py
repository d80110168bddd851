"""Faults survive a restart of the fault proxy: ``kill -9`` mid-run, start it again, and the
injector notices the lost state and puts every fault that should be active back — ``down``
included — or fails the run loudly; the journal says which."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from injector.controller import ToxiproxyController
from injector.executor import Executor, RunOptions
from injector.journal import FaultState, read_journal
from injector.proxy import ProxyServer
from injector.validate import load_experiment
from spine.eventlog import MemorySink
from tests.proxy.conftest import closed_port

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from injector.journal import Journal
    from tests.processes import Processes

LATENCY_MS = 300


async def _until(pred: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not await pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(0.05)


async def _rtt_ms(port: int) -> float:
    started = time.perf_counter()
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"ping")
            await writer.drain()
            assert await reader.readexactly(4) == b"ping"
        finally:
            writer.close()
    return (time.perf_counter() - started) * 1000


async def _refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


class ProxyProcess:
    """``aftershock proxy serve`` in its own process, on a fixed API port; ``procs`` stops
    whichever is left running when the test ends."""

    def __init__(self, procs: Processes, port: int, config: Path | None) -> None:
        self.procs = procs
        self.port = port
        self.config = config
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        args = ["-m", "aftershock.cli.main", "proxy", "serve", "--port", str(self.port)]
        if self.config is not None:
            args += ["--config", str(self.config)]
        self.proc = await self.procs.exec(sys.executable, *args, stdout=asyncio.subprocess.PIPE)
        assert self.proc.stdout is not None
        async with asyncio.timeout(60):
            while not (line := await self.proc.stdout.readline()).startswith(b"fault proxy API"):
                assert line, "the proxy exited before serving"

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: nothing of the server's state survives
        await self.proc.wait()


def _experiment(tmp_path: Path, upstream: str, slowed: int, downed: int) -> Path:
    doc: dict[str, Any] = {
        "title": "restart",
        "extensions": [
            {
                "name": "aftershock",
                "experiment_id": "restart",
                "targets": [
                    {"name": "a", "upstream": upstream, "proxy": "slowed",
                     "listen": f"127.0.0.1:{slowed}"},
                    {"name": "b", "upstream": upstream, "proxy": "downed",
                     "listen": f"127.0.0.1:{downed}"},
                ],
                "faults": [
                    {"id": "lat", "at": 0, "duration": "2m", "proxy": "slowed",
                     "toxic": {"type": "latency", "attributes": {"latency": LATENCY_MS}}},
                    {"id": "down", "at": 0, "duration": "2m", "proxy": "downed", "down": True},
                ],
                "leases": {"ttl": 1, "heartbeat": 0.25},
            }
        ],
    }  # fmt: skip
    path = tmp_path / "restart.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


async def _faulted(ctl: ToxiproxyController) -> bool:
    try:
        proxies = await ctl.list_proxies()
    except Exception:
        return False
    slowed, downed = proxies.get("slowed"), proxies.get("downed")
    return (
        slowed is not None
        and downed is not None
        and any(t.name == "lat" for t in slowed.toxics)
        and not downed.enabled
    )


async def _clean(ctl: ToxiproxyController) -> bool:
    proxies = await ctl.list_proxies()
    return not proxies["slowed"].toxics and proxies["downed"].enabled


@pytest.mark.parametrize("with_config", [True, False], ids=["with-config", "without-config"])
async def test_kill_9_and_restart_puts_every_fault_back(
    tmp_path: Path, echo_port: int, with_config: bool, procs: Processes
) -> None:
    upstream = f"127.0.0.1:{echo_port}"
    slowed, downed, api = closed_port(), closed_port(), closed_port()
    config = None
    if with_config:
        config = tmp_path / "proxies.json"
        config.write_text(
            json.dumps(
                [
                    {"name": "slowed", "upstream": upstream, "listen": f"127.0.0.1:{slowed}"},
                    {"name": "downed", "upstream": upstream, "listen": f"127.0.0.1:{downed}"},
                ]
            )
        )
    server = ProxyProcess(procs, api, config)
    await server.start()
    ctl = ToxiproxyController(f"http://127.0.0.1:{api}")
    journal_path = tmp_path / "journal.json"
    ex = Executor(
        load_experiment(_experiment(tmp_path, upstream, slowed, downed)),
        ctl,
        MemorySink(),
        RunOptions(journal_path=journal_path),
    )
    run = asyncio.create_task(ex.run())
    try:
        await _until(lambda: _faulted(ctl), 30)
        assert await _rtt_ms(slowed) >= LATENCY_MS
        assert await _refused(downed)

        await server.kill()
        await server.start()
        await _until(lambda: _faulted(ctl), 30)
        # What a client sees again: the latency on one proxy, the other down.
        assert await _rtt_ms(slowed) >= LATENCY_MS
        assert await _refused(downed)
        await _until(lambda: _journal_has_losses(journal_path), 10)

        ex.abort("the test has seen what it needs")
        journal = await run
        assert await _clean(ctl)
    finally:
        if not run.done():
            run.cancel()
            with contextlib.suppress(BaseException):
                await run

    assert journal.status == "aborted"
    assert journal.aftershock.error is None
    losses = {(s.fault_id, s.found, s.action) for s in journal.aftershock.state_losses}
    if with_config:
        assert losses == {
            ("lat", "toxic_missing", "reapplied"),
            ("down", "proxy_enabled", "reapplied"),
        }
    else:
        assert losses == {
            ("lat", "proxy_missing", "reapplied"),
            ("down", "proxy_missing", "reapplied"),
        }
        assert {s.proxy_recreated for s in journal.aftershock.state_losses} == {True}
    assert all(s.server_restarted for s in journal.aftershock.state_losses)
    faults = {f.fault_id: f for f in journal.aftershock.faults}
    assert {f.state for f in faults.values()} == {FaultState.REVERTED}
    assert {f.reapplied for f in faults.values()} == {1}
    assert read_journal(journal_path).aftershock.state_losses == journal.aftershock.state_losses


async def _journal_has_losses(path: Path) -> bool:
    with contextlib.suppress(OSError, ValueError):
        return len(read_journal(path).aftershock.state_losses) == 2
    return False


async def test_a_fault_that_cannot_be_put_back_fails_the_run(
    tmp_path: Path, echo_port: int
) -> None:
    """The proxy disappears and its port is taken: the injector cannot re-create it, and the
    run fails naming the fault, instead of reporting a fault that was not there."""
    upstream = f"127.0.0.1:{echo_port}"
    slowed, downed = closed_port(), closed_port()
    async with ProxyServer() as server:
        ctl = ToxiproxyController(server.api_url)
        ex = Executor(
            load_experiment(_experiment(tmp_path, upstream, slowed, downed)),
            ctl,
            MemorySink(),
            RunOptions(journal_path=tmp_path / "journal.json"),
        )
        run = asyncio.create_task(ex.run())
        await _until(lambda: _faulted(ctl), 30)
        with socket.socket() as taken:
            await ctl.delete_proxy("slowed")
            taken.bind(("127.0.0.1", slowed))
            taken.listen()
            journal: Journal = await asyncio.wait_for(run, 30)
    assert journal.status == "failed"
    assert "the fault proxy lost fault 'lat' on 'slowed' (proxy_missing)" in (
        journal.aftershock.error or ""
    )
    [loss] = journal.aftershock.state_losses
    assert (loss.fault_id, loss.found, loss.action) == ("lat", "proxy_missing", "failed")
    assert loss.server_restarted is False
    assert "address already in use" in (loss.error or "")
    states = {f.fault_id: f.state for f in journal.aftershock.faults}
    assert states["down"] == FaultState.REVERTED
