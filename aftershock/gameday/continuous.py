"""``aftershock run --continuous``: a game day that never ends.

Rounds of ``round_s`` seconds follow each other: low-rate load (every send rate scaled by
``rate_scale``) and one fault per round, rotating through the experiment's faults. Each round is
an ordinary run (its own run directory, experiment id ``<id>-r<n>``) judged by the experiment's
SLOs; its verdict goes to one line on the console, to a rolling list in Redis, to Prometheus
metrics, and to a state file in the runs directory, from which a restarted process continues
with the next round.

Metrics (``--metrics-port``, served on the bind host): ``aftershock_continuous_rounds_total``
(counter by ``outcome``: pass, fail, error; rounds judged by this process), and for the last
round ``..._verdict_passed``, ``..._pass_ratio`` (over the kept history),
``..._availability_pct`` and ``..._mttr_seconds`` by target, ``..._isolation_violations``. A
figure with no data has no sample (a round without failure episodes has no MTTR; an errored
round has no verdict), rather than a made-up 0. With ``--rounds N`` the server stays up after
the last round until it has been scraped once more, or for ``linger_s`` (default 15 s), so the
last round is not lost to the scrape interval.

Memory stays bounded: the embedded broker's topics are dropped after every round, the Redis
results of rounds older than ``keep_runs`` are deleted, and so are their run directories.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import threading
import time
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from pydantic import BaseModel, Field, ValidationError
from redis.asyncio import Redis

from aftershock.gameday.run import Gameday, RunOutcome
from aftershock.report.errors import GamedayError, RunSetupError
from aftershock.report.files import atomic_write, read_results
from aftershock.report.model import Findings
from injector.errors import InjectorError
from schemas.load import SendStep
from spine.stack import EmbeddedStack

if TYPE_CHECKING:
    from aftershock.gameday.run import GamedayOptions
    from schemas.experiment import Experiment
    from spine.settings import Settings

HISTORY = 200
"""Verdicts kept in the state file and in Redis."""


@dataclass(frozen=True)
class ContinuousOptions:
    round_s: float = 60.0
    rate_scale: float = 0.1
    rounds: int = 0
    """Stop after this many rounds in this process (0: until interrupted)."""
    keep_runs: int = 5
    metrics_port: int | None = None
    linger_s: float = 15.0
    """After the last round: how long the metrics stay served if nobody scrapes them."""


class MetricsServer:
    """Serves a registry at ``/metrics`` (HTTP, a thread) and notes each scrape."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self.registry = registry
        self._scraped = threading.Condition()
        self.scrapes = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] not in ("/metrics", "/"):
                    self.send_error(404)
                    return
                body = generate_latest(server.registry)
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                with server._scraped:
                    server.scrapes += 1
                    server._scraped.notify_all()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def _wait_scrape_after(self, seen: int, timeout_s: float) -> bool:
        with self._scraped:
            return self._scraped.wait_for(lambda: self.scrapes > seen, timeout_s)

    async def wait_scraped(self, seen: int, timeout_s: float) -> bool:
        """Wait until there has been a scrape after ``seen`` scrapes (or ``timeout_s``)."""
        return await asyncio.to_thread(self._wait_scrape_after, seen, timeout_s)


class RoundVerdict(BaseModel):
    round: int
    experiment_id: str
    run_id: str
    fault: str | None
    passed: bool | None
    status: str
    failing: list[str] = Field(default_factory=list)
    ended_ns: int


class ContinuousState(BaseModel):
    experiment_id: str
    next_round: int = 0
    history: list[RoundVerdict] = Field(default_factory=list)


def round_experiment(exp: Experiment, n: int, opts: ContinuousOptions) -> Experiment:
    """Round ``n`` of a continuous run: one fault (rotating), low-rate load, ``round_s`` long.
    The method's activities are dropped (their pauses would outlast a round); the
    steady-state hypothesis stays."""
    ax = exp.aftershock
    faults = sorted(ax.faults, key=lambda f: (f.at, f.id))
    chosen = []
    if faults:
        f = faults[n % len(faults)]
        chosen = [
            f.model_copy(
                update={
                    "at": round(opts.round_s * 0.25, 3),
                    "duration": min(f.duration, opts.round_s * 0.4),
                }
            )
        ]
    load = [
        p.model_copy(
            update={
                "duration_s": opts.round_s,
                "script": [
                    s.model_copy(update={"rate_per_s": s.rate_per_s * opts.rate_scale})
                    if isinstance(s, SendStep)
                    else s
                    for s in p.script
                ],
            }
        )
        for p in ax.load
    ]
    base_id = ax.experiment_id or "experiment"
    section = ax.model_copy(
        update={"faults": chosen, "load": load, "experiment_id": f"{base_id}-r{n}"}
    )
    others = [e for e in exp.extensions if e is not ax]
    return exp.model_copy(update={"extensions": [section, *others], "method": []})


def round_line(v: RoundVerdict, outcome: RunOutcome) -> str:
    """The console line of a finished round."""
    word = {True: "PASS", False: "FAIL", None: "ERROR"}[v.passed]
    parts = [f"round {v.round}: {word} ({v.status})", f"fault {v.fault or '-'}"]
    if v.failing:
        parts.append(f"failing {', '.join(v.failing)}")
    elif v.passed is None and outcome.reasons:
        parts.append(outcome.reasons[0])
    parts.append(f"run {v.run_id or '-'}")
    return "; ".join(parts)


class Continuous:
    def __init__(
        self,
        experiment: Experiment,
        settings: Settings,
        options: GamedayOptions,
        continuous: ContinuousOptions,
    ) -> None:
        if continuous.round_s < 5:
            raise RunSetupError("a continuous round must last at least 5 s (--round-s)")
        self.exp = experiment
        self.settings = settings
        self.opts = options
        self.copts = continuous
        self.base_id = experiment.aftershock.experiment_id or "experiment"
        self.runs_dir = options.runs_dir or settings.state_dir / "runs"
        self.state_path = self.runs_dir / f"continuous-{self.base_id}.json"
        self.registry = CollectorRegistry()
        labels = ["experiment"]
        self.g_passed = Gauge(
            "aftershock_continuous_verdict_passed", "1 if the last round passed, else 0",
            labels, registry=self.registry,
        )  # fmt: skip
        self.c_rounds = Counter(
            "aftershock_continuous_rounds", "Rounds judged by this process, by outcome",
            ["experiment", "outcome"], registry=self.registry,
        )  # fmt: skip
        self.g_pass_ratio = Gauge(
            "aftershock_continuous_pass_ratio", "Share of the kept rounds that passed",
            labels, registry=self.registry,
        )  # fmt: skip
        self.g_availability = Gauge(
            "aftershock_continuous_availability_pct", "Availability in the last round",
            ["experiment", "target"], registry=self.registry,
        )  # fmt: skip
        self.g_mttr = Gauge(
            "aftershock_continuous_mttr_seconds", "MTTR in the last round",
            ["experiment", "target"], registry=self.registry,
        )  # fmt: skip
        self.g_violations = Gauge(
            "aftershock_continuous_isolation_violations", "Isolation violations, last round",
            labels, registry=self.registry,
        )  # fmt: skip

    def load_state(self) -> ContinuousState:
        try:
            return ContinuousState.model_validate_json(self.state_path.read_bytes())
        except FileNotFoundError:
            return ContinuousState(experiment_id=self.base_id)
        except (OSError, ValidationError) as exc:
            raise RunSetupError(f"{self.state_path}: unreadable continuous state: {exc}") from exc

    async def run(self) -> int:
        """Rounds until interrupted (or ``rounds`` of them); 0 when stopped by the operator or
        after the last round, 2 on error."""
        self.metrics: MetricsServer | None = None
        if self.copts.metrics_port is not None:
            try:
                self.metrics = MetricsServer(
                    self.registry, self.settings.bind_host, self.copts.metrics_port
                )
            except OSError as exc:
                raise RunSetupError(
                    f"cannot serve metrics on {self.settings.bind_host}:"
                    f"{self.copts.metrics_port}: {exc.strerror}"
                ) from exc
            self.metrics.start()
        try:
            return await self._rounds()
        finally:
            if self.metrics is not None:
                self.metrics.close()

    async def _rounds(self) -> int:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        state = self.load_state()
        async with contextlib.AsyncExitStack() as stack:
            settings = self.settings
            embedded: EmbeddedStack | None = None
            if settings.kafka_bootstrap is None or settings.redis_url is None:
                embedded = await stack.enter_async_context(EmbeddedStack(settings))
                settings = settings.model_copy(
                    update={
                        "kafka_bootstrap": embedded.kafka_bootstrap,
                        "redis_url": embedded.redis_url,
                    }
                )
            assert settings.redis_url is not None
            redis = Redis.from_url(settings.redis_url)
            stack.push_async_callback(redis.aclose)
            done = 0
            while self.copts.rounds == 0 or done < self.copts.rounds:
                n = state.next_round
                exp = round_experiment(self.exp, n, self.copts)
                fault = next(iter(f.id for f in exp.aftershock.faults), None)
                self.opts.console.print(
                    f"[bold]continuous round {n}[/bold]: fault {fault or '-'}, "
                    f"{self.copts.round_s:g} s"
                )
                gameday = Gameday(
                    exp,
                    settings,
                    replace(self.opts, runs_dir=self.runs_dir, global_tracing=False),
                )
                outcome = await self._round(gameday)
                verdict = self._verdict(n, exp, fault, outcome)
                self.opts.console.print(
                    round_line(verdict, outcome), highlight=False, markup=False, soft_wrap=True
                )
                state.history = [*state.history, verdict][-HISTORY:]
                state.next_round = n + 1
                atomic_write(self.state_path, state.model_dump_json(indent=1) + "\n")
                seen = self.metrics.scrapes if self.metrics is not None else 0
                await self._publish(redis, state, outcome)
                await self._trim(redis, n)
                if embedded is not None:
                    await embedded.drop_topics()
                done += 1
                if gameday.interrupted is not None:
                    return 0
            if self.metrics is not None and self.copts.linger_s > 0:
                self.opts.console.print(
                    f"serving the last round's metrics on port {self.metrics.port} until "
                    f"scraped (at most {self.copts.linger_s:g} s)"
                )
                await self.metrics.wait_scraped(seen, self.copts.linger_s)
        return 0

    async def _round(self, gameday: Gameday) -> RunOutcome:
        """One round; a round that errors is recorded as such and the rounds go on."""
        try:
            return await gameday.run()
        except* (InjectorError, GamedayError, OSError) as group:
            first = group.exceptions[0]
            self.opts.console.print(f"[red]round failed: {type(first).__name__}: {first}")
            error = f"{type(first).__name__}: {first}"
        return RunOutcome(2, None, "error", [], [error], 0.0)

    def _verdict(
        self, n: int, exp: Experiment, fault: str | None, outcome: RunOutcome
    ) -> RoundVerdict:
        passed = {0: True, 1: False}.get(outcome.exit_code)
        return RoundVerdict(
            round=n,
            experiment_id=exp.aftershock.experiment_id or "",
            run_id=outcome.run_dir.name if outcome.run_dir else "",
            fault=fault,
            passed=passed,
            status=outcome.status,
            failing=outcome.failing,
            ended_ns=time.time_ns(),
        )

    async def _publish(self, redis: Redis, state: ContinuousState, outcome: RunOutcome) -> None:
        last = state.history[-1]
        judged = [v for v in state.history if v.passed is not None]
        exp = self.base_id
        outcome_label = {True: "pass", False: "fail", None: "error"}[last.passed]
        self.c_rounds.labels(exp, outcome_label).inc()
        # Last round's figures: a series is removed where the round has no such figure.
        for g in (self.g_passed, self.g_pass_ratio, self.g_violations):
            with contextlib.suppress(KeyError):
                g.remove(exp)
        for g in (self.g_availability, self.g_mttr):
            g.clear()
        if last.passed is not None:
            self.g_passed.labels(exp).set(1 if last.passed else 0)
        if judged:
            self.g_pass_ratio.labels(exp).set(sum(bool(v.passed) for v in judged) / len(judged))
        if outcome.run_dir is not None:
            with contextlib.suppress(Exception):
                f = Findings(read_results(outcome.run_dir).records())
                for a in f.availability:
                    if a.scope == "target":
                        self.g_availability.labels(exp, a.scope_key).set(a.availability_pct)
                        if a.mttr_s is not None:
                            self.g_mttr.labels(exp, a.scope_key).set(a.mttr_s)
                if f.verdict is not None:
                    self.g_violations.labels(exp).set(f.violation_count)
        key = f"aftershock:{exp}:continuous"
        try:
            pipe = redis.pipeline(transaction=False)
            pipe.lpush(f"{key}:verdicts", last.model_dump_json())
            pipe.ltrim(f"{key}:verdicts", 0, HISTORY - 1)
            pipe.hset(
                key,
                mapping={
                    "next_round": str(state.next_round),
                    "last": last.model_dump_json(),
                    "pass_ratio": json.dumps(
                        None if not judged else sum(bool(v.passed) for v in judged) / len(judged)
                    ),
                },
            )
            await pipe.execute()
        except Exception as exc:  # rolling verdicts in Redis are a convenience
            self.opts.console.print(f"[yellow]cannot publish the verdict to Redis: {exc!r}")

    async def _trim(self, redis: Redis, n: int) -> None:
        """Forget rounds older than ``keep_runs``: their run directories and Redis results."""
        old = n - self.copts.keep_runs
        if old < 0:
            return
        state = self.load_state()
        for v in state.history:
            if v.round <= old and v.run_id:
                shutil.rmtree(self.runs_dir / v.run_id, ignore_errors=True)
        with contextlib.suppress(Exception):
            keys = [k async for k in redis.scan_iter(f"aftershock:{self.base_id}-r{old}:*")]
            if keys:
                await redis.delete(*keys)
