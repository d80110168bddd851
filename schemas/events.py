"""Every event kind Aftershock records, as one union discriminated on ``kind``.

Kinds are dotted: ``session.*`` (what a virtual user saw), ``fault.*`` and ``proxy.*`` (what
the injector and the fault proxy did), ``experiment.*`` (lifecycle and game-day controls),
``log.*`` (what the event log itself did), and ``result.*`` (analyzer outputs, see
:mod:`schemas.results`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter, field_validator

from schemas.analysis import AnalyzerConfig  # noqa: TC001 - pydantic resolves it at runtime
from schemas.base import SCHEMA_VERSION, EventBase, Frozen, Identifier, Protocol
from schemas.results import RESULT_TYPES, ResultEvent

# --- session events -------------------------------------------------------------------------


class SessionEventBase(EventBase):
    """Who saw it: tenant × user × session, against which target, over which protocol."""

    tenant: Identifier
    user: Identifier
    session: Identifier
    target: Identifier
    protocol: Protocol


class ConnectStart(SessionEventBase):
    kind: Literal["session.connect_start"] = "session.connect_start"
    attempt: int = Field(default=1, ge=1)


class Connected(SessionEventBase):
    kind: Literal["session.connected"] = "session.connected"
    attempt: int = Field(default=1, ge=1)
    connect_ms: float = Field(ge=0)


class Subscribed(SessionEventBase):
    """The server acknowledged the session's subscription to ``channels`` (added to those it
    had). A channel message reaching a session that never subscribed to its channel is an
    isolation violation."""

    kind: Literal["session.subscribed"] = "session.subscribed"
    channels: list[Identifier] = Field(default_factory=list)


class Send(SessionEventBase):
    """A message left. ``late_ms`` is set when it left later than its schedule said by more
    than the generator's lateness threshold (the generator itself was behind): it is how late,
    and the round trip of such a send is timed from when it really left."""

    kind: Literal["session.send"] = "session.send"
    seq: int = Field(ge=0)
    bytes: int = Field(ge=0)
    channel: str | None = None
    expect: Literal["echo", "broadcast", "response", "none"] = "echo"
    late_ms: float | None = Field(default=None, ge=0)


class SendSkipped(SessionEventBase):
    """Sends the schedule asked for that the generator did not make: ``count`` of them, the
    first due ``late_ms`` before this event. ``reason``: ``behind`` (the generator fell more than
    a second behind its schedule, and dropped the sends it missed rather than burst them),
    ``busy`` (the connection was still waiting for an earlier answer: an HTTP/1.1 connection
    carries one request at a time, or ``pipelining`` of them). Nothing was sent, so nothing
    about the system under test can be read from them."""

    kind: Literal["session.skipped"] = "session.skipped"
    count: int = Field(ge=1)
    late_ms: float = Field(ge=0)
    reason: Literal["behind", "busy"]


class Receive(SessionEventBase):
    """A message arrived. ``origin_*`` come from the stamp inside the message; a receive whose
    origin tenant differs from ``tenant`` is an isolation violation. ``checksum_ok`` is False
    when the stamp's keyed checksum did not hold (corruption), None when the message carried no
    stamp at all (e.g. an HTTP status-only response)."""

    kind: Literal["session.receive"] = "session.receive"
    seq: int | None = Field(default=None, ge=0)
    bytes: int = Field(ge=0)
    latency_ms: float | None = Field(default=None, ge=0)
    origin_tenant: str | None = None
    origin_user: str | None = None
    origin_session: str | None = None
    origin_seq: int | None = None
    checksum_ok: bool | None = None
    status: int | None = None
    channel: str | None = None


class SessionError(SessionEventBase):
    kind: Literal["session.error"] = "session.error"
    error_class: Identifier
    message: str = Field(max_length=4000)
    phase: Literal["connect", "auth", "send", "receive", "close"] = "receive"
    seq: int | None = None


class Disconnect(SessionEventBase):
    kind: Literal["session.disconnect"] = "session.disconnect"
    by: Literal["client", "server", "error"] = "client"
    code: int | None = None
    reason: str = ""


# --- fault events ---------------------------------------------------------------------------


AttributeValue = int | float | str | bool | list[str]


class ToxicSpec(Frozen):
    """A toxic exactly as the Toxiproxy API describes it."""

    name: Identifier
    type: Identifier
    stream: Literal["upstream", "downstream"] = "downstream"
    toxicity: float = Field(default=1.0, ge=0.0, le=1.0)
    attributes: dict[str, AttributeValue] = Field(default_factory=dict)

    @field_validator("stream", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        return v.lower() if isinstance(v, str) else v


class FaultEventBase(EventBase):
    proxy: Identifier
    source: Literal["injector", "proxy", "api"] = "proxy"
    fault_id: str | None = None
    """The experiment's fault (schedule entry) this change belongs to, when known."""


class ProxyCreated(FaultEventBase):
    kind: Literal["fault.proxy_created"] = "fault.proxy_created"
    listen: str
    upstream: str


class ProxyDeleted(FaultEventBase):
    kind: Literal["fault.proxy_deleted"] = "fault.proxy_deleted"


class ProxyEnabled(FaultEventBase):
    kind: Literal["fault.proxy_enabled"] = "fault.proxy_enabled"


class ProxyDisabled(FaultEventBase):
    kind: Literal["fault.proxy_disabled"] = "fault.proxy_disabled"
    ttl_ms: int | None = None


class ToxicAdded(FaultEventBase):
    kind: Literal["fault.toxic_added"] = "fault.toxic_added"
    toxic: ToxicSpec
    ttl_ms: int | None = None


class ToxicUpdated(FaultEventBase):
    kind: Literal["fault.toxic_updated"] = "fault.toxic_updated"
    toxic: ToxicSpec
    ttl_ms: int | None = None


class ToxicRemoved(FaultEventBase):
    kind: Literal["fault.toxic_removed"] = "fault.toxic_removed"
    toxic_name: Identifier
    reason: Literal["api", "lease_expired", "rollback", "reset", "proxy_deleted"] = "api"


class ConnectionOpened(FaultEventBase):
    kind: Literal["proxy.connection_opened"] = "proxy.connection_opened"
    connection_id: str
    client: str


class ConnectionClosed(FaultEventBase):
    kind: Literal["proxy.connection_closed"] = "proxy.connection_closed"
    connection_id: str
    client: str
    bytes_up: int = Field(ge=0)
    bytes_down: int = Field(ge=0)
    toxics_hit: list[str] = Field(default_factory=list)


# --- experiment lifecycle -------------------------------------------------------------------


class ExperimentStarted(EventBase):
    kind: Literal["experiment.started"] = "experiment.started"
    title: str
    planned_duration_s: float | None = Field(default=None, ge=0)


class ExperimentAnalysis(EventBase):
    """How the run's figures are to be computed and judged: its analyzer configuration
    (thresholds, SLOs, target graph, baseline phase), written once when the run starts so that
    every later reading of the log judges it the same way."""

    kind: Literal["experiment.analysis"] = "experiment.analysis"
    config: AnalyzerConfig


class ExperimentPhase(EventBase):
    """A named phase began (e.g. ``baseline``, ``fault:redis-outage``, ``recovery``)."""

    kind: Literal["experiment.phase"] = "experiment.phase"
    phase: Identifier
    faults_active: list[str] = Field(default_factory=list)


class ExperimentControl(EventBase):
    """A game-day command from an operator: pause, resume, abort, skip."""

    kind: Literal["experiment.control"] = "experiment.control"
    command: Literal["pause", "resume", "abort", "skip"]
    issued_by: str = ""


class ExperimentAborted(EventBase):
    kind: Literal["experiment.aborted"] = "experiment.aborted"
    reason: str
    cause: Literal["safeguard", "operator", "hypothesis", "signal", "other"] = "other"
    """What stopped the run: a safeguard, an operator's abort, a deviation with fail_fast, a
    signal (Ctrl-C, SIGTERM), anything else."""


class HypothesisProbeRan(EventBase):
    """One steady-state hypothesis probe ran; ``ts_ns`` is when it ended."""

    kind: Literal["experiment.probe"] = "experiment.probe"
    probe: Identifier
    when: Literal["before", "during", "after"]
    duration_s: float = Field(ge=0)
    tolerance_met: bool
    detail: str = Field(default="", max_length=4000)
    """Why it was not met: the error, or the output the tolerance rejected."""


class ExperimentEnded(EventBase):
    kind: Literal["experiment.ended"] = "experiment.ended"
    status: Literal["completed", "failed", "aborted", "interrupted"]
    deviated: bool = False
    reason: str = ""
    """Why a ``failed`` run failed (see ``injector.journal.failure_reason``); empty otherwise.
    The run verdict says ``run failed: <reason>``, replayed from the log as live."""


# --- the event log ---------------------------------------------------------------------------


class LogLoss(EventBase):
    """The event log lost events for good: the broker lost ``unrepaired`` events it had
    acknowledged on ``topic`` that the publisher's local log no longer held (its
    ``retain_bytes`` bound), so they could not be sent again; ``resent`` events it still held
    were sent again. Written by the publisher itself, after its repair, into the same topic;
    ``ts_ns`` is when the loss was found. It names the experiment and run the publisher was
    publishing for (``none`` when it was not told). See ``docs/eventlog.md``."""

    kind: Literal["log.loss"] = "log.loss"
    topic: str = Field(min_length=1, max_length=249)  # Kafka's bound on a topic name
    reason: str = Field(max_length=4000)
    unrepaired: int = Field(ge=1)
    resent: int = Field(ge=0)


SessionEvent = (
    ConnectStart | Connected | Subscribed | Send | SendSkipped | Receive | SessionError | Disconnect
)
FaultEvent = (
    ProxyCreated
    | ProxyDeleted
    | ProxyEnabled
    | ProxyDisabled
    | ToxicAdded
    | ToxicUpdated
    | ToxicRemoved
    | ConnectionOpened
    | ConnectionClosed
)
LifecycleEvent = (
    ExperimentStarted
    | ExperimentAnalysis
    | ExperimentPhase
    | ExperimentControl
    | ExperimentAborted
    | HypothesisProbeRan
    | ExperimentEnded
)

Event = Annotated[
    SessionEvent | FaultEvent | LifecycleEvent | LogLoss | ResultEvent,
    Field(discriminator="kind"),
]

EventAdapter: TypeAdapter[Event] = TypeAdapter(Event)

EVENT_TYPES: tuple[type[EventBase], ...] = (
    ConnectStart,
    Connected,
    Subscribed,
    Send,
    SendSkipped,
    Receive,
    SessionError,
    Disconnect,
    ProxyCreated,
    ProxyDeleted,
    ProxyEnabled,
    ProxyDisabled,
    ToxicAdded,
    ToxicUpdated,
    ToxicRemoved,
    ConnectionOpened,
    ConnectionClosed,
    ExperimentStarted,
    ExperimentAnalysis,
    ExperimentPhase,
    ExperimentControl,
    ExperimentAborted,
    HypothesisProbeRan,
    ExperimentEnded,
    LogLoss,
    *RESULT_TYPES,
)


def parse_event(data: bytes | str | dict[str, object]) -> Event:
    """Validate one event from JSON or a mapping; raises ``pydantic.ValidationError``."""
    if isinstance(data, dict):
        return EventAdapter.validate_python(data)
    return EventAdapter.validate_json(data)


__all__ = ["EVENT_TYPES", "SCHEMA_VERSION", "Event", "EventAdapter", "Protocol", "parse_event"]
