"""The one error root of Aftershock, and the errors of the spine (embedded stack and event log).

Every error Aftershock raises on purpose derives from ``AftershockError``; each package keeps
its own subtree in its ``errors.py``::

    AftershockError
    ├── StackError                  the embedded stack could not start, or stop
    │   ├── BinaryNotFoundError     a server binary is not installed
    │   ├── PortInUseError          a configured port is already taken
    │   ├── ServiceStartError       a server exited or never became healthy
    │   └── StackAlreadyRunningError  a detached stack is already running here
    ├── EventLogError
    │   ├── DecodeError             a Kafka record is not a valid event envelope
    │   ├── SpoolError              the publisher's local log cannot be written
    │   └── EventFileError          a JSONL event file cannot be read or has a bad line
    ├── GeneratorError              generators/errors.py
    ├── InjectorError               injector/errors.py
    ├── ProxyError                  injector/proxy/errors.py
    ├── AnalyzerError               analyzers/errors.py
    └── GamedayError                aftershock/report/errors.py

Foreign errors (OS, Kafka client) are mapped at the boundary: ``raise Mapped(msg) from exc``;
:func:`first_problem` words a pydantic ``ValidationError`` for such a message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class AftershockError(Exception):
    """Base of every error Aftershock raises on purpose."""

    retriable: bool = False
    """True when trying the same thing again later may succeed."""


class StackError(AftershockError):
    """The embedded stack could not be started or stopped."""


class BinaryNotFoundError(StackError):
    """A server binary (Tansu broker, Valkey) is not installed where expected."""


class PortInUseError(StackError):
    """A port the stack was told to use is already bound by another process."""

    def __init__(self, service: str, host: str, port: int) -> None:
        super().__init__(
            f"{service}: port {host}:{port} is already in use; free it or choose another "
            "port (0 picks a free one)"
        )
        self.service = service
        self.host = host
        self.port = port


class ServiceStartError(StackError):
    """A server process exited during start, or did not become healthy in time."""

    retriable = True


class StackAlreadyRunningError(StackError):
    """A detached stack recorded in the state directory is still running."""


class EventLogError(AftershockError):
    """Base of errors of the event log (wire format, publisher, reader)."""


class EventFileError(EventLogError):
    """A JSON lines event file cannot be read, or a line is not a valid event (file:line named)."""


class DecodeError(EventLogError):
    """A Kafka record is not a valid event envelope; the message says what and where."""


class SpoolError(EventLogError):
    """The publisher's local log cannot be written or read."""


def first_problem(exc: ValidationError) -> str:
    """What a pydantic validation error says first, for a message that also names the file:
    ``field.path: message`` (only the message when it is about the whole input, such as
    invalid JSON), and how many other problems there are."""
    errors = exc.errors(include_url=False)
    if not errors:  # pydantic never raises one without errors; say something all the same
        return str(exc)
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"])
    text = f"{where}: {first['msg']}" if where else first["msg"]
    more = len(errors) - 1
    return f"{text} (and {more} more problem{'s' if more > 1 else ''})" if more else text
