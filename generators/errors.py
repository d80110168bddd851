"""Errors raised by the generators.

::

    GeneratorError
    ├── PlanError                 the load profile or targets cannot be run as given
    │   └── CapacityError         the plan needs more sockets than this process may open
    ├── ConnectError (retriable)  could not establish a session's connection
    │   └── HandshakeError        the peer answered but refused the upgrade / returned non-2xx
    ├── ConnectionLost (retriable)    the peer or the network broke an open connection
    ├── AuthError (retriable)     login / refresh / logout failed
    └── CoordinationError         distributed generators could not agree (barrier, plan, abort)

``ConnectionLost`` (broken by the peer) is distinct from a connection we closed ourselves,
which is not an error at all.
"""

from __future__ import annotations

from spine.errors import AftershockError


class GeneratorError(AftershockError):
    retriable = False


class PlanError(GeneratorError):
    pass


class CapacityError(PlanError):
    pass


class ConnectError(GeneratorError):
    retriable = True


class HandshakeError(ConnectError):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ConnectionLost(GeneratorError):
    retriable = True

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class AuthError(GeneratorError):
    retriable = True

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class CoordinationError(GeneratorError):
    pass
