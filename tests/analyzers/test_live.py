"""The live adapter without a broker: redelivery by source offset, snapshots, rebalances."""

from __future__ import annotations

from analyzers.core.clock import ManualClock
from analyzers.live import LiveAnalyzers
from tests.analyzers.build import EXP
from tests.analyzers.test_ordering_replay import BASE, EXPECTED

RECORDS = [BASE[i : i + 50] for i in range(0, len(BASE), 50)]


def final(live: LiveAnalyzers) -> list[dict[str, object]]:
    a = live.slots[EXP].analyzer
    a.finish()
    return [r.model_dump() for r in a.results()]


def test_records_seen_again_are_skipped_by_source_offset() -> None:
    live = LiveAnalyzers(clock=ManualClock())
    live.open(EXP, 0, None)
    for offset, rec in enumerate(RECORDS):
        assert live.feed(EXP, (0, offset), rec).applied
    for offset, rec in enumerate(RECORDS[-5:], len(RECORDS) - 5):
        assert not live.feed(EXP, (0, offset), rec).applied
    assert live.skipped_records == 5
    assert final(live) == EXPECTED


def test_restore_from_a_snapshot_then_redelivery_counts_nothing_twice() -> None:
    live = LiveAnalyzers(clock=ManualClock())
    live.open(EXP, 0, None)
    for offset, rec in enumerate(RECORDS[:20]):
        live.feed(EXP, (0, offset), rec)
    blob = live.snapshot(EXP)
    for offset, rec in enumerate(RECORDS[20:25], 20):  # applied, then the worker dies
        live.feed(EXP, (0, offset), rec)
    restarted = LiveAnalyzers(clock=ManualClock())
    restarted.open(EXP, 0, blob)
    for offset, rec in enumerate(RECORDS[15:], 15):  # redelivered from an older commit
        restarted.feed(EXP, (0, offset), rec)
    assert restarted.skipped_records == 5
    assert final(restarted) == EXPECTED


def test_after_a_rebalance_the_newer_of_parked_state_and_changelog_wins() -> None:
    live = LiveAnalyzers(clock=ManualClock())
    live.open(EXP, 0, None)
    for offset, rec in enumerate(RECORDS[:10]):
        live.feed(EXP, (0, offset), rec)
    old_blob = live.snapshot(EXP)
    for offset, rec in enumerate(RECORDS[10:20], 10):
        live.feed(EXP, (0, offset), rec)
    parked = live.drop([0])[EXP]
    assert not live.has(EXP)
    # the changelog recovered an older snapshot: this worker's own state is newer
    slot = live.open(EXP, 1, old_blob, parked)
    assert slot is parked
    assert slot.partition == 1
    # another worker had the partition meanwhile and went further: its snapshot wins
    other = LiveAnalyzers(clock=ManualClock())
    other.open(EXP, 0, old_blob)
    for offset, rec in enumerate(RECORDS[10:30], 10):
        other.feed(EXP, (0, offset), rec)
    newer = other.snapshot(EXP)
    parked = live.drop([1])[EXP]
    slot = live.open(EXP, 1, newer, parked)
    assert slot is not parked
    assert slot.applied == {0: 29}
