"""``aftershock injector run`` against a broker that loses what it acknowledged: when its
local log no longer holds the lost events, the run says so (a ``log.loss`` event naming its
experiment and run, a red line, exit status 4); without a loss it exits 0."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.lossy_broker import RETAIN_NOTHING, LossyBroker, jsonl_ids, losses, stderr_until

from .conftest import plan, write_experiment

if TYPE_CHECKING:
    from tests.processes import Processes

    from .conftest import Echo


ROOT = Path(__file__).resolve().parents[2]


def _experiment(tmp_path: Path, eid: str, upstream: str, go: Path) -> Path:
    """A steady-state probe every 50 ms (many small events) while the method holds until
    ``go`` exists."""
    doc = plan(
        upstream,
        [
            {
                "id": f"{eid}-lat",
                "at": 0,
                "duration": 0.5,
                "proxy": "echo",
                "toxic": {"type": "latency", "attributes": {"latency": 5}},
            }
        ],
        experiment_id=eid,
        **{
            "steady-state-hypothesis": {
                "title": "nothing stopped it",
                "probes": [_python("free", "absent", path=str(tmp_path / "never"))],
            },
            "method": [_python("hold", "wait_for", kind="action", path=str(go))],
            "runtime": {"hypothesis": {"strategy": "continuously", "frequency": 0.05}},
        },
    )
    return write_experiment(tmp_path, doc, f"{eid}.yaml")


def _python(name: str, func: str, kind: str = "probe", **arguments: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "name": name,
        **({"tolerance": True} if kind == "probe" else {}),
        "provider": {
            "type": "python",
            "module": "tests.injector.probes",
            "func": func,
            "arguments": arguments,
        },
    }


async def _start(
    procs: Processes, tmp_path: Path, broker: LossyBroker, file: Path, tag: str
) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFTERSHOCK_")}
    return await procs.exec(
        sys.executable, "-m", "injector.cli", "run", str(file),
        "--kafka-bootstrap", broker.bootstrap,
        "--journal", str(tmp_path / f"{tag}.journal.json"),
        "--events", str(tmp_path / f"{tag}.events.jsonl"),
        cwd=tmp_path,
        env={
            **env,
            "AFTERSHOCK_STATE_DIR": str(tmp_path / tag),
            "PYTHONPATH": str(ROOT),  # the probes live in tests.injector.probes
            **RETAIN_NOTHING,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def test_a_run_whose_event_log_lost_events_for_good_exits_4(
    tmp_path: Path, echo: Echo, procs: Processes
) -> None:
    async with LossyBroker(tmp_path / "broker") as broker:
        topic = broker.settings.topic_events
        # Without a loss: exit 0, no log.loss event.
        go = tmp_path / "go-clean"
        go.touch()
        clean = await _start(
            procs, tmp_path, broker, _experiment(tmp_path, "clean", echo.address, go), "clean"
        )
        _, err = await asyncio.wait_for(clean.communicate(), 120)
        assert clean.returncode == 0, err.decode()
        before = await broker.read(topic, at_least=1)
        assert not losses(before)

        go = tmp_path / "go-lossy"
        proc = await _start(
            procs, tmp_path, broker, _experiment(tmp_path, "lossy", echo.address, go), "lossy"
        )
        assert proc.stderr is not None
        said = await stderr_until(proc.stderr, "experiment lossy run ")
        run_id = said.split("experiment lossy run ")[1].split(":")[0]
        # Probe events until the publisher has dropped acknowledged segments of its log.
        await broker.read(topic, at_least=len(before) + 60, idle=False)
        await broker.restart()
        said += await stderr_until(proc.stderr, "lost for good")
        go.touch()  # the method ends, the run completes
        _, rest = await asyncio.wait_for(proc.communicate(), 120)
        said += rest.decode()
        assert proc.returncode == 4, said
        got = await broker.read(topic, at_least=1)
    (loss,) = losses(got)
    missing = jsonl_ids(tmp_path / "lossy.events.jsonl") - {e.event_id for e in got}
    assert loss.unrepaired == len(missing) > 0
    assert (loss.experiment_id, loss.run_id) == ("lossy", run_id)
    assert f"{loss.reason}; {loss.unrepaired} events are lost for good" in said
    assert f"error: the event log lost {loss.unrepaired} events for good" in said
    assert "status completed" in said
