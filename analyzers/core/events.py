"""The analysis form of session events: small msgspec structs, one per ``session.*`` kind.

Session events are nearly all of what the analyzers fold, and building a pydantic model per
event cost more than every analysis together. :class:`analyzers.core.Analyzer` works on these
structs: the worker decodes records straight into them (:mod:`analyzers.decode`, with the
same validation as :mod:`schemas.events`), and :func:`analysis_form` converts the pydantic
models replay and tests feed, so both paths fold equal values. Other kinds stay pydantic
models. The structs hold no containers that could form a cycle (``gc=False``: the collector
never walks them; ``Subscribed`` holds a list of strings) and keep the pydantic models' field
order, ``kind`` aside (it is the union's tag).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import msgspec
from msgspec import Meta

from schemas import events as pyd

if TYPE_CHECKING:
    from schemas.events import Event

# The constraints of schemas.base / schemas.events. Patterns end in \Z: the pydantic models
# use Rust regexes, whose "$" does not match before a trailing newline as Python's does.
_Id = Annotated[str, Meta(min_length=1, max_length=200)]
_EventId = Annotated[str, Meta(min_length=1, max_length=64)]
_TraceId = Annotated[str, Meta(pattern=r"^[0-9a-f]{32}\Z")]
_SpanId = Annotated[str, Meta(pattern=r"^[0-9a-f]{16}\Z")]
_NonNegInt = Annotated[int, Meta(ge=0)]
_NonNegFloat = Annotated[float, Meta(ge=0)]
_Attempt = Annotated[int, Meta(ge=1)]


class SessionEventBase(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="kind", gc=False
):
    # Every field is required, even where the pydantic model has a default: a record that
    # leaves one out is decoded by pydantic, so defaults (and a generated event_id) are never
    # filled in two ways.
    schema_version: int
    event_id: _EventId
    experiment_id: _Id
    run_id: _Id
    generator_id: _Id
    ts_ns: _NonNegInt
    mono_ns: _NonNegInt
    trace_id: _TraceId | None
    span_id: _SpanId | None
    tenant: _Id
    user: _Id
    session: _Id
    target: _Id
    protocol: pyd.Protocol


class ConnectStart(SessionEventBase, frozen=True, tag="session.connect_start"):
    attempt: _Attempt


class Connected(SessionEventBase, frozen=True, tag="session.connected"):
    attempt: _Attempt
    connect_ms: _NonNegFloat


class Subscribed(SessionEventBase, frozen=True, tag="session.subscribed"):
    channels: list[_Id]


class Send(SessionEventBase, frozen=True, tag="session.send"):
    seq: _NonNegInt
    bytes: _NonNegInt
    channel: str | None
    expect: Literal["echo", "broadcast", "response", "none"]
    late_ms: _NonNegFloat | None


class SendSkipped(SessionEventBase, frozen=True, tag="session.skipped"):
    count: Annotated[int, Meta(ge=1)]
    late_ms: _NonNegFloat
    reason: Literal["behind", "busy"]


class Receive(SessionEventBase, frozen=True, tag="session.receive"):
    seq: _NonNegInt | None
    bytes: _NonNegInt
    latency_ms: _NonNegFloat | None
    origin_tenant: str | None
    origin_user: str | None
    origin_session: str | None
    origin_seq: int | None
    checksum_ok: bool | None
    status: int | None
    channel: str | None


class SessionError(SessionEventBase, frozen=True, tag="session.error"):
    error_class: _Id
    message: Annotated[str, Meta(max_length=4000)]
    phase: Literal["connect", "auth", "send", "receive", "close"]
    seq: int | None


class Disconnect(SessionEventBase, frozen=True, tag="session.disconnect"):
    by: Literal["client", "server", "error"]
    code: int | None
    reason: str


SessionEvent = (
    ConnectStart | Connected | Subscribed | Send | SendSkipped | Receive | SessionError | Disconnect
)
if TYPE_CHECKING:
    Fed = Event | SessionEvent
    """What the analyzer folds: session events in their analysis form, the rest as the
    pydantic models."""

PAIRS: tuple[tuple[type[pyd.SessionEventBase], type[SessionEvent]], ...] = (
    (pyd.ConnectStart, ConnectStart),
    (pyd.Connected, Connected),
    (pyd.Subscribed, Subscribed),
    (pyd.Send, Send),
    (pyd.SendSkipped, SendSkipped),
    (pyd.Receive, Receive),
    (pyd.SessionError, SessionError),
    (pyd.Disconnect, Disconnect),
)
FORMS: frozenset[type] = frozenset(s for _, s in PAIRS)
"""The analysis forms' classes: an event of one of them is a session event (asking a pydantic
class ``isinstance`` costs several times more than this set lookup)."""
_FORM: dict[type, tuple[type[SessionEvent], tuple[str, ...]]] = {
    p: (s, s.__struct_fields__) for p, s in PAIRS
}


def analysis_form(ev: Fed) -> Fed:
    """``ev`` as the analyzer folds it: a pydantic session event becomes its struct (same
    values, already validated); anything else is returned as it is."""
    form = _FORM.get(type(ev))
    if form is None:
        return ev
    cls, names = form
    values = ev.__dict__
    return cls(*[values[n] for n in names])
