"""Stamps: round trip, tamper detection, separators in names, JSON safety."""

from __future__ import annotations

import hmac
import json

from hypothesis import example, given
from hypothesis import strategies as st

from generators.stamp import Mac, Stamper, experiment_key, mac_for, verify

KEY = experiment_key("exp-1")


def test_round_trip_keeps_origin_and_checks() -> None:
    s = Stamper(KEY, "acme", "acme-u1", "acme-u1-s0").stamp(42, 1_700_000_000_123_456_789, 200)
    assert len(s) == 200
    o = verify(KEY, s)
    assert o is not None
    assert (o.tenant, o.user, o.session, o.seq, o.send_ns, o.checksum_ok) == (
        "acme",
        "acme-u1",
        "acme-u1-s0",
        42,
        1_700_000_000_123_456_789,
        True,
    )


def test_any_single_character_change_is_detected() -> None:
    s = Stamper(KEY, "acme", "u", "s").stamp(1, 5, 64)
    for i in range(len(s)):
        bad = s[:i] + ("Z" if s[i] != "Z" else "Y") + s[i + 1 :]
        o = verify(KEY, bad)
        # Not None either: a damaged stamp is corruption, not an answer without a stamp.
        assert o is not None, f"change at {i} read as no stamp"
        assert not o.checksum_ok, f"change at {i} went unnoticed"


def test_a_damaged_version_prefix_is_a_stamp_that_does_not_hold() -> None:
    s = Stamper(KEY, "acme", "u", "s").stamp(1, 5, 64)
    for bad in ("X" + s[1:], "A" + "X" + s[2:], s[:2] + "X" + s[3:], s[1:], "X" + s, s[2:]):
        o = verify(KEY, bad)
        assert o is not None, bad
        assert (o.checksum_ok, o.tenant, o.seq) == (False, "", -1)


def test_text_that_merely_ends_like_a_stamp_is_not_one() -> None:
    assert verify(KEY, "0123456789abcdef") is None  # no separator before the hex
    assert verify(KEY, "a|b|c|0123456789abcdef") is None  # too few separators
    assert verify(KEY, "a|b|c|d|e|f|0123456789ABCDEF") is None  # not a MAC's lowercase hex


def test_another_experiments_key_fails_the_check() -> None:
    s = Stamper(KEY, "acme", "u", "s").stamp(1, 5)
    o = verify(experiment_key("exp-2"), s)
    assert o is not None
    assert not o.checksum_ok


def test_not_a_stamp_is_none() -> None:
    assert verify(KEY, "hello") is None


@given(st.text(min_size=1, max_size=30), st.integers(0, 2**40), st.integers(0, 500))
@example("0\n", 0, 0)  # "$" of a regular expression matches before a final newline
def test_names_with_any_characters_survive_and_stay_json_safe(
    name: str, seq: int, size: int
) -> None:
    s = Stamper(KEY, name, name + "|u", "s%" + name).stamp(seq, 7, size)
    assert json.loads('"' + s + '"') == s
    o = verify(KEY, s)
    assert o is not None
    assert o.checksum_ok
    assert (o.tenant, o.user, o.session, o.seq) == (name, name + "|u", "s%" + name, seq)


@given(st.binary(max_size=200), st.binary(max_size=600))
def test_prepared_mac_is_hmac_sha256(key: bytes, message: bytes) -> None:
    expected = hmac.digest(key, message, "sha256")[:8].hex()
    assert Mac(key).hex(message) == expected
    assert mac_for(key).hex(message) == expected


def test_stamp_mac_is_hmac_sha256_of_the_body() -> None:
    s = Stamper(KEY, "acme", "u", "s").stamp(7, 99, 120)
    body, _, mac = s.rpartition("|")
    assert mac == hmac.digest(KEY, body.encode(), "sha256")[:8].hex()


@given(st.text(max_size=300))
@example("A1|t|u|s|1|ff|x|" + "\ufffd" * 16)
@example("A1|t|u|s|99999999999999999999" + "9" * 5000 + "|ff|x|0123456789abcdef")
@example("x|t|u|s|1|ff|x|0123456789abcdef")
def test_any_text_is_a_stamp_that_holds_one_that_does_not_or_none(text: str) -> None:
    o = verify(KEY, text)  # never raises
    if text.startswith("A1|"):
        assert o is not None
    elif not text.endswith(tuple("0123456789abcdef")) or text.count("|") < 6:
        assert o is None
    assert o is None or not o.checksum_ok


@given(st.integers(min_value=0), st.characters(codec=None) | st.sampled_from("\ufffd\x80\ud800é"))
def test_any_one_character_changed_to_any_other_is_caught(at: int, char: str) -> None:
    """Whatever a character turns into in transit (a replacement character after a bad UTF-8
    byte, a lone surrogate, a letter): the check fails, it never raises."""
    s = Stamper(KEY, "acme", "u", "s").stamp(1, 5, 64)
    i = at % len(s)
    if s[i] == char:
        return
    o = verify(KEY, s[:i] + char + s[i + 1 :])
    assert o is not None
    assert not o.checksum_ok


@given(st.integers(min_value=0), st.sampled_from(["drop", "add"]), st.characters(codec=None))
def test_any_one_character_dropped_or_added_is_caught(at: int, how: str, char: str) -> None:
    s = Stamper(KEY, "acme", "u", "s").stamp(1, 5, 64)
    i = at % len(s)
    bad = s[:i] + s[i + 1 :] if how == "drop" else s[:i] + char + s[i:]
    if bad == s:
        return
    o = verify(KEY, bad)
    assert o is not None
    assert not o.checksum_ok


def test_a_channel_message_holds_only_on_its_own_channel() -> None:
    s = Stamper(KEY, "acme", "u", "s").stamp(3, 5, 80, channel="room-1")
    held = verify(KEY, s, "room-1")
    assert held is not None
    assert (held.checksum_ok, held.seq) == (True, 3)
    for other in ("room-2", "Qoom-1", "", None):
        o = verify(KEY, s, other)
        assert o is not None
        assert not o.checksum_ok, other
    echo = Stamper(KEY, "acme", "u", "s").stamp(3, 5, 80)
    assert verify(KEY, echo) == verify(KEY, echo, None)
    o = verify(KEY, echo, "room-1")  # an echo that arrives naming a channel
    assert o is not None
    assert not o.checksum_ok


@given(
    st.text(min_size=1, max_size=20),
    st.integers(min_value=0),
    st.characters(codec=None) | st.sampled_from("\ufffd\ud800"),
)
def test_any_one_character_of_the_channel_changed_is_caught(
    channel: str, at: int, char: str
) -> None:
    s = Stamper(KEY, "acme", "u", "s").stamp(1, 5, 64, channel=channel)
    good = verify(KEY, s, channel)
    assert good is not None
    assert good.checksum_ok
    i = at % len(channel)
    changed = channel[:i] + char + channel[i + 1 :]
    if changed == channel:
        return
    o = verify(KEY, s, changed)
    assert o is not None
    assert not o.checksum_ok
