"""One contract, every sink: what a producer emits — as models or as encoded bytes — is what
a reader of that sink gets back, each event once, in emit order (Kafka: in order per key).

The sinks: the in-memory one, the JSON-lines file, the run's local log, the fan-out in front
of them, the in-process analysis's inbox (which gives events back in their analysis form) and
the Kafka publisher (against the embedded broker)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

import pytest

from analyzers.core.events import analysis_form
from analyzers.decode import Inbox
from spine.eventlog import EncodedEventSink, MemorySink
from spine.eventlog.codec import encode_event, partition_key
from spine.eventlog.jsonl import iter_jsonl
from spine.eventlog.publisher import Publisher
from spine.eventlog.reader import EventReader
from spine.eventlog.runlog import RunLogWriter, iter_run_events
from spine.eventlog.sink import Fanout, JsonlSink
from tests.eventlog.samples import every_kind
from tests.reading import read_events

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from analyzers.core.events import Fed
    from schemas.events import Event
    from spine.stack import EmbeddedStack


class Case(Protocol):
    """A sink under test: ``sink`` to emit into, ``read`` to get back what it holds."""

    sink: MemorySink | EncodedEventSink

    def read(self) -> list[Fed]: ...

    def form(self, event: Event) -> Fed:
        """``event`` as this sink gives it back."""


class _Same:
    def form(self, event: Event) -> Fed:
        return event


class _Memory(_Same):
    def __init__(self, tmp: Path) -> None:
        self.sink = MemorySink()

    def read(self) -> list[Event]:
        return list(self.sink.events)


class _Jsonl(_Same):
    def __init__(self, tmp: Path) -> None:
        self.sink = JsonlSink(tmp / "events.jsonl", batch=3)

    def read(self) -> list[Event]:
        self.sink.close()
        return list(iter_jsonl(self.sink.path))


class _RunLog(_Same):
    def __init__(self, tmp: Path) -> None:
        self.sink = RunLogWriter(tmp / "events", batch_events=4)

    def read(self) -> list[Event]:
        self.sink.close()
        return list(iter_run_events(self.sink.dir))


class _Fanned(_Same):
    """A fan-out to a model sink and an encoded one: both get everything."""

    def __init__(self, tmp: Path) -> None:
        self.memory = MemorySink()
        self.file = JsonlSink(tmp / "fanned.jsonl")
        self.sink = Fanout(self.memory, self.file)

    def read(self) -> list[Event]:
        self.file.close()
        assert list(iter_jsonl(self.file.path)) == self.memory.events
        return list(self.memory.events)


class _Analysis:
    """The end of a run's fan-out that the live analysis folds from."""

    def __init__(self, tmp: Path) -> None:
        self.sink = Inbox()

    def read(self) -> list[Fed]:
        got = self.sink.take()
        assert self.sink.take() == []  # taken once
        return got

    def form(self, event: Event) -> Fed:
        return analysis_form(event)


CASES: dict[str, Callable[[Path], Case]] = {
    "analysis": _Analysis,
    "memory": _Memory,
    "jsonl": _Jsonl,
    "runlog": _RunLog,
    "fanout": _Fanned,
}


def _emit(sink: MemorySink | EncodedEventSink, events: list[Event]) -> None:
    """Half as models, half (where the sink takes them) as encoded bytes."""
    for i, ev in enumerate(events):
        if i % 2 and isinstance(sink, EncodedEventSink):
            sink.emit_encoded(partition_key(ev), encode_event(ev))
        else:
            sink.emit(ev)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_sink_gives_back_what_was_emitted_in_order(name: str, tmp_path: Path) -> None:
    events = every_kind() * 2
    events = [e.model_copy(update={"event_id": f"{i:032x}"}) for i, e in enumerate(events)]
    case = CASES[name](tmp_path)
    _emit(case.sink, events)
    assert case.read() == [case.form(e) for e in events]


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_sink_given_nothing_holds_nothing(name: str, tmp_path: Path) -> None:
    assert CASES[name](tmp_path).read() == []


async def test_the_publisher_keeps_the_contract(stack: EmbeddedStack, tmp_path: Path) -> None:
    topic = f"contract-{tmp_path.name[-12:]}"
    await stack.create_topics([topic])
    events = every_kind(experiment_id="exp-contract") * 2
    events = [e.model_copy(update={"event_id": f"{i:032x}"}) for i, e in enumerate(events)]
    async with Publisher(stack.kafka_bootstrap, topic, state_dir=tmp_path) as pub:
        _emit(pub, events)
        await asyncio.wait_for(pub.flush(), 60)
    async with EventReader(stack.kafka_bootstrap, topic, deadletter_topic=None) as r:
        got = await read_events(r, len(events))
    assert sorted(got, key=lambda e: e.event_id) == events
    for key in {partition_key(e) for e in events}:  # each key's events in emit order
        assert [e for e in got if partition_key(e) == key] == [
            e for e in events if partition_key(e) == key
        ]
