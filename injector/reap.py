"""Remove what a dead run left behind, on any Toxiproxy-compatible server (leases or not).

The run's journal (rewritten after every step, so it survives ``kill -9``) or its event log
says which toxics and outages the run created and which it reverted; everything still live is
removed here. Removing something already gone counts as done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from injector.errors import ControllerError, JournalError, ProxyNotFound, ToxicNotFound
from injector.journal import LIVE_STATES, read_journal
from spine.eventlog.jsonl import iter_jsonl
from spine.eventlog.runlog import iter_run_events

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

    from injector.controller import Controller
    from schemas.events import Event


@dataclass(frozen=True, slots=True)
class Leftover:
    proxy: str
    kind: Literal["toxic", "down"]
    name: str
    """Toxic name (= fault id) or the fault id of an outage."""


@dataclass(frozen=True, slots=True)
class ReapResult:
    leftover: Leftover
    outcome: Literal["removed", "already gone", "failed"]
    detail: str = ""


def leftovers_from_journal(path: Path) -> tuple[str, list[Leftover]]:
    """(experiment id, what the journal says may still be on the server)."""
    journal = read_journal(path)
    out = [
        Leftover(f.proxy, f.kind, f.toxic_name or f.fault_id)
        for f in journal.aftershock.faults
        if f.state in LIVE_STATES
    ]
    return journal.aftershock.experiment_id, out


def fold_leftovers(events: Iterable[Event], experiment_id: str) -> list[Leftover]:
    """Fold the injector's fault events of ``experiment_id``: added minus removed. Events of
    one proxy must be in order (they share a partition key on Kafka)."""
    live: dict[tuple[str, str, str], Leftover] = {}
    for ev in events:
        if ev.experiment_id != experiment_id or getattr(ev, "source", None) != "injector":
            continue
        if ev.kind == "fault.toxic_added":
            lo = Leftover(ev.proxy, "toxic", ev.toxic.name)
            live[(lo.proxy, lo.kind, lo.name)] = lo
        elif ev.kind == "fault.toxic_removed":
            live.pop((ev.proxy, "toxic", ev.toxic_name), None)
        elif ev.kind == "fault.proxy_disabled":
            lo = Leftover(ev.proxy, "down", ev.fault_id or ev.proxy)
            live[(lo.proxy, lo.kind, lo.name)] = lo
        elif ev.kind == "fault.proxy_enabled":
            live.pop((ev.proxy, "down", ev.fault_id or ev.proxy), None)
    return list(live.values())


def leftovers_from_events(path: Path, experiment_id: str) -> list[Leftover]:
    """:func:`fold_leftovers` over a JSON-lines event file."""
    try:
        return fold_leftovers(read_events(path), experiment_id)
    except OSError as exc:
        raise JournalError(f"cannot read event log {path}: {exc.strerror}") from exc


async def leftovers_from_kafka(bootstrap: str, topic: str, experiment_id: str) -> list[Leftover]:
    """:func:`fold_leftovers` over the event log on Kafka (read from the beginning)."""
    from spine.eventlog.reader import EventReader

    async with EventReader(bootstrap, topic, deadletter_topic=None) as reader:
        events = await reader.read(idle_timeout_s=2.0)
    return fold_leftovers(events, experiment_id)


async def reap(controller: Controller, leftovers: list[Leftover]) -> list[ReapResult]:
    results = []
    for lo in leftovers:
        try:
            if lo.kind == "toxic":
                await controller.remove_toxic(lo.proxy, lo.name)
            elif (await controller.get_proxy(lo.proxy)).enabled:
                results.append(ReapResult(lo, "already gone"))
                continue
            else:
                await controller.update_proxy(lo.proxy, {"enabled": True})
            results.append(ReapResult(lo, "removed"))
        except (ToxicNotFound, ProxyNotFound):
            results.append(ReapResult(lo, "already gone"))
        except ControllerError as exc:
            results.append(ReapResult(lo, "failed", str(exc)))
    return results


def read_events(path: Path) -> Iterator[Event]:
    """Events from a JSON-lines file (``--events``; a line a crash tore is passed over), or
    from a run's event log (a directory of zstd batches, :mod:`spine.eventlog.runlog`)."""
    if path.is_dir():
        yield from iter_run_events(path)
    else:
        yield from iter_jsonl(path, skip_invalid=True)
