"""Turns proxy and toxic changes into fault events on the :class:`EventSink` given to the server."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from schemas.events import ToxicSpec
from spine import clock

if TYPE_CHECKING:
    from injector.proxy.model import Toxic
    from schemas.events import FaultEventBase
    from spine.eventlog import EventSink

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EventContext:
    """Whose events these are. The API may name the experiment and fault per request with the
    ``X-Aftershock-Experiment``, ``X-Aftershock-Run`` and ``X-Aftershock-Fault`` headers."""

    experiment_id: str = "none"
    run_id: str = "proxy"
    fault_id: str | None = None


@dataclass
class EventEmitter:
    sink: EventSink | None
    generator_id: str = "proxy"
    connection_events: bool = False

    def emit(self, event_type: type[FaultEventBase], context: EventContext, **fields: Any) -> None:
        """Build and emit one fault event; a bad event or a failing sink never breaks the proxy."""
        if self.sink is None:
            return
        try:
            # The process's one clock origin: the same time base as its other producers.
            ts_ns, mono_ns = clock.stamp()
            event = event_type(
                experiment_id=context.experiment_id,
                run_id=context.run_id,
                generator_id=self.generator_id,
                ts_ns=ts_ns,
                mono_ns=mono_ns,
                source="proxy",
                fault_id=context.fault_id,
                **fields,
            )
            self.sink.emit(event)  # type: ignore[arg-type]
        except Exception:
            log.exception("could not emit %s", event_type.__name__)


def toxic_spec(toxic: Toxic) -> ToxicSpec:
    attributes = {
        key: value
        for key, value in toxic.attributes().items()
        if isinstance(value, int | float | str | bool)
    }
    return ToxicSpec(
        name=toxic.name,
        type=toxic.type_as_sent,
        stream=toxic.direction.value,
        toxicity=min(1.0, max(0.0, toxic.toxicity)),
        attributes=attributes,
    )
