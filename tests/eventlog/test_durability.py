"""Fault injection against our own event log (the small version of ``python -m bench
durability``): steady producers while the broker is killed and started again, the stack is
stopped cleanly, and producers are killed with the broker up and down. Every emitted event is
looked up by ``event_id``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.durability import Harness

if TYPE_CHECKING:
    from pathlib import Path


def test_nothing_emitted_is_lost_beyond_the_window_and_exports_have_no_duplicates(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, rate=500.0, outage_s=1.0, steady_s=1.0)
    try:
        h.up()
        h.start_producer()
        h.broker_kill_restart()
        h.clean_stop()
        h.publisher_kill(broker_down=False)
        h.publisher_kill(broker_down=True)
        h.steady()
        h.stop_all()
        t = h.count()
    finally:
        h.cleanup()
    assert t.emitted > 2000
    assert t.lost_beyond_window == 0, t
    assert t.lost_in_window <= 2 * 500 * 0.1  # two kills, at most the 100 ms window each
    assert t.read == t.emitted - t.lost
    # Three brokers lost what they had acknowledged: each loss was noticed and repaired.
    assert t.losses_detected >= 1
    assert t.resent > 0
    assert t.unrepaired_reported == 0
    assert t.exported == t.read  # `aftershock export` holds every event once
    assert t.exported_duplicates == 0
