"""Analysis by analyzer workers (``aftershock analyze``, Faust) for ``aftershock run --workers``.

The run stores its analyzer configuration where the workers look for it
(``aftershock:{id}:analyzer-config``), starts the workers as child processes in their own
consumer group, and reads their live results back from Redis for the dashboard, the
safeguards and the report. The run is over for the workers once they have accepted as many of
the experiment's events as the run emitted and have nothing buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sys
import time
from typing import TYPE_CHECKING

import msgspec

from aftershock.gameday.children import die_with_parent
from schemas.results import Verdict
from spine.store import prefix, read_results

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from redis.asyncio import Redis

    from analyzers.core import AnalyzerConfig
    from schemas.events import Event
    from schemas.results import ResultBase, ResultEvent


class _Head(msgspec.Struct):
    """Whose an encoded event is (its other fields are skipped)."""

    experiment_id: str
    kind: str


_head = msgspec.json.Decoder(_Head)


class AnalyzerWorkers:
    """``n`` worker processes sharing one consumer group; logs to ``log_dir/analyzer-<i>.log``."""

    def __init__(
        self,
        n: int,
        app_id: str,
        env: dict[str, str],
        log_dir: Path,
        stop_timeout_s: float = 10.0,
        *,
        start_at_ms: int | None = None,
    ) -> None:
        self.n, self.app_id, self.env, self.log_dir = n, app_id, env, log_dir
        self.start_at_ms = start_at_ms
        """Where the workers' new group starts reading the events topic (None: where the
        stored results say analysis stopped)."""
        self.stop_timeout_s = stop_timeout_s
        self.procs: list[asyncio.subprocess.Process] = []

    async def __aenter__(self) -> AnalyzerWorkers:
        try:
            for i in range(self.n):
                log = (self.log_dir / f"analyzer-{i}.log").open("ab")
                try:
                    self.procs.append(
                        await asyncio.create_subprocess_exec(
                            sys.executable,
                            "-m",
                            "aftershock.cli.main",
                            "analyze",
                            "--app-id",
                            self.app_id,
                            "--publish-interval-s",
                            "0.25",
                            "--start-at",
                            "stored" if self.start_at_ms is None else str(self.start_at_ms),
                            stdout=log,
                            stderr=log,
                            env=self.env,
                            preexec_fn=die_with_parent,
                            start_new_session=True,
                        )
                    )
                finally:
                    log.close()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def exited(self) -> list[int]:
        return [p.returncode for p in self.procs if p.returncode is not None]

    def kill(self) -> None:
        """SIGKILL every worker now, without waiting; :meth:`stop` still reaps them."""
        for p in self.procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()

    async def stop(self) -> None:
        procs, self.procs = self.procs, []
        for p in procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.terminate()
        for p in procs:
            try:
                async with asyncio.timeout(self.stop_timeout_s):
                    await p.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                await p.wait()


class WorkerAnalysis:
    """The run's view of the workers' results: the same interface as the in-process
    :class:`~aftershock.gameday.analysis.LiveAnalysis` (``emit``, ``emit_encoded``,
    ``results_feed``, ``run``, ``drain``)."""

    def __init__(
        self,
        experiment_id: str,
        config: AnalyzerConfig,
        redis: Redis,
        *,
        on_results: Callable[[list[ResultEvent]], None] | None = None,
        interval_s: float = 0.5,
    ) -> None:
        self.experiment_id = experiment_id
        self.config = config
        self._redis = redis
        self._on_results = on_results
        self._interval_s = interval_s
        self.emitted = 0
        self._seen: dict[str, bytes] = {}
        self._subscribers: list[asyncio.Queue[ResultBase]] = []
        self.results: list[ResultEvent] = []
        self.drained = False

    async def publish_config(self) -> None:
        await self._redis.set(
            f"aftershock:{self.experiment_id}:analyzer-config", self.config.model_dump_json()
        )

    def emit(self, event: Event) -> None:
        if event.experiment_id == self.experiment_id and not event.kind.startswith("result."):
            self.emitted += 1

    def emit_encoded(self, key: str, data: bytes) -> None:
        """Counts an event given as bytes, reading no more of it than whose it is."""
        try:
            head = _head.decode(data)
        except (msgspec.DecodeError, ValueError):
            return  # not an event: the workers will not accept it either
        if head.experiment_id == self.experiment_id and not head.kind.startswith("result."):
            self.emitted += 1

    def results_feed(self) -> AsyncIterator[ResultBase]:
        queue: asyncio.Queue[ResultBase] = asyncio.Queue()
        self._subscribers.append(queue)

        async def feed() -> AsyncIterator[ResultBase]:
            while True:
                yield await queue.get()

        return feed()

    async def step(self) -> None:
        results = await read_results(self._redis, self.experiment_id)
        changed = False
        for r in results:
            digest = hashlib.blake2b(r.model_dump_json().encode(), digest_size=16).digest()
            if self._seen.get(r.event_id) != digest:
                self._seen[r.event_id] = digest
                changed = True
                for q in self._subscribers:
                    q.put_nowait(r)
        self.results = results
        if changed and self._on_results is not None:
            self._on_results(results)

    async def run(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # Redis hiccups must not end the run
                await self.step()
            await asyncio.sleep(self._interval_s)

    async def _stats(self) -> dict[str, str]:
        raw = await self._redis.hgetall(f"{prefix(self.experiment_id)}:stats")
        return {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }

    def results_so_far(self) -> list[ResultEvent]:
        """The workers' results as last read, without waiting for more."""
        return self.results

    async def drain(self, timeout_s: float, *, quiet_s: float = 3.0) -> list[ResultEvent]:
        """Wait until the workers have judged the run with nothing left buffered, and have
        either counted every event the run emitted or written nothing new for ``quiet_s``
        (events that arrive after a run was judged are not counted); returns their results
        (what there is, if ``timeout_s`` passes first)."""
        deadline = time.monotonic() + timeout_s
        last_update: bytes | str | None = None
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                await self.step()
                stats = await self._stats()
                seen = sum(int(stats.get(k) or 0) for k in ("accepted", "duplicates", "too_late"))
                update = await self._redis.get(f"{prefix(self.experiment_id)}:updated_ns")
                if update != last_update:
                    last_update, quiet_since = update, time.monotonic()
                judged = stats.get("buffered") == "0" and any(
                    isinstance(r, Verdict) and not r.phase for r in self.results
                )
                if judged and (seen >= self.emitted or time.monotonic() - quiet_since >= quiet_s):
                    self.drained = True
                    return self.results
            await asyncio.sleep(self._interval_s)
        return self.results
