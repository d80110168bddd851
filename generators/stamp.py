"""Integrity and isolation stamps: who sent a message, when, in what order, and a keyed MAC.

A stamp is one ASCII string, safe to embed verbatim in JSON and in a text line::

    A1|<tenant>|<user>|<session>|<seq>|<send_ns hex>|<filler>|<mac>

``mac`` is the first 8 bytes (16 hex chars) of HMAC-SHA256, keyed per experiment, over
everything before the last ``|``; for a message published to a channel, over that and the
channel's name too (``body + NUL + channel``), so a channel changed in transit fails the check
as the stamp's own bytes do, instead of reading as a delivery to the wrong channel. Names are
percent-encoded outside ``[A-Za-z0-9._:@-]`` so the separator never appears in a field. The
filler pads the stamp to the planned message size.

On receipt :func:`verify` yields the origin fields and whether the MAC held; a receipt whose
origin tenant differs from the receiver's tenant is a cross-tenant delivery, ``checksum_ok``
False is corruption (then the origin fields themselves are not trustworthy), gaps, repeats and
inversions of ``seq`` per origin session are loss, duplication and reordering.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from typing import NamedTuple
from urllib.parse import quote, unquote

VERSION = "A1"
MAC_HEX = 16
_SAFE = re.compile(r"[A-Za-z0-9._:@-]+")
_FILLER = "x" * 65536
_BLOCK = 64  # SHA-256 block size, the HMAC pad length


class Mac:
    """HMAC-SHA256 with the key's padded inner and outer states computed once.

    ``hmac.digest`` redoes the key schedule (and, with OpenSSL 3, a fetch of the algorithm) on
    every call; copying two prepared hash states costs a fraction of that per message. The
    result is the same HMAC (RFC 2104), checked against ``hmac`` in the tests.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(hmac.trans_36))
        self._outer = hashlib.sha256(key.translate(hmac.trans_5C))

    def hex(self, message: bytes) -> str:
        """The first ``MAC_HEX`` hex characters of HMAC-SHA256(key, message)."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[: MAC_HEX // 2].hex()


@functools.lru_cache(maxsize=64)
def mac_for(key: bytes) -> Mac:
    """The prepared :class:`Mac` of ``key`` (one per experiment key, kept)."""
    return Mac(key)


def _escape(name: str) -> str:
    return name if _SAFE.fullmatch(name) else quote(name, safe="._:@-")


def _unescape(field: str) -> str:
    return unquote(field) if "%" in field else field


class Origin(NamedTuple):
    tenant: str
    user: str
    session: str
    seq: int
    send_ns: int
    checksum_ok: bool


def _origin(fields: tuple[str, str, str, int, int, bool]) -> Origin:
    # One per received message: skips NamedTuple's Python-level __new__.
    return tuple.__new__(Origin, fields)


class Stamper:
    """Makes the stamps of one session. The fixed prefix is built once; :meth:`stamp` is hot."""

    __slots__ = ("_mac", "_prefix")

    def __init__(self, key: bytes, tenant: str, user: str, session: str) -> None:
        self._mac = mac_for(key)  # shared by every session of the key
        self._prefix = f"{VERSION}|{_escape(tenant)}|{_escape(user)}|{_escape(session)}|"

    def overhead(self, seq: int, send_ns: int) -> int:
        return len(self._prefix) + len(f"{seq}|{send_ns:x}||") + MAC_HEX

    def stamp(self, seq: int, send_ns: int, size: int = 0, channel: str | None = None) -> str:
        """A stamp of about ``size`` characters (never less than the header needs), for a
        message published to ``channel`` if one is given."""
        head = f"{self._prefix}{seq}|{send_ns:x}|"
        fill = size - len(head) - MAC_HEX - 1
        body = f"{head}{_FILLER[: fill if fill > 0 else 0]}"
        # Mac.hex inlined (one call per message less); test_stamp checks it against hmac.
        mac = self._mac
        inner = mac._inner.copy()
        inner.update(body.encode() if channel is None else _signed(body, channel))
        outer = mac._outer.copy()
        outer.update(inner.digest())
        return f"{body}|{outer.digest()[: MAC_HEX // 2].hex()}"


_DAMAGED = Origin("", "", "", -1, 0, False)
"""What a damaged stamp tells: nothing about its origin, only that it does not hold."""


def _stamp_shaped(text: str) -> bool:
    """A stamp whose first characters were changed, dropped or added to: a MAC's ``|`` and 16
    lowercase hex characters at the end, and at least six ``|`` in all (an intact stamp has
    seven; a change at the front can take one). Text a server writes itself hardly ends so."""
    n = len(text)
    return (
        n > MAC_HEX
        and text[n - MAC_HEX - 1] == "|"
        and all(c in "0123456789abcdef" for c in text[n - MAC_HEX :])
        and text.count("|") >= 6
    )


def _signed(body: str, channel: str) -> bytes:
    """What the MAC of a channel message covers: its body, NUL, the channel (a body never
    holds a NUL). Any text a server may name a channel encodes (lone surrogates too)."""
    return body.encode() + b"\0" + channel.encode("utf-8", "surrogatepass")


def verify(key: bytes, text: str, channel: str | None = None) -> Origin | None:
    """Parse and check a stamp that arrived on ``channel`` (None: an echo, a response, a
    line); None when ``text`` is not a stamp at all. Never raises: any text a server sends
    back is a stamp that holds, one that does not, or no stamp.

    A stamp whose version prefix was damaged in transit (``X1|…``, ``A1X…``, ``1|…``) is one
    that does not hold, not "no stamp": otherwise a corruption of its first bytes would pass
    as an answer that carried no stamp, and go uncounted."""
    if not text.startswith(VERSION + "|"):
        return _DAMAGED if _stamp_shaped(text) else None
    body, sep, mac = text.rpartition("|")
    parts = body.split("|", 6)
    if not sep or len(parts) != 7:
        return _DAMAGED
    try:
        seq = int(parts[4])
        send_ns = int(parts[5], 16)
    except ValueError:
        return Origin(_unescape(parts[1]), _unescape(parts[2]), _unescape(parts[3]), -1, 0, False)
    try:
        expected = mac_for(key).hex(body.encode() if channel is None else _signed(body, channel))
    except UnicodeEncodeError:
        expected = ""
    # compare_digest refuses non-ASCII text (TypeError): a MAC garbled into any is no match.
    ok = len(mac) == MAC_HEX and mac.isascii() and hmac.compare_digest(expected, mac)
    _, tenant, user, session = parts[:4]
    return _origin(
        (
            tenant if "%" not in tenant else unquote(tenant),
            user if "%" not in user else unquote(user),
            session if "%" not in session else unquote(session),
            seq,
            send_ns,
            ok,
        )
    )


def experiment_key(experiment_id: str, secret: bytes | None = None) -> bytes:
    """The MAC key of an experiment: derived from a secret when given, else from the id alone.

    Without a secret the key only guards against accidental corruption, which is the point; a
    secret also makes stamps unforgeable by the system under test.
    """
    base = secret if secret is not None else b"aftershock-stamp"
    return hmac.digest(base, experiment_id.encode(), "sha256")
