"""The journal file (``journal.json``) read back: what was written comes back the same, and a
file a crash or a hand left truncated, garbled or wrong-typed is a ``JournalError`` that names
the file and what is wrong (``aftershock injector reap`` reads journals after a crash)."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from injector.errors import JournalError
from injector.journal import (
    ActivityRun,
    AftershockRun,
    ControlRecord,
    FaultRecord,
    FaultState,
    HookRecord,
    Journal,
    JournalWriter,
    Spread,
    StateLoss,
    SteadyState,
    SteadyStates,
    Timings,
    read_journal,
    write_journal,
)
from tests.files import JSON_WHERE, cut_short_error

if TYPE_CHECKING:
    from pathlib import Path

text = st.text(max_size=12)
opt_text = st.none() | text
# Every number a run measures is finite (pydantic writes an infinite float as null).
seconds = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)
opt_seconds = st.none() | seconds
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | seconds | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
mappings = st.dictionaries(text, json_values, max_size=4)

activity_runs = st.builds(
    ActivityRun,
    activity=mappings,
    status=st.sampled_from(["succeeded", "failed"]),
    output=json_values,
    start=text,
    end=text,
    duration=seconds,
    exception=st.none() | st.lists(text, max_size=2),
    tolerance_met=st.none() | st.booleans(),
)
steady_states = st.builds(
    SteadyState, steady_state_met=st.booleans(), probes=st.lists(activity_runs, max_size=2)
)
fault_records = st.builds(
    FaultRecord,
    fault_id=text,
    proxy=text,
    kind=st.sampled_from(["toxic", "down"]),
    source=st.sampled_from(["timeline", "chaostoxi"]),
    toxic_name=opt_text,
    toxic_type=opt_text,
    state=st.sampled_from(FaultState),
    planned_at_s=opt_seconds,
    planned_duration_s=opt_seconds,
    injected_at_s=opt_seconds,
    jitter_ms=opt_seconds,
    apply_ms=opt_seconds,
    reverted_at_s=opt_seconds,
    revert_jitter_ms=opt_seconds,
    revert_ms=opt_seconds,
    lease_ttl_ms=st.none() | st.integers(),
    lease_renewals=st.integers(),
    reapplied=st.integers(),
    error=opt_text,
)
spreads = st.builds(
    Spread,
    count=st.integers(0, 10**6),
    mean=opt_seconds,
    p50=opt_seconds,
    p95=opt_seconds,
    max=opt_seconds,
)
runs = st.builds(
    AftershockRun,
    experiment_id=text,
    run_id=text,
    api_url=text,
    server=text,
    server_version=text,
    features=st.lists(text, max_size=3),
    leases=st.booleans(),
    faults=st.lists(fault_records, max_size=3),
    controls=st.lists(
        st.builds(
            ControlRecord,
            command=st.sampled_from(["pause", "resume", "abort", "skip"]),
            issued_by=text,
            at_s=seconds,
        ),
        max_size=2,
    ),
    control_hooks=st.lists(
        st.builds(HookRecord, control=text, hook=text, context=text, error=opt_text), max_size=2
    ),
    state_losses=st.lists(
        st.builds(
            StateLoss,
            at_s=seconds,
            fault_id=text,
            proxy=text,
            found=st.sampled_from(["proxy_missing", "toxic_missing", "proxy_enabled"]),
            server_restarted=st.booleans(),
            action=st.sampled_from(["reapplied", "failed"]),
            proxy_recreated=st.booleans(),
            error=opt_text,
        ),
        max_size=2,
    ),
    abort_reason=opt_text,
    error=opt_text,
    timings=st.none()
    | st.builds(
        Timings,
        inject_jitter_ms=spreads,
        revert_jitter_ms=spreads,
        apply_ms=spreads,
        revert_ms=spreads,
    ),
    pid=st.integers(0, 2**22),
)
journals = st.builds(
    Journal,
    chaoslib_version=text,
    aftershock_version=text,
    platform=text,
    node=text,
    experiment=mappings,
    start=text,
    end=opt_text,
    duration=opt_seconds,
    status=st.sampled_from(["running", "completed", "failed", "aborted", "interrupted"]),
    deviated=st.booleans(),
    steady_states=st.builds(
        SteadyStates,
        before=st.none() | steady_states,
        after=st.none() | steady_states,
        during=st.lists(steady_states, max_size=2),
    ),
    run=st.lists(activity_runs, max_size=2),
    rollbacks=st.lists(activity_runs, max_size=2),
    aftershock=runs,
)


# What else an experiment file (YAML) and a probe can give: dates, sets, binary, keys that are
# not text, and text with lone surrogates (a JSON body with an escaped half of a pair).
any_text = st.text(
    st.characters(exclude_categories=()) | st.sampled_from(["\ud800", "\udbff", "\udc00"]),
    max_size=8,
)
yaml_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | seconds
    | any_text
    | st.dates()
    | st.datetimes()
    | st.datetimes(timezones=st.just(dt.UTC))
    | st.binary(max_size=8)
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.frozensets(any_text, max_size=3)
        | st.dictionaries(any_text | st.integers() | st.dates(), inner, max_size=3)
    ),
    max_leaves=8,
)
yaml_mappings = st.dictionaries(any_text, yaml_values, max_size=4)
yaml_journals = st.builds(
    lambda journal, experiment, activity, output, error: journal.model_copy(
        update={
            "experiment": experiment,
            "run": [
                r.model_copy(update={"activity": activity, "output": output}) for r in journal.run
            ],
            "aftershock": journal.aftershock.model_copy(update={"error": error}),
        }
    ),
    journals,
    yaml_mappings,
    yaml_mappings,
    yaml_values,
    st.none() | any_text,
)


def _minimal() -> dict[str, Any]:
    """The smallest journal there is, as written on disk."""
    return {
        "experiment": {"title": "t"},
        "start": "2024-01-01T00:00:00",
        "status": "running",
        "aftershock": {
            "experiment_id": "e",
            "run_id": "r",
            "api_url": "http://127.0.0.1:8474",
            "server": "aftershock",
            "server_version": "1",
            "features": [],
            "leases": True,
            "faults": [
                {"fault_id": "f", "proxy": "p", "kind": "toxic", "state": "active"},
            ],
        },
    }


@settings(max_examples=100, deadline=None)
@given(journal=journals)
def test_a_written_journal_reads_back_the_same(
    tmp_path_factory: pytest.TempPathFactory, journal: Journal
) -> None:
    path = tmp_path_factory.mktemp("journal") / "journal.json"
    write_journal(path, journal)
    assert read_journal(path) == journal
    # What is on disk is Chaos Toolkit's shape: its keys by their written names.
    on_disk = json.loads(path.read_text(encoding="utf-8"))
    assert on_disk["chaoslib-version"] == journal.chaoslib_version
    assert list(on_disk)[-1] == "aftershock"


@settings(max_examples=100, deadline=None)
@given(journal=yaml_journals)
def test_any_journal_is_written_and_reads_back_as_written(
    tmp_path_factory: pytest.TempPathFactory, journal: Journal
) -> None:
    path = tmp_path_factory.mktemp("journal") / "journal.json"
    write_journal(path, journal)
    again = read_journal(path)
    write_journal(path, again)
    assert read_journal(path) == again
    assert again.aftershock == journal.aftershock.model_copy(
        update={"error": _no_surrogates(journal.aftershock.error)}
    )


def _no_surrogates(text: str | None) -> str | None:
    return None if text is None else re.sub("[\ud800-\udfff]", "\ufffd", text)


def test_what_json_has_no_type_for_is_written_as_text(tmp_path: Path) -> None:
    journal = Journal.model_validate_json(json.dumps(_minimal()))
    run = ActivityRun(
        activity={"name": "p"}, status="succeeded", output="a\ud800b", start="", end="", duration=0
    )
    journal = journal.model_copy(
        update={
            "experiment": {
                "title": "t",
                "configuration": {
                    "since": dt.date(2024, 2, 29),
                    "at": dt.datetime(2024, 2, 29, 12, 30, tzinfo=dt.UTC),
                    "tags": frozenset({"x"}),
                    "blob": b"\x00\xff",
                    "by_day": {dt.date(2024, 3, 1): 1},
                },
            },
            "run": [run],
        }
    )
    path = tmp_path / "journal.json"
    write_journal(path, journal)
    back = read_journal(path)
    assert back.experiment["configuration"] == {
        "since": "2024-02-29",
        "at": "2024-02-29T12:30:00Z",
        "tags": ["x"],
        "blob": "AP8=",
        "by_day": {"2024-03-01": 1},
    }
    assert back.run[0].output == "a\ufffdb"


def test_a_key_no_utf8_can_hold_is_written_as_its_decoder_reads_it(tmp_path: Path) -> None:
    """A probe's JSON output with an escaped half of a pair as a key (pydantic's JSON mode
    raised on it, and the journal was not written)."""
    journal = Journal.model_validate_json(json.dumps(_minimal()))
    run = ActivityRun(
        activity={"name": "p", "\udc00k": 1},
        status="succeeded",
        output={"\ud800": None, "ok": ["\udbff"]},
        start="",
        end="",
        duration=0,
    )
    path = tmp_path / "journal.json"
    write_journal(path, journal.model_copy(update={"run": [run]}))
    back = read_journal(path)
    assert back.run[0].output == {"\ufffd": None, "ok": ["\ufffd"]}
    assert back.run[0].activity == {"name": "p", "\ufffdk": 1}


def test_the_writer_lives_on_after_a_journal_it_cannot_write(tmp_path: Path) -> None:
    journal = Journal.model_validate_json(json.dumps(_minimal()))
    path = tmp_path / "journal.json"
    writer = JournalWriter(path)
    try:
        bad = journal.model_copy(update={"run": [ActivityRun.model_construct(activity=object())]})
        assert writer.wait_written(writer.submit(bad))
        assert writer.error is not None
        assert writer.wait_written(writer.submit(journal))
        assert read_journal(path) == journal
    finally:
        writer.close()


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_a_truncated_journal_is_an_error_naming_the_file(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    path = tmp_path_factory.mktemp("journal") / "journal.json"
    whole = json.dumps(_minimal(), indent=2).encode()
    message = cut_short_error(path, whole, data, lambda: read_journal(path), JournalError)
    assert message.startswith(f"{path} is not an Aftershock journal: ")
    # What the JSON parser says, with where.
    assert re.search(f"Invalid JSON: {JSON_WHERE}$", message), message


@settings(max_examples=200, deadline=None)
@given(garbage=st.binary(max_size=200))
def test_any_bytes_are_a_journal_or_an_error_naming_the_file(
    tmp_path_factory: pytest.TempPathFactory, garbage: bytes
) -> None:
    path = tmp_path_factory.mktemp("journal") / "journal.json"
    path.write_bytes(garbage)
    with pytest.raises(
        JournalError, match=f"^{re.escape(str(path))} is not an Aftershock journal: .+"
    ):
        read_journal(path)


def _not_in(values: set[str]) -> st.SearchStrategy[str]:
    return text.filter(lambda t: t not in values)


def _is_number(t: str) -> bool:
    try:
        float(t)
    except ValueError:
        return False
    return True


containers = st.lists(json_values, max_size=2) | st.dictionaries(text, json_values, max_size=2)
not_text = st.none() | st.booleans() | st.integers() | seconds | containers
# Fields of the journal, each with values of a type it does not take (pydantic's lax mode
# takes "1" for an int and "yes" for a bool, so those are left out).
WRONG = [
    (("status",), not_text | _not_in({"running", "completed", "failed", "aborted", "interrupted"})),
    (("start",), not_text),
    (("experiment",), st.none() | st.integers() | text | st.lists(json_values, max_size=2)),
    (("aftershock",), st.none() | st.integers() | text | st.lists(json_values, max_size=2)),
    (("aftershock", "leases"), containers),
    (("aftershock", "features"), st.none() | st.integers() | text | st.dictionaries(text, text)),
    (("aftershock", "faults", 0, "state"), not_text | _not_in({s.value for s in FaultState})),
    (("aftershock", "faults", 0, "kind"), not_text | _not_in({"toxic", "down"})),
    (
        ("aftershock", "faults", 0, "lease_renewals"),
        containers | text.filter(lambda t: not _is_number(t)),
    ),
    (
        ("aftershock", "faults", 0, "planned_at_s"),
        containers | text.filter(lambda t: not _is_number(t)),
    ),
]


@settings(max_examples=200, deadline=None)
@given(case=st.one_of([st.tuples(st.just(where), values) for where, values in WRONG]))
def test_a_wrong_typed_field_is_named(
    tmp_path_factory: pytest.TempPathFactory, case: tuple[tuple[str | int, ...], Any]
) -> None:
    where, value = case
    doc = _minimal()
    parent: Any = doc
    for key in where[:-1]:
        parent = parent[key]
    parent[where[-1]] = value
    path = tmp_path_factory.mktemp("journal") / "journal.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    field = ".".join(str(k) for k in where)
    with pytest.raises(JournalError) as caught:
        read_journal(path)
    assert str(caught.value).startswith(f"{path} is not an Aftershock journal: {field}")


def test_a_missing_journal_is_named(tmp_path: Path) -> None:
    path = tmp_path / "journal.json"
    with pytest.raises(JournalError, match=f"cannot read journal {path}: No such file"):
        read_journal(path)
    with pytest.raises(JournalError, match=f"cannot read journal {tmp_path}: Is a directory"):
        read_journal(tmp_path)
