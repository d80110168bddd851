"""Errors of the analyzers' adapters (the pure core raises only ``ValueError`` on bad input).

The tree::

    AftershockError
    └── AnalyzerError
        ├── SnapshotError     a changelog snapshot cannot be read back
        └── InputError        an export file or a configuration is unreadable (names where)
"""

from __future__ import annotations

from spine.errors import AftershockError


class AnalyzerError(AftershockError):
    """Base of the errors the analyzers' adapters raise."""


class SnapshotError(AnalyzerError):
    """A state snapshot from the changelog is unreadable or of another version."""


class InputError(AnalyzerError):
    """An export file or analyzer configuration is malformed; the message names where."""
