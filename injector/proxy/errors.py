"""Every error the fault proxy raises, in one tree.

::

    ProxyError                      base of everything raised here
    ├── ApiError                    answered to an API client: carries status and message
    │   ├── BadRequest              400 (bad body, missing field, invalid stream or type)
    │   ├── Unauthorized            401 (bearer token missing or wrong)
    │   ├── Forbidden               403 (upstream outside the allowlist)
    │   ├── NotFound                404 (proxy or toxic not found)
    │   ├── Conflict                409 (proxy or toxic already exists)
    │   ├── PayloadTooLarge         413 (request body over the limit)
    │   ├── ListenError             500 (the listener could not bind)
    │   └── PopulateError           any of the above during /populate, with what was done
    └── (nothing else: the data path never raises; a failed dial or a reset closes the
         connection and shows in its close event)

The API messages are word for word those of Toxiproxy, because clients match on them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from spine.errors import AftershockError

if TYPE_CHECKING:
    from injector.proxy.proxy import Proxy


class ProxyError(AftershockError):
    """Base of every error raised by the fault proxy."""


class ApiError(ProxyError):
    """An error the control API answers with ``{"error": message, "status": status}``."""

    status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ApiError):
    status = 400

    @classmethod
    def body(cls, detail: str) -> BadRequest:
        return cls(f"bad request body: {detail}")

    @classmethod
    def missing_field(cls, field: str) -> BadRequest:
        return cls(f"missing required field: {field}")


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class PayloadTooLarge(ApiError):
    status = 413


class ListenError(ApiError):
    status = 500


PROXY_NOT_FOUND = "proxy not found"
PROXY_EXISTS = "proxy already exists"
INVALID_STREAM = "stream was invalid, can be either upstream or downstream"
INVALID_TOXIC_TYPE = "invalid toxic type"
TOXIC_EXISTS = "toxic already exists"
TOXIC_NOT_FOUND = "toxic not found"


class PopulateError(ApiError):
    """A failed ``/populate`` step: the error's status and message, and the proxies already
    done (upstream answers them with the error)."""

    def __init__(self, error: ApiError, done: list[Proxy]) -> None:
        super().__init__(error.message)
        self.status = error.status  # type: ignore[misc]
        self.done = done
