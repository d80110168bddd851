"""The load profile of an experiment: tenants × users × sessions, ramp shape and session script."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from schemas.base import Frozen, Identifier


class TenantSpec(Frozen):
    name: Identifier
    users: int = Field(ge=1, le=1_000_000)
    sessions_per_user: int = Field(default=1, ge=1, le=1000)
    channels: list[Identifier] = Field(default_factory=lambda: ["general"])


class AuthFlow(Frozen):
    """Login → access/refresh token → refresh before expiry → logout, over HTTP."""

    base_url: str
    login_path: str = "/auth/login"
    refresh_path: str = "/auth/refresh"
    logout_path: str = "/auth/logout"
    refresh_before_s: float = Field(default=5.0, ge=0)


class FixedSize(Frozen):
    dist: Literal["fixed"] = "fixed"
    bytes: int = Field(ge=0, le=16 * 1024 * 1024)


class UniformSize(Frozen):
    dist: Literal["uniform"] = "uniform"
    min_bytes: int = Field(ge=0)
    max_bytes: int = Field(ge=0, le=16 * 1024 * 1024)

    @model_validator(mode="after")
    def _order(self) -> UniformSize:
        if self.min_bytes > self.max_bytes:
            raise ValueError("min_bytes must not exceed max_bytes")
        return self


class NormalSize(Frozen):
    dist: Literal["normal"] = "normal"
    mean_bytes: int = Field(ge=0)
    stddev_bytes: int = Field(ge=0)
    max_bytes: int = Field(default=65536, ge=1, le=16 * 1024 * 1024)


SizeDist = Annotated[FixedSize | UniformSize | NormalSize, Field(discriminator="dist")]


class RampShape(Frozen):
    """How the number of active sessions grows to the population.

    ``constant``: all at once (still staggered by ``stagger_ms``); ``linear``: evenly over
    ``ramp_s``; ``exponential``: doubling towards the total over ``ramp_s``; ``stepped``:
    ``steps`` equal steps over ``ramp_s``; ``burst``: groups of ``burst_size`` every
    ``burst_every_s``.
    """

    shape: Literal["constant", "linear", "exponential", "stepped", "burst"] = "linear"
    ramp_s: float = Field(default=10.0, ge=0)
    steps: int = Field(default=4, ge=1)
    burst_size: int = Field(default=100, ge=1)
    burst_every_s: float = Field(default=1.0, gt=0)
    stagger_ms: float = Field(default=0.0, ge=0)


class Backoff(Frozen):
    initial_ms: float = Field(default=100, ge=0)
    max_ms: float = Field(default=5000, ge=0)
    multiplier: float = Field(default=2.0, ge=1)
    jitter: float = Field(default=0.2, ge=0, le=1)
    max_attempts: int = Field(default=0, ge=0)
    """0 means retry until the experiment ends."""


class ConnectStep(Frozen):
    do: Literal["connect"] = "connect"


class SubscribeStep(Frozen):
    do: Literal["subscribe"] = "subscribe"
    channels: list[Identifier] = Field(default_factory=list)
    """Empty means the tenant's channels."""


class SendStep(Frozen):
    do: Literal["send"] = "send"
    count: int | None = Field(default=None, ge=1)
    """None: keep sending at ``rate_per_s`` until the load phase ends."""
    rate_per_s: float = Field(default=1.0, gt=0, le=10_000)
    size: SizeDist = Field(default_factory=lambda: FixedSize(bytes=128))
    expect: Literal["echo", "broadcast", "response", "none"] = "echo"
    timeout_ms: float = Field(default=5000, gt=0)
    channel: Identifier | None = None


class ThinkStep(Frozen):
    do: Literal["think"] = "think"
    min_ms: float = Field(default=0, ge=0)
    max_ms: float = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _order(self) -> ThinkStep:
        if self.max_ms and self.min_ms > self.max_ms:
            raise ValueError("min_ms must not exceed max_ms")
        return self


class DisconnectStep(Frozen):
    do: Literal["disconnect"] = "disconnect"


ScriptStep = Annotated[
    ConnectStep | SubscribeStep | SendStep | ThinkStep | DisconnectStep,
    Field(discriminator="do"),
]


DEFAULT_SCRIPT: tuple[ScriptStep, ...] = (
    ConnectStep(),
    SubscribeStep(),
    SendStep(),
    DisconnectStep(),
)


RequestPath = Annotated[str, StringConstraints(pattern=r"^/[\x21-\x7e]*$", max_length=2000)]
"""An origin-form request target (``/path?query``): it goes into the request line as it is, so
printable ASCII without spaces (percent-encode anything else)."""


class HttpRequestSpec(Frozen):
    name: Identifier
    method: Literal["GET", "POST", "PUT", "DELETE", "PATCH"] = "GET"
    path: RequestPath = "/"
    weight: float = Field(default=1.0, gt=0)
    body_size: SizeDist | None = None


class TcpConnect(Frozen):
    """An HTTP session's connect step opens its keep-alive TCP connection and sends nothing."""

    mode: Literal["tcp"] = "tcp"


class RequestConnect(Frozen):
    """An HTTP session's connect step opens its keep-alive connection and sends this request;
    the session is connected once the answer arrives (with a status in ``expect_status``,
    when that is given)."""

    mode: Literal["request"] = "request"
    method: Literal["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] = "GET"
    path: RequestPath = "/"
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] = Field(default_factory=list)
    """Statuses that count as connected; empty: any answer does."""


HttpConnect = Annotated[TcpConnect | RequestConnect, Field(discriminator="mode")]


class HttpOptions(Frozen):
    """How the HTTP engine talks to an HTTP target (HTTP/1.1 only)."""

    connect: HttpConnect = Field(default_factory=TcpConnect)
    pipelining: int = Field(default=1, ge=1, le=64)
    """Requests one connection may have in flight: 1 is plain keep-alive (the next request
    waits for the answer); above 1 is HTTP/1.1 pipelining, which the server must support."""


class StabilitySearch(Frozen):
    """Step concurrency up until the SLOs break; report the highest level that held.

    Each level runs the profile's script with that many sessions (the first ones of the
    population order) for ``hold_s`` seconds; ``factor > 1`` multiplies instead of adding
    ``step``.
    """

    start: int = Field(default=100, ge=1)
    step: int = Field(default=100, ge=0)
    factor: float = Field(default=1.0, ge=1.0)
    max_sessions: int | None = Field(default=None, ge=1)
    """None: the profile's whole population."""
    hold_s: float = Field(default=10.0, gt=0)
    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    max_p99_ms: float = Field(default=250.0, gt=0)

    @model_validator(mode="after")
    def _growth(self) -> StabilitySearch:
        if self.step == 0 and self.factor == 1.0:
            raise ValueError("set step > 0 or factor > 1, or the search never grows")
        return self


class LoadProfile(Frozen):
    """What the generators run against one target."""

    target: Identifier
    tenants: list[TenantSpec] = Field(min_length=1)
    ramp: RampShape = Field(default_factory=RampShape)
    duration_s: float = Field(default=60.0, gt=0)
    assignment: Literal["round_robin", "random"] = "round_robin"
    script: list[ScriptStep] = Field(default_factory=lambda: list(DEFAULT_SCRIPT))
    reconnect: Backoff = Field(default_factory=Backoff)
    auth: AuthFlow | None = None
    http_mix: list[HttpRequestSpec] = Field(default_factory=list)
    http: HttpOptions = Field(default_factory=HttpOptions)
    """Connect step and pipelining of the HTTP engine (HTTP targets only)."""
    framing: Literal["line", "length_prefixed"] = "line"
    """Raw TCP message framing."""
    seed: int | None = None
    stability: StabilitySearch | None = None
    """When set, ``aftershock generate`` runs a stability search instead of one load phase."""

    @property
    def total_sessions(self) -> int:
        return sum(t.users * t.sessions_per_user for t in self.tenants)

    @model_validator(mode="after")
    def _check(self) -> LoadProfile:
        names = [t.name for t in self.tenants]
        if len(set(names)) != len(names):
            raise ValueError("tenant names must be unique")
        if not any(isinstance(s, ConnectStep) for s in self.script):
            raise ValueError("script must contain a connect step")
        for i, step in enumerate(self.script):
            if isinstance(step, ConnectStep):
                break
            if isinstance(step, SubscribeStep | SendStep | DisconnectStep):
                raise ValueError(f"script[{i}] ({step.do}) comes before the first connect step")
        return self
