"""The spine: what every event travels through, below the three wings.

Encoding, the publisher, sinks, readers and the local log (``spine.eventlog``), settings, the
one error root (``spine.errors``), the embedded stack, the results store and the quantile
sketch. ``generators``, ``injector`` and ``analyzers`` import this package and ``schemas``, and
never each other; ``aftershock`` composes them.
"""

__version__ = "0.1.0"
