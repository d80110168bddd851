"""Every error the injector raises, in one tree.

::

    InjectorError
    ├── ExperimentInvalid          the file does not validate (carries every Problem)
    ├── ControllerError            talking to the fault proxy's API failed
    │   ├── ServerUnreachable      connection refused / reset          (retriable)
    │   ├── ServerTimeout          no answer within the time limit     (retriable)
    │   ├── ServerError            5xx from the server
    │   ├── BadRequest             400: invalid toxic, bad body, bad stream
    │   ├── ProxyNotFound          404 on a proxy
    │   ├── ToxicNotFound          404 on a toxic
    │   ├── ProxyExists            409 on a proxy
    │   └── ToxicExists            409 on a toxic
    ├── UnsupportedByServer        the plan needs a capability the server lacks
    ├── RevertFailed               some faults could not be reverted (names them)
    ├── FaultLost                  the server lost an active fault and it could not be put back
    ├── ControlChannelError        the Redis game-day control channel failed
    └── JournalError               a journal or event file cannot be read for reaping

Errors from ``toxiproxy-python``, ``requests`` and ``redis`` are mapped into this tree where
they are caught (``raise X(...) from exc``); nothing else leaks out of the injector.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spine.errors import AftershockError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from injector.document import Problem


class InjectorError(AftershockError):
    retriable: bool = False


class ExperimentInvalid(InjectorError):
    def __init__(self, filename: str, problems: Sequence[Problem]) -> None:
        self.filename = filename
        self.problems = list(problems)
        lines = [p.render(filename) for p in self.problems]
        super().__init__(
            f"{filename}: {len(lines)} problem(s)\n" + "\n".join(f"  {line}" for line in lines)
        )


class ControllerError(InjectorError):
    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class ServerUnreachable(ControllerError):
    retriable = True


class ServerTimeout(ControllerError):
    retriable = True


class ServerError(ControllerError):
    pass


class BadRequest(ControllerError):
    pass


class ProxyNotFound(ControllerError):
    pass


class ToxicNotFound(ControllerError):
    pass


class ProxyExists(ControllerError):
    pass


class ToxicExists(ControllerError):
    pass


class UnsupportedByServer(InjectorError):
    """Raised before anything is injected, listing each fault and what it needs."""

    def __init__(self, server: str, missing: Sequence[str]) -> None:
        self.server = server
        self.missing = list(missing)
        super().__init__(
            f"the fault proxy at {server} cannot run this plan:\n"
            + "\n".join(f"  - {m}" for m in self.missing)
        )


class RevertFailed(InjectorError):
    def __init__(self, failures: Sequence[str]) -> None:
        self.failures = list(failures)
        super().__init__(
            "could not revert: "
            + "; ".join(self.failures)
            + " — run `aftershock injector reap` with this run's journal"
        )


class FaultLost(InjectorError):
    """The fault proxy lost a fault that should be active (it restarted, or lost the proxy or
    the lease) and the fault could not be applied again: the run cannot say what it tested."""


class ControlChannelError(InjectorError):
    retriable = True


class JournalError(InjectorError):
    pass
