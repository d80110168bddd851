"""Events the event log lost for good fail the run verdict, with one reason naming how many:
from the publisher's ``log.loss`` events, live as in a replay of the topic."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from aftershock.gameday.analysis import LiveAnalysis
from analyzers.core import AnalyzerConfig
from analyzers.core.verdict import log_lost_reason
from analyzers.replay import analyze_batches, export_kafka, replay_kafka
from schemas.events import LogLoss, parse_event
from spine.eventlog.publisher import LossReport, Publisher
from tests.analyzers.build import EXP, ns, ok, one, send
from tests.lossy_broker import LossyBroker, losses

if TYPE_CHECKING:
    from pathlib import Path

    from schemas.events import Event


def _loss(t_ms: float, unrepaired: int, experiment_id: str = EXP) -> LogLoss:
    return LogLoss(
        experiment_id=experiment_id,
        run_id="run-1",
        generator_id="publisher",
        ts_ns=ns(t_ms),
        topic="aftershock.events",
        reason="the broker is a new one",
        unrepaired=unrepaired,
        resent=10,
    )


def _verdict(events: list[Event]) -> Any:
    return one(analyze_batches(EXP, iter([events]), AnalyzerConfig()), "result.verdict", phase="")


def test_every_loss_of_the_run_counts_once_and_fails_the_verdict() -> None:
    traffic: list[Event] = [ok(i * 10.0) for i in range(50)]
    clean = _verdict(traffic)
    assert clean.passed
    # Two losses of this run, and one of another experiment (not this run's).
    lossy = _verdict([*traffic, _loss(100, 3), _loss(300, 4), _loss(200, 100, "other")])
    assert not lossy.passed
    assert lossy.reasons == [log_lost_reason(7)]
    assert lossy.checks == clean.checks  # the figures are unchanged


@given(
    unrepaired=st.integers(min_value=-3, max_value=10**12),
    resent=st.integers(min_value=-3, max_value=10**6),
    reason=st.text(max_size=4100),
)
def test_a_loss_event_parses_exactly_or_is_rejected_by_name(
    unrepaired: int, resent: int, reason: str
) -> None:
    raw = _loss(0, 1).model_dump(mode="json") | {
        "unrepaired": unrepaired,
        "resent": resent,
        "reason": reason,
    }
    try:
        ev = parse_event(raw)
    except ValidationError as exc:
        bad = {str(err["loc"][-1]) for err in exc.errors()}
        assert bad <= {"unrepaired", "resent", "reason"}
        assert unrepaired < 1 or resent < 0 or len(reason) > 4000
        return
    assert isinstance(ev, LogLoss)
    assert (ev.unrepaired, ev.resent, ev.reason) == (unrepaired, resent, reason)
    assert parse_event(ev.model_dump_json()) == ev


async def test_live_and_replay_both_fail_a_run_whose_log_lost_events(tmp_path: Path) -> None:
    live = LiveAnalysis(EXP, AnalyzerConfig(), interval_s=0.05)
    reports: list[LossReport] = []

    def on_loss(report: LossReport) -> None:  # as a game day does
        reports.append(report)
        if report.event is not None:
            live.emit(report.event)

    async with LossyBroker(tmp_path / "broker") as broker:
        topic = broker.settings.topic_events
        async with (
            Publisher(broker.bootstrap, topic, state_dir=tmp_path, retain_bytes=1,
                      batch_events=50, retry_backoff_s=0.1, on_loss=on_loss) as pub,
            asyncio.TaskGroup() as tg,
        ):  # fmt: skip
            stepper = tg.create_task(live.run())
            pub.attribute_to(EXP, "run-1")
            for i in range(2000):
                for ev in (send(i * 5.0, i), ok(i * 5.0 + 1)):
                    pub.emit(ev)
                    live.emit(ev)
                await asyncio.sleep(0)
            await pub.flush(20)
            await broker.restart()
            await pub.flush(30)
            stepper.cancel()
        lost = pub.statistics().unrepaired
        assert lost > 0
        assert [r.unrepaired for r in reports] == [lost]
        live_verdict = one(await live.drain(5.0), "result.verdict", phase="")
        replayed = one(await replay_kafka(broker.bootstrap, topic, EXP), "result.verdict", phase="")
        exported = tmp_path / "export.jsonl"
        await export_kafka(broker.bootstrap, topic, EXP, exported)
    assert log_lost_reason(lost) in live_verdict.reasons
    assert log_lost_reason(lost) in replayed.reasons
    assert not live_verdict.passed
    assert not replayed.passed
    (loss,) = losses([parse_event(line) for line in exported.read_text().splitlines()])
    assert loss.unrepaired == lost
