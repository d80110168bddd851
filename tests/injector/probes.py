"""Probe and action functions that test experiments call through ``type: python`` providers."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path


def echo_ok(address: str, timeout_s: float = 1.0) -> bool:
    """True when a line sent to ``address`` comes back."""
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s) as s:
            s.sendall(b"probe\n")
            return s.makefile("rb").readline() == b"probe\n"
    except OSError:
        return False


def touch(path: str) -> str:
    Path(path).write_text("rolled back")
    return path


async def fail(message: str) -> None:
    raise RuntimeError(message)


def absent(path: str) -> bool:
    """True while nothing is at ``path`` (a method's ``touch`` makes a later probe deviate)."""
    return not Path(path).exists()


async def wait_for(path: str, timeout_s: float = 120.0) -> str:
    """Return once something is at ``path``: a method holds until the test lets it go on."""
    async with asyncio.timeout(timeout_s):
        while not Path(path).exists():
            await asyncio.sleep(0.02)
    return path
