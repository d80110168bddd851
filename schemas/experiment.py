"""The experiment file: Chaos Toolkit's experiment format plus Aftershock's ``extensions`` entry.

The top level keeps Chaos Toolkit's keys and meanings (``title``, ``steady-state-hypothesis``,
``method``, ``rollbacks``, ``runtime`` ...). Aftershock's own plan — targets, load, a fault
timeline, safeguards and SLOs — lives in the ``extensions`` list as the entry whose ``name`` is
``"aftershock"``, the place Chaos Toolkit reserves for tools that extend an experiment, so the
same file stays readable by Chaos Toolkit. The full reference is ``docs/experiment-file.md``.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping  # noqa: TC003 (a signature pydantic may inspect)
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from schemas.base import Frozen, Identifier
from schemas.load import LoadProfile  # noqa: TC001 (pydantic needs it at run time)
from schemas.targets import Target  # noqa: TC001

# --- durations ------------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_SECONDS = 366 * 24 * 3600.0
"""Longest duration, pause or offset accepted (a year): longer ones are mistakes, and
infinite or NaN ones would hang or crash a run."""


def _finite_s(value: float, given: object = None) -> float:
    """``value`` seconds, refused unless finite, not negative and at most a year; the message
    names ``given``, what was written, when it was text."""
    got = f" (got {given!r})" if given is not None else ""
    if not math.isfinite(value):
        raise ValueError(f"a number of seconds must be finite{got or f' (got {value!r})'}")
    if value < 0:
        raise ValueError(f"a duration cannot be negative{got or f' (got {value:g})'}")
    if value > MAX_SECONDS:
        raise ValueError(f"{value:g} seconds is more than a year{got}")
    return float(value) + 0.0  # -0.0 is 0.0


def parse_duration_s(value: object) -> float:
    """``"30s"``, ``"1m30s"``, ``"250ms"``, ``"1.5h"`` or a plain number of seconds → seconds.
    Anything else is a ``ValueError`` naming the value."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '1m30s'")
    if isinstance(value, int) and value.bit_length() > 1000:  # float() may overflow
        raise ValueError(
            f"a whole number of {value.bit_length()} bits is out of range for a duration "
            "(0 to a year of seconds)"
        )
    if isinstance(value, int | float):
        return _finite_s(float(value))
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            return _finite_s(number, value)
        pos, total = 0, 0.0
        for m in _DURATION_PART.finditer(text):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _UNIT_S[m.group(2)]
            pos = m.end()
        if text and pos == len(text):
            return _finite_s(total, value)
    raise ValueError(
        f"invalid duration {value!r}: use seconds (30, 0.5) or a string like "
        "'250ms', '30s', '1m30s', '2h'"
    )


Duration = Annotated[
    float,
    BeforeValidator(parse_duration_s),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h))+$|^\d+(\.\d+)?$"},
            ],
            "description": "Seconds, or a string such as '250ms', '30s', '1m30s'.",
        }
    ),
]
"""Seconds as a float; written in files as a number or as ``"1m30s"``-style text."""


# --- Chaos Toolkit: configuration, secrets, providers, activities -----------------------------


def _ctk_seconds(value: object) -> float:
    """Chaos Toolkit's seconds: a plain number (``"40s"`` is refused, as ``chaos validate``
    refuses it)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(
            f"Chaos Toolkit wants a number of seconds here (write 40, not {value!r})"
            if isinstance(value, str)
            else "a number of seconds"
        )
    return _finite_s(float(value))


Seconds = Annotated[float, BeforeValidator(_ctk_seconds)]
"""A number of seconds, finite, as Chaos Toolkit reads it (no ``"30s"`` strings)."""

_PLACEHOLDER = re.compile(r"\$\{[^}]+\}")


def _pause(value: object) -> float | str:
    if isinstance(value, str) and _PLACEHOLDER.fullmatch(value.strip()):
        return value.strip()
    if isinstance(value, str):
        raise ValueError(
            f"a pause is a number of seconds (write 40, not {value!r}) or a '${{name}}' from "
            "the configuration, as Chaos Toolkit reads it"
        )
    return _ctk_seconds(value)


PauseSeconds = Annotated[float | str, BeforeValidator(_pause)]
"""Seconds where Chaos Toolkit substitutes: a number, or ``${name}`` resolved at run time."""


class EnvValue(Frozen):
    """A configuration value read from the environment at run time."""

    type: Literal["env"]
    key: Identifier
    default: str | int | float | bool | None = None
    env_var_type: Literal["str", "int", "float", "bool", "json"] | None = None


class DynamicConfiguration(Frozen):
    """``{"type": "probe", ...}`` in ``configuration``: refused with its reason."""

    model_config = ConfigDict(frozen=True, extra="allow")
    type: Literal["probe"]

    @model_validator(mode="after")
    def _refuse(self) -> DynamicConfiguration:
        raise ValueError(
            "dynamic configuration (a probe whose output becomes the value) is not supported "
            "by Aftershock: compute the value before the run and pass it through the "
            "environment ({type: env, key: NAME})"
        )


def _config_tag(v: Any) -> str:
    if isinstance(v, dict) and v.get("type") == "env":
        return "env"
    if isinstance(v, dict) and v.get("type") == "probe":
        return "dynamic"
    if isinstance(v, EnvValue):
        return "env"
    return "value"


ConfigValue = Annotated[
    Annotated[EnvValue, Tag("env")]
    | Annotated[DynamicConfiguration, Tag("dynamic")]
    | Annotated[Any, Tag("value")],
    Discriminator(_config_tag),
]
"""A configuration value: any JSON value, or ``{type: env, key, default, env_var_type}``."""


class EnvSecret(Frozen):
    """A secret read from an environment variable when the run starts (it must be set)."""

    type: Literal["env"]
    key: Identifier


class UnsupportedSecretStore(Frozen):
    """A secret from a store Aftershock cannot read (``vault`` ...): refused by name."""

    model_config = ConfigDict(frozen=True, extra="allow")
    type: str

    @model_validator(mode="after")
    def _refuse(self) -> UnsupportedSecretStore:
        raise ValueError(
            f"secrets from {self.type!r} are not supported by Aftershock: use "
            "{type: env, key: NAME} and export the secret into the environment, or an inline "
            "value"
        )


def _secret_tag(v: Any) -> str:
    if isinstance(v, dict):
        if "type" not in v:
            return "nested"
        return "env" if v.get("type") == "env" else "store"
    if isinstance(v, EnvSecret):
        return "env"
    return "value"


SecretScalar = str | int | float | bool
SecretValue = Annotated[
    Annotated[EnvSecret, Tag("env")]
    | Annotated[UnsupportedSecretStore, Tag("store")]
    | Annotated[dict[str, SecretScalar], Tag("nested")]
    | Annotated[SecretScalar, Tag("value")],
    Discriminator(_secret_tag),
]
"""One secret: an inline value, ``{type: env, key: NAME}`` or a mapping of inline values."""


class _Sourced(Frozen):
    """Keeps the mapping it was validated from, as written in the file: the journal records
    activities and controls as loaded, as Chaos Toolkit does."""

    _source: dict[str, Any] | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_source(cls, data: Any, handler: Any) -> Any:
        model = handler(data)
        if isinstance(data, dict) and isinstance(model, _Sourced):
            model._source = data
        return model

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        # A changed copy is no longer what the file says: it is dumped instead.
        copied = super().model_copy(update=update, deep=deep)
        if update:
            copied._source = None
        return copied

    def as_loaded(self) -> dict[str, Any]:
        """The mapping as written in the file (for a changed copy: its fields as set)."""
        if self._source is not None:
            return self._source
        dumped: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_unset=True)
        return dumped


class PythonProvider(Frozen):
    """Calls ``module.func(**arguments)``; ``chaostoxi.*`` modules run on the controller."""

    type: Literal["python"]
    module: Identifier
    func: Identifier
    arguments: dict[str, Any] = Field(default_factory=dict)
    secrets: list[str] | None = None
    """Scopes of ``secrets`` passed (merged) as the function's ``secrets`` argument."""


class HttpProvider(Frozen):
    type: Literal["http"]
    url: str = Field(min_length=1)
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    arguments: dict[str, Any] | str | None = None
    timeout: (
        PauseSeconds | Annotated[list[PauseSeconds], Field(min_length=2, max_length=2)] | None
    ) = None
    """Seconds, or ``[connect, read]`` seconds (numbers or ``${name}``), as Chaos Toolkit
    takes it."""
    max_retries: int = Field(default=0, ge=0, le=10)
    """Retries of a failed connection (not of an HTTP error status)."""
    expected_status: int | None = None
    """Aftershock only: the activity fails on another status (Chaos Toolkit ignores it)."""
    verify_tls: bool = True
    secrets: list[str] | None = None

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v


class ProcessProvider(Frozen):
    type: Literal["process"]
    path: str = Field(min_length=1)
    arguments: str | list[Any] | dict[str, Any] = ""
    """A string runs through the shell (``path arguments``), as Chaos Toolkit does; a list
    is argv; a mapping becomes ``key value`` pairs."""
    timeout: Seconds | None = None
    secrets: list[str] | None = None


Provider = Annotated[PythonProvider | HttpProvider | ProcessProvider, Field(discriminator="type")]


class Pauses(Frozen):
    """Seconds to wait before and after an activity (a number, or ``${name}``)."""

    before: PauseSeconds = 0.0
    after: PauseSeconds = 0.0


class RegexTolerance(Frozen):
    """Met when ``pattern`` is found (``re.search``) in the output, or in its ``target`` key."""

    type: Literal["regex"]
    pattern: str
    target: str | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        if _PLACEHOLDER.search(v):
            return v  # checked once substituted
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
        return v


class RangeTolerance(Frozen):
    """Met when the output (or its ``target`` key) is a number within ``[low, high]``."""

    type: Literal["range"]
    range: Annotated[list[float], Field(min_length=2, max_length=2)]
    target: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> RangeTolerance:
        if not all(math.isfinite(b) for b in self.range):
            raise ValueError("range bounds must be finite numbers")
        if self.range[0] > self.range[1]:
            raise ValueError("range must be [low, high] with low <= high")
        return self


class JsonPathTolerance(Frozen):
    """Met when the JSONPath ``path`` finds values in the output (or its ``target`` key):
    any (by default), exactly ``count`` of them, or exactly ``expect``."""

    type: Literal["jsonpath"]
    path: str = Field(min_length=1)
    expect: Any = None
    """Compared with the values found (a single value means ``[value]``); only when given."""
    count: int | None = Field(default=None, ge=0)
    target: str | None = None

    @field_validator("path")
    @classmethod
    def _parses(cls, v: str) -> str:
        if _PLACEHOLDER.search(v):
            return v
        from schemas.jsonpath import parse_jsonpath

        parse_jsonpath(v)
        return v

    @property
    def has_expect(self) -> bool:
        return "expect" in self.model_fields_set


class ToleranceTypeUnknown(Frozen):
    model_config = ConfigDict(frozen=True, extra="allow")

    @model_validator(mode="after")
    def _refuse(self) -> ToleranceTypeUnknown:
        extra = self.model_extra or {}
        raise ValueError(
            f"tolerance type {extra.get('type')!r} is not one of Chaos Toolkit's: probe, regex, "
            "jsonpath, range (or use true/false, an integer, a string or a list)"
        )


def _refuse_float(v: float) -> float:
    raise ValueError(
        f"a decimal tolerance ({v!r}) never matches in Chaos Toolkit (it only compares "
        "true/false, integers, strings and lists): use {type: range, range: [low, high]}"
    )


def _tolerance_tag(v: Any) -> str | None:
    if isinstance(v, dict):
        t = v.get("type")
        return t if t in ("probe", "regex", "jsonpath", "range") else "unknown"
    for tag, cls in (
        ("bool", bool),
        ("int", int),
        ("str", str),
        ("list", list),
        ("float", float),
        ("probe", Probe),
        ("regex", RegexTolerance),
        ("jsonpath", JsonPathTolerance),
        ("range", RangeTolerance),
    ):
        if isinstance(v, cls):
            return tag
    return None


class ControlProvider(Frozen):
    """A control is a Python module whose hook functions (``before_activity_control`` ...)
    are called; Chaos Toolkit takes no ``func`` here."""

    type: Literal["python"]
    module: Identifier
    arguments: dict[str, Any] = Field(default_factory=dict)


class Control(_Sourced):
    """A Chaos Toolkit control: ``provider.module``'s hooks run around the experiment, the
    hypothesis, the method, the rollbacks and each activity."""

    name: Identifier
    provider: ControlProvider
    scope: Literal["before", "after"] | None = None
    automatic: bool = True


class Action(_Sourced):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    type: Literal["action"]
    name: Identifier
    provider: Provider
    pauses: Pauses | None = None
    background: bool = False
    controls: list[Control] | None = None


class Probe(_Sourced):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    type: Literal["probe"]
    name: Identifier
    provider: Provider
    tolerance: Tolerance | None = None
    pauses: Pauses | None = None
    background: bool = False
    controls: list[Control] | None = None


Tolerance = Annotated[
    Annotated[bool, Tag("bool")]
    | Annotated[int, Tag("int")]
    | Annotated[str, Tag("str")]
    | Annotated[list[Any], Tag("list")]
    | Annotated[float, AfterValidator(_refuse_float), Tag("float")]
    | Annotated[Probe, Tag("probe")]
    | Annotated[RegexTolerance, Tag("regex")]
    | Annotated[JsonPathTolerance, Tag("jsonpath")]
    | Annotated[RangeTolerance, Tag("range")]
    | Annotated[ToleranceTypeUnknown, Tag("unknown")],
    Discriminator(
        _tolerance_tag,
        custom_error_type="tolerance_kind",
        custom_error_message="a tolerance is true/false, an integer, a string, a list or an "
        "object with 'type': probe, regex, jsonpath or range",
    ),
]
"""What a probe's output must be for the hypothesis to hold, with Chaos Toolkit's rules:
a boolean or a string equals the output; an integer equals the output, or its ``status``
(HTTP, process); a list contains the ``status``, or — two numbers — bounds the output; and
the ``probe``, ``regex``, ``jsonpath`` and ``range`` objects."""


class ActivityRef(Frozen):
    """``{"ref": "name"}``: re-run an activity defined earlier in the file."""

    ref: Identifier


def _activity_tag(v: Any) -> str | None:
    if isinstance(v, dict):
        if "ref" in v:
            return "activity-ref"
        t = v.get("type")
        return t if t in ("action", "probe") else None
    if isinstance(v, Action):
        return "action"
    if isinstance(v, Probe):
        return "probe"
    if isinstance(v, ActivityRef):
        return "activity-ref"
    return None


Activity = Annotated[
    Annotated[Action, Tag("action")]
    | Annotated[Probe, Tag("probe")]
    | Annotated[ActivityRef, Tag("activity-ref")],
    Discriminator(
        _activity_tag,
        custom_error_type="activity_type",
        custom_error_message="an activity needs 'type': 'action' or 'probe' (or a 'ref')",
    ),
]


class HypothesisProbe(Probe):
    tolerance: Tolerance


def _probe_tag(v: Any) -> str:
    if isinstance(v, dict):
        return "activity-ref" if "ref" in v else "probe"
    return "activity-ref" if isinstance(v, ActivityRef) else "probe"


class SteadyStateHypothesis(Frozen):
    title: str = Field(min_length=1)
    probes: list[
        Annotated[
            Annotated[HypothesisProbe, Tag("probe")] | Annotated[ActivityRef, Tag("activity-ref")],
            Discriminator(_probe_tag),
        ]
    ] = Field(default_factory=list)
    controls: list[Control] | None = None


class HypothesisRuntime(Frozen):
    strategy: Literal[
        "default", "before-method-only", "after-method-only", "during-method-only", "continuously"
    ] = "default"
    frequency: Duration = Field(default=5.0, gt=0)
    """Seconds between evaluations while the method runs (``during-method-only``,
    ``continuously``)."""
    fail_fast: bool = False
    """Stop the method as soon as a during-method evaluation deviates."""


class RollbacksRuntime(Frozen):
    strategy: Literal["default", "always", "never", "deviated"] = "default"


class Runtime(Frozen):
    hypothesis: HypothesisRuntime = Field(default_factory=HypothesisRuntime)
    rollbacks: RollbacksRuntime = Field(default_factory=RollbacksRuntime)


# --- Aftershock: faults -----------------------------------------------------------------------

STANDARD_TOXIC_TYPES: frozenset[str] = frozenset(
    {
        "latency",
        "bandwidth",
        "slow_close",
        "timeout",
        "reset_peer",
        "slicer",
        "limit_data",
        "noop",
    }
)
"""Toxic types every Toxiproxy ≥ 2.x has; anything else needs the Aftershock fault proxy."""


class ToxicBase(Frozen):
    """A toxic exactly as ``POST /proxies/{proxy}/toxics`` takes it. ``name`` defaults to (and
    must equal) the fault's id, so proxy events and injector events share it."""

    name: Identifier | None = None
    stream: Literal["upstream", "downstream"] = "downstream"
    toxicity: float = Field(default=1.0, ge=0.0, le=1.0)

    @field_validator("stream", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        return v.lower() if isinstance(v, str) else v


class LatencyAttributes(Frozen):
    latency: int = Field(default=0, ge=0, description="milliseconds added to each chunk")
    jitter: int = Field(default=0, ge=0, description="± milliseconds, uniform")


class LatencyToxic(ToxicBase):
    type: Literal["latency"]
    attributes: LatencyAttributes = Field(default_factory=LatencyAttributes)


class BandwidthAttributes(Frozen):
    rate: int = Field(default=0, description="KB/s (1 KB = 1000 B); <= 0 is unlimited")


class BandwidthToxic(ToxicBase):
    type: Literal["bandwidth"]
    attributes: BandwidthAttributes = Field(default_factory=BandwidthAttributes)


class SlowCloseAttributes(Frozen):
    delay: int = Field(default=0, ge=0, description="milliseconds to wait before closing")


class SlowCloseToxic(ToxicBase):
    type: Literal["slow_close"]
    attributes: SlowCloseAttributes = Field(default_factory=SlowCloseAttributes)


class TimeoutAttributes(Frozen):
    timeout: int = Field(default=0, ge=0, description="milliseconds; 0 = never close")


class TimeoutToxic(ToxicBase):
    type: Literal["timeout"]
    attributes: TimeoutAttributes = Field(default_factory=TimeoutAttributes)


class ResetPeerToxic(ToxicBase):
    type: Literal["reset_peer"]
    attributes: TimeoutAttributes = Field(default_factory=TimeoutAttributes)


class SlicerAttributes(Frozen):
    average_size: int = Field(default=0, ge=0, description="bytes")
    size_variation: int = Field(default=0, ge=0, description="bytes")
    delay: int = Field(default=0, ge=0, description="microseconds between slices")


class SlicerToxic(ToxicBase):
    type: Literal["slicer"]
    attributes: SlicerAttributes = Field(default_factory=SlicerAttributes)


class LimitDataAttributes(Frozen):
    bytes: int = Field(default=0, ge=0)


class LimitDataToxic(ToxicBase):
    type: Literal["limit_data"]
    attributes: LimitDataAttributes = Field(default_factory=LimitDataAttributes)


class NoAttributes(Frozen):
    pass


class NoopToxic(ToxicBase):
    type: Literal["noop"]
    attributes: NoAttributes = Field(default_factory=NoAttributes)


class CorruptAttributes(Frozen):
    probability: float = Field(default=0.0, ge=0.0, le=1.0, description="per byte (or chunk)")
    per_chunk: Literal[0, 1] = 0
    mode: Literal["flip", "replace"] = "flip"
    seed: int = Field(default=0, ge=0, description="0 = random")
    skip_bytes: int = Field(default=0, ge=0)


class CorruptToxic(ToxicBase):
    """Aftershock fault proxy only."""

    type: Literal["corrupt"]
    attributes: CorruptAttributes = Field(default_factory=CorruptAttributes)


class DropAttributes(Frozen):
    loss_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    correlation: float = Field(default=0.0, ge=0.0, le=1.0)


class DropToxic(ToxicBase):
    """Aftershock fault proxy only; ``packet_loss`` is the same toxic under another name."""

    type: Literal["drop", "packet_loss"]
    attributes: DropAttributes = Field(default_factory=DropAttributes)


Toxic = Annotated[
    LatencyToxic
    | BandwidthToxic
    | SlowCloseToxic
    | TimeoutToxic
    | ResetPeerToxic
    | SlicerToxic
    | LimitDataToxic
    | NoopToxic
    | CorruptToxic
    | DropToxic,
    Field(discriminator="type"),
]

TOXIC_TYPES: tuple[str, ...] = (
    *sorted(STANDARD_TOXIC_TYPES),
    "corrupt",
    "drop",
    "packet_loss",
)


class ClientMatch(Frozen):
    """Per-client targeting (Aftershock fault proxy only): the toxic applies only to
    connections from these client networks and/or whose first bytes contain ``contains``."""

    clients: list[str] = Field(default_factory=list)
    contains: str | None = Field(default=None, min_length=1)
    within_bytes: int = Field(default=4096, ge=1, le=1 << 20)

    @field_validator("clients")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for c in v:
            try:
                ipaddress.ip_network(c, strict=False)
            except ValueError:
                raise ValueError(
                    f"{c!r} is not an IP address or network (e.g. '127.0.0.2/32')"
                ) from None
        return v

    @model_validator(mode="after")
    def _something(self) -> ClientMatch:
        if not self.clients and self.contains is None:
            raise ValueError("match needs 'clients' or 'contains' (or both)")
        return self


class FaultBase(Frozen):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]
    """Unique within the experiment; toxics are named after it."""
    at: Duration
    """Offset from the start of the method phase."""
    duration: Duration = Field(gt=0)
    proxy: Identifier
    """Name of the proxy (a target's ``proxy``) the fault goes on."""
    description: str = ""

    @property
    def end(self) -> float:
        return self.at + self.duration


class ToxicFault(FaultBase):
    toxic: Toxic
    match: ClientMatch | None = None

    @model_validator(mode="after")
    def _named_after_id(self) -> ToxicFault:
        if self.toxic.name is not None and self.toxic.name != self.id:
            raise ValueError(
                f"toxic.name {self.toxic.name!r} must equal the fault id {self.id!r} "
                "(or be left out): toxics are named after their fault"
            )
        return self

    @property
    def needs(self) -> frozenset[str]:
        out: set[str] = set()
        if self.toxic.type not in STANDARD_TOXIC_TYPES:
            out.add(f"toxic:{self.toxic.type}")
        if self.match is not None:
            out.add("match")
        return frozenset(out)


class DownFault(FaultBase):
    """Takes the proxy down (``enabled: false``): new connections refused, open ones closed."""

    down: Literal[True]

    @property
    def needs(self) -> frozenset[str]:
        return frozenset()


def _fault_tag(v: Any) -> str | None:
    if isinstance(v, dict):
        if "toxic" in v:
            return "toxic-fault"
        if "down" in v:
            return "down-fault"
        return None
    if isinstance(v, ToxicFault):
        return "toxic-fault"
    return "down-fault" if isinstance(v, DownFault) else None


Fault = Annotated[
    Annotated[ToxicFault, Tag("toxic-fault")] | Annotated[DownFault, Tag("down-fault")],
    Discriminator(
        _fault_tag,
        custom_error_type="fault_kind",
        custom_error_message="a fault needs either a 'toxic' object or 'down: true'",
    ),
]


# --- Aftershock: safeguards and SLOs ----------------------------------------------------------


class SafeguardBase(Frozen):
    target: Identifier | None = None
    """Only results scoped to this target count; unset = overall results."""
    for_: Duration = Field(default=0.0, alias="for")
    """How long the condition must hold continuously before the run is aborted."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class ErrorRateSafeguard(SafeguardBase):
    """Abort when the error rate (100 − availability % of ``result.availability`` windows)
    stays above ``above_pct``."""

    metric: Literal["error_rate"]
    above_pct: float = Field(ge=0, le=100)


class AvailabilitySafeguard(SafeguardBase):
    metric: Literal["availability"]
    below_pct: float = Field(ge=0, le=100)


class LatencySafeguard(SafeguardBase):
    """Abort when ``result.latency`` p99 stays above ``above_ms``."""

    metric: Literal["p99_latency"]
    above_ms: float = Field(gt=0)


class IsolationSafeguard(SafeguardBase):
    """Abort as soon as more than ``above`` isolation violations have been seen."""

    metric: Literal["isolation_violations"]
    above: int = Field(default=0, ge=0)


class EpisodeSafeguard(SafeguardBase):
    """Abort when a failure episode lasts longer than ``above`` (a live MTTR ceiling)."""

    metric: Literal["episode_duration"]
    above: Duration = Field(gt=0)


Safeguard = Annotated[
    ErrorRateSafeguard
    | AvailabilitySafeguard
    | LatencySafeguard
    | IsolationSafeguard
    | EpisodeSafeguard,
    Field(discriminator="metric"),
]


class Slo(Frozen):
    """What "resilient enough" means for one target; analyzers judge it (``result.verdict``)."""

    target: Identifier
    availability_pct: float | None = Field(default=None, ge=0, le=100)
    """Minimum availability over the run."""
    p99_latency_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """Maximum p99 latency."""
    mttr: Duration | None = None
    """Maximum mean time to recover."""
    isolation_violations: int | None = Field(default=0, ge=0)
    """Maximum isolation violations (0 by default: none allowed)."""
    no_data_fails: bool = False
    """A check with nothing to judge (no latency sample, no finished failure episode for
    ``mttr``, no traffic) is reported as "no data"; set this to make it fail the verdict."""


class Leases(Frozen):
    """Crash safety on servers that support leases: each toxic (or disable) is created with a
    ``ttl_ms`` lease renewed every ``heartbeat``; if the injector dies, the server reverts it."""

    enabled: bool = True
    ttl: Duration = Field(default=3.0, gt=0.2)
    heartbeat: Duration = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _renew_in_time(self) -> Leases:
        if self.heartbeat * 2 > self.ttl:
            raise ValueError("heartbeat must be at most half of ttl, or leases lapse")
        return self


class AftershockSection(Frozen):
    """The ``{"name": "aftershock", ...}`` entry of ``extensions``."""

    name: Literal["aftershock"]
    experiment_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")] | None = None
    targets: list[Target] = Field(default_factory=list)
    load: list[LoadProfile] = Field(default_factory=list)
    faults: list[Fault] = Field(default_factory=list)
    safeguards: list[Safeguard] = Field(default_factory=list)
    slos: list[Slo] = Field(default_factory=list)
    leases: Leases = Field(default_factory=Leases)
    revert_timeout: Duration = Field(default=5.0, gt=0)
    """Time limit for reverting every fault at the end (shielded from cancellation)."""
    create_proxies: bool = True
    """Create each target's proxy (listen → upstream) if the server lacks it."""

    @property
    def planned_duration_s(self) -> float:
        return max((f.end for f in self.faults), default=0.0)


class OtherExtension(Frozen):
    """Another tool's extension: kept as written, not interpreted."""

    model_config = ConfigDict(frozen=True, extra="allow")
    name: Identifier


def _extension_tag(v: Any) -> str:
    if isinstance(v, dict):
        return "aftershock-extension" if v.get("name") == "aftershock" else "other-extension"
    return "aftershock-extension" if isinstance(v, AftershockSection) else "other-extension"


Extension = Annotated[
    Annotated[AftershockSection, Tag("aftershock-extension")]
    | Annotated[OtherExtension, Tag("other-extension")],
    Discriminator(_extension_tag),
]


# --- the experiment ---------------------------------------------------------------------------


class Experiment(_Sourced):
    """A whole experiment file (``as_loaded()``: the mapping as written)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    version: str | None = None
    title: str = Field(min_length=1)
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    contributions: dict[str, Literal["high", "medium", "low", "none"]] | None = None
    configuration: dict[str, ConfigValue] = Field(default_factory=dict)
    secrets: dict[str, dict[str, SecretValue]] = Field(default_factory=dict)
    """Scopes of secrets: ``{scope: {name: value}}``."""
    extensions: list[Extension] = Field(default_factory=list)
    controls: list[Control] = Field(default_factory=list)
    steady_state_hypothesis: SteadyStateHypothesis | None = Field(
        default=None, alias="steady-state-hypothesis"
    )
    method: list[Activity] = Field(default_factory=list)
    rollbacks: list[Activity] = Field(default_factory=list)
    runtime: Runtime = Field(default_factory=Runtime)

    @property
    def aftershock(self) -> AftershockSection:
        """Aftershock's section; an empty one when the file has none (a plain CTK file)."""
        for ext in self.extensions:
            if isinstance(ext, AftershockSection):
                return ext
        return AftershockSection(name="aftershock")


Action.model_rebuild()
Probe.model_rebuild()
HypothesisProbe.model_rebuild()
SteadyStateHypothesis.model_rebuild()

__all__ = [
    "STANDARD_TOXIC_TYPES",
    "TOXIC_TYPES",
    "Action",
    "ActivityRef",
    "AftershockSection",
    "ClientMatch",
    "Control",
    "DownFault",
    "Duration",
    "EnvSecret",
    "Experiment",
    "Fault",
    "JsonPathTolerance",
    "Probe",
    "RangeTolerance",
    "RegexTolerance",
    "Safeguard",
    "Seconds",
    "Slo",
    "Toxic",
    "ToxicFault",
    "parse_duration_s",
]
