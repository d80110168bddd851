"""Aftershock: event-sourced chaos and fault injection.

The composition layer: the game day, the report and the command line, built from the wings
(``generators``, ``injector``, ``analyzers``) over the spine (``spine``) and ``schemas``.
"""

from spine import __version__

__all__ = ["__version__"]
