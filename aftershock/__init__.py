"""Aftershock: event-sourced chaos and fault injection.

This package holds what every part shares: settings, the embedded stack, the event log
(publisher, reader, wire format) and the command line.
"""

__version__ = "0.1.0"
