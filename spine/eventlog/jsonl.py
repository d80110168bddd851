"""Event logs as JSON lines files (one event per line), as exports and run directories keep them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError

from schemas.events import parse_event
from spine.errors import EventFileError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from schemas.events import Event


def iter_jsonl(path: Path, *, skip_invalid: bool = False) -> Iterator[Event]:
    """The events of a JSONL file in file order; blank lines are skipped.

    Raises :class:`EventFileError` naming the file, the line and the field that is wrong, or,
    with ``skip_invalid``, passes such a line over (a log whose writer crashed mid-line, read
    to clean up after it).
    """
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise EventFileError(f"cannot read {path}: {exc.strerror}") from exc
    with fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield parse_event(line)
            except ValidationError as exc:
                if skip_invalid:
                    continue
                first = exc.errors(include_url=False)[0]
                where = ".".join(str(p) for p in first["loc"]) or "<root>"
                raise EventFileError(f"{path}:{lineno}: {where}: {first['msg']}") from exc
