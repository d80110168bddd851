"""``aftershock demo``: the shipped game day against the sample chat system.

By default it is ``aftershock run experiments/chat-gameday.yaml --bug isolation``: the sample
system with its tenant-isolation defect on, a few hundred virtual users, four faults, the live
dashboard, and a report that ends in a failing verdict. ``--event-log-only`` instead exercises
the event log alone: a burst of chat sessions published to the embedded stack and read back.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from schemas.base import new_run_id
from schemas.events import (
    Connected,
    ConnectStart,
    Disconnect,
    ExperimentEnded,
    ExperimentPhase,
    ExperimentStarted,
    Receive,
    Send,
    SessionError,
    ToxicAdded,
    ToxicRemoved,
    ToxicSpec,
)
from spine.eventlog.publisher import Publisher
from spine.eventlog.reader import EventReader
from spine.settings import Settings
from spine.stack import EmbeddedStack

if TYPE_CHECKING:
    from rich.console import Console

    from schemas.events import Event

TENANTS = ("acme", "globex", "initech")


def burst(experiment_id: str, users_per_tenant: int, messages: int, seed: int = 7) -> list[Event]:
    """A run of WebSocket chat sessions: connect, echo ``messages`` times, disconnect; a 100 ms
    latency toxic on Redis for the middle third raises latency and causes a few errors."""
    rng = random.Random(seed)
    run = new_run_id()
    t0 = time.time_ns()
    ms = 1_000_000
    common = {"experiment_id": experiment_id, "run_id": run}
    gen = {"generator_id": "demo-gen-1"}
    ctl = {"generator_id": "demo-injector"}
    fault_from, fault_to = messages // 3, 2 * messages // 3
    toxic = ToxicSpec(name="redis-latency", type="latency", attributes={"latency": 100})
    events: list[Event] = [
        ExperimentStarted(**common, **ctl, ts_ns=t0, title="event log demo"),
        ExperimentPhase(**common, **ctl, ts_ns=t0, phase="baseline"),
    ]
    fault_ts = t0 + fault_from * 20 * ms
    recover_ts = t0 + fault_to * 20 * ms
    events += [
        ExperimentPhase(**common, **ctl, ts_ns=fault_ts, phase="fault:redis-latency"),
        ToxicAdded(**common, **ctl, ts_ns=fault_ts, proxy="redis", source="injector",
                   fault_id="redis-latency", toxic=toxic),
        ToxicRemoved(**common, **ctl, ts_ns=recover_ts, proxy="redis", source="injector",
                     fault_id="redis-latency", toxic_name="redis-latency", reason="rollback"),
        ExperimentPhase(**common, **ctl, ts_ns=recover_ts, phase="recovery"),
    ]  # fmt: skip
    for tenant in TENANTS:
        for u in range(users_per_tenant):
            who = {
                **common,
                **gen,
                "tenant": tenant,
                "user": f"{tenant}-u{u}",
                "session": f"{tenant}-u{u}-s1",
                "target": "gateway",
                "protocol": "ws",
            }
            ts = t0 + rng.randrange(5 * ms)
            events.append(ConnectStart(**who, ts_ns=ts))
            connect_ms = rng.lognormvariate(1.0, 0.4)
            ts += int(connect_ms * ms)
            events.append(Connected(**who, ts_ns=ts, connect_ms=connect_ms))
            for seq in range(messages):
                ts = t0 + seq * 20 * ms + rng.randrange(2 * ms)
                size = rng.randrange(64, 512)
                events.append(Send(**who, ts_ns=ts, seq=seq, bytes=size))
                faulty = fault_from <= seq < fault_to
                if faulty and rng.random() < 0.02:
                    events.append(SessionError(**who, ts_ns=ts + 200 * ms, seq=seq,
                                               error_class="TimeoutError",
                                               message="no echo within 200 ms"))  # fmt: skip
                    continue
                latency = rng.lognormvariate(0.3, 0.5) + (100.0 if faulty else 0.0)
                events.append(Receive(**who, ts_ns=ts + int(latency * ms), seq=seq, bytes=size,
                                      latency_ms=latency, origin_tenant=tenant,
                                      origin_session=who["session"], origin_seq=seq,
                                      checksum_ok=True))  # fmt: skip
            events.append(Disconnect(**who, ts_ns=t0 + messages * 20 * ms, by="client", code=1000))
    events.append(
        ExperimentEnded(**common, **ctl, ts_ns=t0 + (messages + 1) * 20 * ms, status="completed")
    )
    return events


SHIPPED_GAMEDAY = Path("experiments") / "chat-gameday.yaml"
DEMO_TRACE_SESSIONS = 0.25
"""The demo traces a quarter of its sessions (every 20th round trip of each, as any run), so
its span files stay small; every figure is still computed from every session's events."""


def shipped_gameday() -> Path:
    """The shipped game day: beside the package in a source checkout, else in the cwd."""
    beside = Path(__file__).resolve().parents[2] / SHIPPED_GAMEDAY
    return beside if beside.exists() else SHIPPED_GAMEDAY


def demo(
    experiment: Annotated[
        Path | None,
        typer.Option(help="Game day to run (default: experiments/chat-gameday.yaml)."),
    ] = None,
    event_log_only: Annotated[
        bool,
        typer.Option(
            "--event-log-only",
            help="Only exercise the event log: publish a burst of sessions and read it back.",
        ),
    ] = False,
    users_per_tenant: Annotated[
        int, typer.Option(min=1, help="--event-log-only: sessions per tenant.")
    ] = 40,
    messages: Annotated[
        int, typer.Option(min=3, help="--event-log-only: echo messages per session.")
    ] = 300,
    state_dir: Annotated[
        Path | None, typer.Option(help="State directory (default: .aftershock).")
    ] = None,
) -> None:
    """Run the shipped game day against the sample chat system (isolation defect on) and
    write its report; exits 1 with the failing SLOs named, as that game day is meant to.
    A quarter of the sessions are traced (``aftershock run --trace-sessions 0.25``)."""
    settings = Settings(**({"state_dir": state_dir} if state_dir else {}))  # type: ignore[arg-type]
    if event_log_only:
        asyncio.run(_demo(settings, users_per_tenant, messages))
        return
    from aftershock.cli.gameday import run as run_cmd

    if state_dir is not None:
        import os

        os.environ["AFTERSHOCK_STATE_DIR"] = str(state_dir)
    typer.echo(
        "demo: the sample system runs with its isolation defect on; the abort safeguard on "
        "isolation violations is left out so the whole plan plays out (the SLOs still judge "
        "them)",
        err=True,
    )
    run_cmd(
        experiment or shipped_gameday(),
        sample=True,
        bug=["isolation"],
        ignore_safeguard=["isolation_violations"],
        trace_sessions=DEMO_TRACE_SESSIONS,
    )


async def _demo(settings: Settings, users_per_tenant: int, messages: int) -> None:
    from aftershock.gameday.dashboard import unwrapped_console

    console = unwrapped_console(stderr=False)
    experiment_id = f"demo-{new_run_id()}"
    events = burst(experiment_id, users_per_tenant, messages)
    async with EmbeddedStack(settings) as stack:
        console.print(
            f"stack healthy in {stack.started_in_s or 0:.2f} s: kafka {stack.kafka_bootstrap}, "
            f"redis {stack.redis_url}"
        )
        topic = settings.topic_events
        t0 = time.perf_counter()
        async with Publisher(stack.kafka_bootstrap, topic, state_dir=settings.state_dir) as pub:
            for i, event in enumerate(events):
                pub.emit(event)
                if i % 1000 == 999:
                    await asyncio.sleep(0)
            await pub.flush(60)
            pstats = pub.statistics()
        publish_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        async with EventReader(
            stack.kafka_bootstrap, topic, deadletter_topic=settings.topic_deadletter
        ) as reader:
            got = await reader.read(max_events=len(events), idle_timeout_s=3.0)
            rstats = reader.statistics()
        read_s = time.perf_counter() - t0
        await stack.drop_topics()
    mine = [e for e in got if e.experiment_id == experiment_id]
    _report(console, events, mine, publish_s, read_s)
    console.print(
        f"publisher: {pstats.sent} sent in {pstats.batches_sent} records, "
        f"{pstats.bytes_sent / max(pstats.sent, 1):.1f} bytes/event on the wire, "
        f"{pstats.spooled} spooled, CPU {pstats.cpu_per_event_us:.1f} µs/event; "
        f"reader: {rstats.records} records, {rstats.duplicates} duplicates, "
        f"{rstats.deadlettered_records} dead-lettered"
    )
    ok = sorted(e.event_id for e in mine) == sorted(e.event_id for e in events)
    console.print("[green]all events read back, none lost, none duplicated[/green]" if ok else
                  "[red]events were lost or changed[/red]")  # fmt: skip
    console.print("stack stopped")
    if not ok:
        raise typer.Exit(1)


def _report(
    console: Console, sent: list[Event], got: list[Event], publish_s: float, read_s: float
) -> None:
    table = Table(title="events by kind")
    table.add_column("kind")
    table.add_column("published", justify="right")
    table.add_column("read back", justify="right")
    want, have = Counter(e.kind for e in sent), Counter(e.kind for e in got)
    for kind in sorted(want):
        table.add_row(kind, str(want[kind]), str(have[kind]))
    console.print(table)
    latency = Table(title="receive latency by tenant and phase (ms)")
    for col in ("tenant", "phase", "receives", "errors", "p50", "p99"):
        latency.add_column(col, justify="right" if col not in ("tenant", "phase") else "left")
    phases = sorted(
        (e.ts_ns, e.phase) for e in got if isinstance(e, ExperimentPhase)
    )  # (start ns, name), in time order
    for tenant in TENANTS:
        for i, (start, name) in enumerate(phases):
            end = phases[i + 1][0] if i + 1 < len(phases) else float("inf")
            lat = sorted(
                e.latency_ms
                for e in got
                if isinstance(e, Receive) and e.tenant == tenant and start <= e.ts_ns < end
                and e.latency_ms is not None
            )  # fmt: skip
            errors = sum(
                1 for e in got
                if isinstance(e, SessionError) and e.tenant == tenant and start <= e.ts_ns < end
            )  # fmt: skip
            if lat:
                p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
                latency.add_row(
                    tenant, name, str(len(lat)), str(errors), f"{p50:.1f}", f"{p99:.1f}"
                )
    console.print(latency)
    console.print(
        f"published {len(sent)} events in {publish_s:.2f} s ({len(sent) / publish_s:,.0f}/s), "
        f"read {len(got)} in {read_s:.2f} s ({len(got) / max(read_s, 1e-9):,.0f}/s)"
    )
