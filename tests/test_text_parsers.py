"""Durations (``"1m30s"``) and JSON paths as an experiment file writes them: any input either
parses, with the documented meaning, or is a ``ValueError`` naming the value — never another
exception."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from schemas.experiment import MAX_SECONDS, parse_duration_s
from schemas.jsonpath import MAX_PATH_CHARS, jsonpath_values, parse_jsonpath

UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

# -- durations --------------------------------------------------------------------------------

duration_like = st.text(st.sampled_from("0123456789.msh -+eEinfaNx_٣"), max_size=14)


def _duration(value: object) -> tuple[float | None, str | None]:
    try:
        return parse_duration_s(value), None
    except ValueError as exc:
        return None, str(exc)


@settings(max_examples=500, deadline=None)
@given(text=st.text(max_size=20) | duration_like)
def test_any_text_is_seconds_in_range_or_an_error_naming_it(text: str) -> None:
    seconds, message = _duration(text)
    if message is None:
        assert seconds is not None
        assert math.isfinite(seconds)
        assert 0 <= seconds <= MAX_SECONDS
        assert math.copysign(1, seconds) == 1  # never -0.0
    else:
        assert repr(text) in message, message


@settings(max_examples=300, deadline=None)
@given(
    value=st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**1000)
    | st.integers(max_value=-(2**1000))  # beyond a float
    | st.floats()
    | st.lists(st.integers(), max_size=2)
)
def test_any_value_is_seconds_or_a_value_error(value: object) -> None:
    seconds, message = _duration(value)
    if message is None:
        assert seconds == float(value)  # type: ignore[arg-type]
        assert 0 <= seconds <= MAX_SECONDS
    else:
        assert "duration" in message or "seconds" in message, message


number_text = st.builds(
    lambda whole, frac: f"{whole}.{frac}" if frac else str(whole),
    st.integers(0, 10**6),
    st.none() | st.integers(0, 999).map(str),
)


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(st.tuples(number_text, st.sampled_from(sorted(UNIT_S))), min_size=1, max_size=4),
    spaced=st.booleans(),
)
def test_a_duration_is_the_sum_of_its_parts(parts: list[tuple[str, str]], spaced: bool) -> None:
    text = (" " if spaced else "").join(f"{n}{unit}" for n, unit in parts)
    expected = sum(float(n) * UNIT_S[unit] for n, unit in parts)
    seconds, message = _duration(text)
    if expected > MAX_SECONDS:
        assert message == f"{expected:g} seconds is more than a year (got {text!r})"
    else:
        assert seconds == pytest.approx(expected)


@settings(max_examples=300, deadline=None)
@given(seconds=st.floats(0, MAX_SECONDS))
def test_a_number_of_seconds_reads_back_exactly(seconds: float) -> None:
    assert parse_duration_s(seconds) == seconds
    assert parse_duration_s(repr(seconds)) == seconds
    if "e" not in repr(seconds):
        assert parse_duration_s(f"{seconds!r}s") == seconds


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1.5s", 1.5), ("200ms", 0.2), ("1h1m1s1ms", 3661.001), (" 2m ", 120.0), ("-0", 0.0)],
)
def test_documented_durations(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1s", "invalid duration '-1s'"),
        ("-3", "a duration cannot be negative (got '-3')"),
        (-3, "a duration cannot be negative (got -3)"),
        ("inf", "a number of seconds must be finite (got 'inf')"),
        pytest.param(10**400, "a whole number of 1329 bits is out of range", id="10**400"),
        pytest.param(2**1024 - 1, "a whole number of 1024 bits is out of range", id="2**1024-1"),
        pytest.param(-(2**1024), "a whole number of 1025 bits is out of range", id="-2**1024"),
        ("400d", "invalid duration '400d'"),
        ("9000h", "3.24e+07 seconds is more than a year (got '9000h')"),
    ],
)
def test_bad_durations_name_the_value(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_duration_s(value)


# -- JSON paths -------------------------------------------------------------------------------

path_like = st.text(st.sampled_from("$.[]*?@()'\"\\:,-0123456789abc=<>!&| "), max_size=30)


@settings(max_examples=500, deadline=None)
@given(text=st.text(max_size=40) | path_like | st.text(min_size=MAX_PATH_CHARS + 1))
def test_any_text_is_a_path_or_an_error_naming_it(text: str) -> None:
    try:
        parse_jsonpath(text)
    except ValueError as exc:
        message = str(exc)
    else:
        return
    stripped = text.strip()
    if not stripped:
        assert message == "a JSON path cannot be empty"
    elif len(stripped) > MAX_PATH_CHARS:
        assert repr(stripped[:40]) in message, message
    else:
        assert repr(stripped) in message, message


DOCUMENTS = ([1, 2, 3], {"a": [1, {"b": [2, 3]}], "c": "x"}, "text", None, [[1], {"a": 1}])


@settings(max_examples=500, deadline=None)
@given(text=path_like | st.from_regex(r"\A\$(\.a)?\[-?\d?:-?\d?(:-?\d)?\]\Z"))
@example(text="$[::0]")
@example(text="$[::-1]")
@example(text="$[?(@.b[1:2:0])]")
def test_a_path_that_parses_matches_any_document_without_error(text: str) -> None:
    """A path the experiment file took is never one the run then fails to match (a tolerance
    would be judged "not met" for the path's fault, not the system's)."""
    try:
        parse_jsonpath(text)
    except ValueError:
        return
    for document in DOCUMENTS:
        jsonpath_values(text, document)


@pytest.mark.parametrize("path", ["$[::0]", "$.a[1:2:-1]", "$[?(@.b[::-2])]"])
def test_a_slice_stepping_backwards_or_not_at_all_is_refused_by_name(path: str) -> None:
    with pytest.raises(ValueError, match=r"a slice step of -?\d+ is not supported") as caught:
        parse_jsonpath(path)
    assert repr(path) in str(caught.value)


def test_slices_stepping_forwards_find_what_python_slices_find() -> None:
    values = list(range(7))
    for path, expected in {
        "$[1:5:2]": values[1:5:2],
        "$[::3]": values[::3],
        "$[-3:]": values[-3:],
        "$[:-5]": values[:-5],
    }.items():
        assert jsonpath_values(path, values) == expected, path


names = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,8}\Z")
# Keys of any text but a quote, a backslash and control characters (a jsonpath2 string is
# written as in JSON).
keys = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cc"], exclude_characters='"\\'),
    max_size=8,
)
steps = st.one_of(
    names.map(lambda n: (f".{n}", n)),
    keys.map(lambda k: (f'["{k}"]', k)),
    st.integers(0, 5).map(lambda i: (f"[{i}]", i)),
)


def _nest(path: list[Any], leaf: object) -> object:
    """The smallest document in which ``path`` (keys and list indices) leads to ``leaf``."""
    doc = leaf
    for step in reversed(path):
        doc = [None] * step + [doc] if isinstance(step, int) else {step: doc}
    return doc


@settings(max_examples=300, deadline=None)
@given(walk=st.lists(steps, max_size=6), leaf=st.integers() | st.text(max_size=5))
def test_a_path_of_keys_and_indices_finds_what_is_there(
    walk: list[tuple[str, Any]], leaf: object
) -> None:
    path = "$" + "".join(text for text, _ in walk)
    document = _nest([step for _, step in walk], leaf)
    assert jsonpath_values(path, document) == [leaf]
    assert jsonpath_values(path + "[*]", document) == []  # a leaf has no members


def test_wildcards_and_descendants() -> None:
    doc = {"a": [{"b": 1}, {"b": 2}, {"c": {"b": 3}}]}
    assert jsonpath_values("$.a[*].b", doc) == [1, 2]
    assert sorted(jsonpath_values("$..b", doc)) == [1, 2, 3]
    # jsonpath2's filter tests the node it is applied to, so members are taken first
    assert jsonpath_values("$.a[*][?(@.b > 1)].b", doc) == [2]
