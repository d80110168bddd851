"""Files a crash can leave behind: a file cut short at any byte, and what its reader says."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from hypothesis import strategies as st

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

JSON_WHERE = r".* at line \d+ column \d+"
"""How the JSON parser's message ends: what it expected, and where."""


def cut_short_error(
    path: Path,
    whole: bytes,
    data: st.DataObject,
    read: Callable[[], object],
    error: type[Exception],
) -> str:
    """Write ``whole`` to ``path`` cut at a byte ``data`` draws (never whole), then the message
    of the ``error`` that ``read`` must raise."""
    path.write_bytes(whole[: data.draw(st.integers(0, len(whole) - 1), label="cut")])
    with pytest.raises(error) as caught:
        read()
    return str(caught.value)
