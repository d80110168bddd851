"""Errors of the game-day commands.

::

    GamedayError
    ├── RunDirError      a run directory or one of its files is missing or malformed
    └── RunSetupError    something the run needs could not be started or reached
"""

from __future__ import annotations

from spine.errors import AftershockError


class GamedayError(AftershockError):
    """Base of the game-day errors; the message is meant for the operator."""


class RunDirError(GamedayError):
    pass


class RunSetupError(GamedayError):
    pass
