"""Errors of the chat sample. One base class; the tree::

ChatError
├── BadFrame            a client or link frame that cannot be understood (has ``code``)
├── AuthError           missing, unknown or expired credentials (HTTP 401)
│   └── TokenExpired
├── LoginRefused        wrong password when one is configured (HTTP 401)
└── UpstreamUnavailable a dependency (message service, Redis) is down; retriable
    ├── LinkDown        the gateway has no link to the message service
    └── RedisDown       the message service has no working Redis connection
"""

from __future__ import annotations


class ChatError(Exception):
    """Base of every error the chat sample raises on purpose."""

    retriable = False


class BadFrame(ChatError):
    """A frame that cannot be understood; ``code`` is the machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class AuthError(ChatError):
    """Missing, unknown or revoked token."""


class TokenExpired(AuthError):
    """The token was valid once and its lifetime has passed."""


class LoginRefused(ChatError):
    """The password does not match the configured one."""


class UpstreamUnavailable(ChatError):
    """A dependency is down; the same request may succeed later."""

    retriable = True


class LinkDown(UpstreamUnavailable):
    """The gateway has no working link to the message service."""


class RedisDown(UpstreamUnavailable):
    """The message service has no working Redis connection."""
