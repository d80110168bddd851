"""Aftershock's fault proxy: a Toxiproxy-compatible server with corruption, drops, per-client
targeting, leases, connection introspection and fault events.

Embed it with :class:`ProxyServer`; run it with ``aftershock proxy serve``.
"""

from injector.proxy.errors import ApiError, ProxyError
from injector.proxy.server import ProxyServer

__all__ = ["ApiError", "ProxyError", "ProxyServer"]
