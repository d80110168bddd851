"""Integrity and isolation stamps: who sent a message, when, in what order, and a keyed MAC.

A stamp is one ASCII string, safe to embed verbatim in JSON and in a text line::

    A1|<tenant>|<user>|<session>|<seq>|<send_ns hex>|<filler>|<mac>

``mac`` is the first 8 bytes (16 hex chars) of HMAC-SHA256, keyed per experiment, over
everything before the last ``|``. Names are percent-encoded outside ``[A-Za-z0-9._:@-]`` so the
separator never appears in a field. The filler pads the stamp to the planned message size.

On receipt :func:`verify` yields the origin fields and whether the MAC held; a receipt whose
origin tenant differs from the receiver's tenant is a cross-tenant delivery, ``checksum_ok``
False is corruption (then the origin fields themselves are not trustworthy), gaps, repeats and
inversions of ``seq`` per origin session are loss, duplication and reordering.
"""

from __future__ import annotations

import hmac
import re
from typing import NamedTuple
from urllib.parse import quote, unquote

VERSION = "A1"
MAC_HEX = 16
_SAFE = re.compile(r"^[A-Za-z0-9._:@-]+$")
_FILLER = "x" * 65536
_DIGEST = "sha256"


def _escape(name: str) -> str:
    return name if _SAFE.match(name) else quote(name, safe="._:@-")


def _unescape(field: str) -> str:
    return unquote(field) if "%" in field else field


class Origin(NamedTuple):
    tenant: str
    user: str
    session: str
    seq: int
    send_ns: int
    checksum_ok: bool


class Stamper:
    """Makes the stamps of one session. The fixed prefix is built once; :meth:`stamp` is hot."""

    __slots__ = ("_key", "_prefix")

    def __init__(self, key: bytes, tenant: str, user: str, session: str) -> None:
        self._key = key
        self._prefix = f"{VERSION}|{_escape(tenant)}|{_escape(user)}|{_escape(session)}|"

    def overhead(self, seq: int, send_ns: int) -> int:
        return len(self._prefix) + len(f"{seq}|{send_ns:x}||") + MAC_HEX

    def stamp(self, seq: int, send_ns: int, size: int = 0) -> str:
        """A stamp of about ``size`` characters (never less than the header needs)."""
        head = f"{self._prefix}{seq}|{send_ns:x}|"
        fill = size - len(head) - MAC_HEX - 1
        body = f"{head}{_FILLER[: fill if fill > 0 else 0]}"
        mac = hmac.digest(self._key, body.encode(), _DIGEST)[:8].hex()
        return f"{body}|{mac}"


def verify(key: bytes, text: str) -> Origin | None:
    """Parse and check a stamp; None when ``text`` is not a stamp at all."""
    if not text.startswith(VERSION + "|"):
        return None
    body, sep, mac = text.rpartition("|")
    parts = body.split("|", 6)
    if not sep or len(parts) != 7:
        return Origin("", "", "", -1, 0, False)
    try:
        seq = int(parts[4])
        send_ns = int(parts[5], 16)
    except ValueError:
        return Origin(_unescape(parts[1]), _unescape(parts[2]), _unescape(parts[3]), -1, 0, False)
    try:
        expected = hmac.digest(key, body.encode(), _DIGEST)[:8].hex()
    except UnicodeEncodeError:
        expected = ""
    ok = len(mac) == MAC_HEX and hmac.compare_digest(expected, mac)
    return Origin(_unescape(parts[1]), _unescape(parts[2]), _unescape(parts[3]), seq, send_ns, ok)


def experiment_key(experiment_id: str, secret: bytes | None = None) -> bytes:
    """The MAC key of an experiment: derived from a secret when given, else from the id alone.

    Without a secret the key only guards against accidental corruption, which is the point; a
    secret also makes stamps unforgeable by the system under test.
    """
    base = secret if secret is not None else b"aftershock-stamp"
    return hmac.digest(base, experiment_id.encode(), "sha256")
