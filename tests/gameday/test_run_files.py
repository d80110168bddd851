"""A run directory's ``run.json``, ``results.json`` and ``analysis.json`` read back: what was
written comes back the same, and a file cut short, garbled or wrong-typed is a ``RunDirError``
naming the file and what is wrong — for ``aftershock report`` an exit status 2 with that
message, no traceback."""

from __future__ import annotations

import json
import re
import sys
from functools import cache
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aftershock.gameday.rebuild import read_analysis_config
from aftershock.report.errors import RunDirError
from aftershock.report.files import (
    ANALYSIS_FILE,
    RESULTS_FILE,
    atomic_write,
    read_meta,
    read_results,
    write_meta,
)
from aftershock.report.model import RunData, RunMeta
from analyzers.core import AnalyzerConfig
from tests.analyzers.configs import configs
from tests.files import JSON_WHERE, cut_short_error
from tests.gameday.golden import golden_run

if TYPE_CHECKING:
    from pathlib import Path

    from tests.processes import Processes

text = st.text(max_size=20)
STATUSES = {"completed", "failed", "aborted", "interrupted", "error"}
metas = st.builds(
    RunMeta,
    experiment_id=text,
    run_id=text,
    title=text,
    started_ns=st.none() | st.integers(0, 2**63),
    ended_ns=st.none() | st.integers(0, 2**63),
    status=st.sampled_from(sorted(STATUSES)),
    note=text,
)


@cache
def _golden() -> RunData:
    return golden_run()


def _golden_results() -> bytes:
    """A whole run's results.json, as the report writes it."""
    return _golden().model_dump_json().encode() + b"\n"


def _outcome(read: Any, run_dir: Path) -> tuple[Any, str | None]:
    """What ``read(run_dir)`` gave: (value, None) or (None, the RunDirError's message)."""
    try:
        return read(run_dir), None
    except RunDirError as exc:
        return None, str(exc)


@settings(max_examples=100, deadline=None)
@given(meta=metas)
def test_run_json_reads_back_as_written(
    tmp_path_factory: pytest.TempPathFactory, meta: RunMeta
) -> None:
    run_dir = tmp_path_factory.mktemp("run")
    write_meta(run_dir, meta)
    assert read_meta(run_dir) == meta


@settings(max_examples=100, deadline=None)
@given(meta=metas, data=st.data())
def test_a_run_json_cut_short_is_named_with_where_the_json_ends(
    tmp_path_factory: pytest.TempPathFactory, meta: RunMeta, data: st.DataObject
) -> None:
    run_dir = tmp_path_factory.mktemp("run")
    write_meta(run_dir, meta)
    path = run_dir / "run.json"
    whole = path.read_bytes().rstrip()
    message = cut_short_error(path, whole, data, lambda: read_meta(run_dir), RunDirError)
    assert re.fullmatch(re.escape(f"{path}: Invalid JSON: ") + JSON_WHERE, message), message


@settings(max_examples=200, deadline=None)
@given(garbage=st.binary(max_size=100) | text.map(str.encode))
def test_any_bytes_are_a_run_json_or_an_error_naming_it(
    tmp_path_factory: pytest.TempPathFactory, garbage: bytes
) -> None:
    run_dir = tmp_path_factory.mktemp("run")
    (run_dir / "run.json").write_bytes(garbage)
    meta, message = _outcome(read_meta, run_dir)
    assert isinstance(meta, RunMeta) or message is not None
    assert message is None or message.startswith(f"{run_dir / 'run.json'}: "), message


not_text = st.none() | st.integers() | st.lists(st.integers(), max_size=2)
# Fields of run.json, each with values of a type it does not take (pydantic's lax mode takes
# "12" and 12.0 for an int, so those are left out).
WRONG_META = [
    ("experiment_id", not_text),
    ("run_id", not_text),
    ("title", not_text),
    (
        "started_ns",
        text.filter(lambda t: not any(c.isdigit() for c in t))
        | st.floats().filter(lambda f: not f.is_integer()),
    ),
    ("status", not_text | text.filter(lambda t: t not in STATUSES)),
    ("note", not_text),
]


@settings(max_examples=200, deadline=None)
@given(case=st.one_of([st.tuples(st.just(field), values) for field, values in WRONG_META]))
def test_a_wrong_typed_field_of_run_json_is_named(
    tmp_path_factory: pytest.TempPathFactory, case: tuple[str, Any]
) -> None:
    field, value = case
    run_dir = tmp_path_factory.mktemp("run")
    doc: dict[str, Any] = {"experiment_id": "e", "run_id": "r", field: value}
    (run_dir / "run.json").write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(RunDirError) as caught:
        read_meta(run_dir)
    assert str(caught.value).startswith(f"{run_dir / 'run.json'}: {field}: "), caught.value


def test_a_missing_run_json_says_it_is_not_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(
        RunDirError, match=r"is not a run directory: cannot read run\.json: No such"
    ):
        read_meta(tmp_path)
    (tmp_path / "run.json").write_text('{"experiment_id": "e"}')
    with pytest.raises(RunDirError, match=r"run\.json: run_id: Field required$"):
        read_meta(tmp_path)


def test_results_json_reads_back_as_written(tmp_path: Path) -> None:
    (tmp_path / RESULTS_FILE).write_bytes(_golden_results())
    data = read_results(tmp_path)
    assert data == _golden()
    assert data.records()


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_results_json_cut_short_is_named(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    whole = _golden_results().rstrip()
    run_dir = tmp_path_factory.mktemp("run")
    path = run_dir / RESULTS_FILE
    message = cut_short_error(path, whole, data, lambda: read_results(run_dir), RunDirError)
    assert re.fullmatch(re.escape(f"{path}: Invalid JSON: ") + JSON_WHERE, message), message


@settings(max_examples=100, deadline=None)
@given(
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(1, 127)), min_size=1, max_size=3)
)
def test_a_garbled_results_json_is_an_error_or_has_readable_records(
    tmp_path_factory: pytest.TempPathFactory, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(_golden_results())
    for pos, bits in flips:
        data[pos % len(data)] ^= bits
    run_dir = tmp_path_factory.mktemp("run")
    (run_dir / RESULTS_FILE).write_bytes(bytes(data))
    read, message = _outcome(read_results, run_dir)
    if message is None:
        assert isinstance(read, RunData)
        read.records()  # what the report, the summary and continuous mode read next
    else:
        assert message.startswith(f"{run_dir / RESULTS_FILE}: "), message


@pytest.mark.parametrize(
    ("record", "where"),
    [
        ({"kind": "result.nonsense"}, "results.0: "),
        ({"kind": "result.verdict", "passed": "maybe"}, "results.0: result.verdict."),
        ("not a record", "results.0: "),
    ],
)
def test_a_bad_result_record_is_named_by_its_place(
    tmp_path: Path, record: object, where: str
) -> None:
    doc = json.loads(_golden_results())
    doc["results"].insert(0, record)
    (tmp_path / RESULTS_FILE).write_text(json.dumps(doc))
    with pytest.raises(RunDirError) as caught:
        read_results(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path / RESULTS_FILE}: {where}"), caught.value


@settings(max_examples=100, deadline=None)
@given(config=configs)
def test_analysis_json_reads_back_as_the_run_wrote_it(
    tmp_path_factory: pytest.TempPathFactory, config: AnalyzerConfig
) -> None:
    run_dir = tmp_path_factory.mktemp("run")
    atomic_write(run_dir / ANALYSIS_FILE, config.model_dump_json(indent=2) + "\n")
    assert read_analysis_config(run_dir) == config


@settings(max_examples=100, deadline=None)
@given(config=configs, data=st.data())
def test_an_analysis_json_cut_short_is_named(
    tmp_path_factory: pytest.TempPathFactory, config: AnalyzerConfig, data: st.DataObject
) -> None:
    whole = config.model_dump_json(indent=2).encode()
    run_dir = tmp_path_factory.mktemp("run")
    path = run_dir / ANALYSIS_FILE
    message = cut_short_error(path, whole, data, lambda: read_analysis_config(run_dir), RunDirError)
    assert re.fullmatch(
        re.escape(f"{path}: not an analyzer configuration: Invalid JSON: ") + JSON_WHERE, message
    ), message


@settings(max_examples=200, deadline=None)
@given(garbage=st.binary(max_size=100) | text.map(str.encode))
def test_any_bytes_are_an_analysis_json_or_an_error_naming_it(
    tmp_path_factory: pytest.TempPathFactory, garbage: bytes
) -> None:
    run_dir = tmp_path_factory.mktemp("run")
    (run_dir / ANALYSIS_FILE).write_bytes(garbage)
    config, message = _outcome(read_analysis_config, run_dir)
    assert isinstance(config, AnalyzerConfig) or message is not None
    assert message is None or message.startswith(
        f"{run_dir / ANALYSIS_FILE}: not an analyzer configuration: "
    ), message


def test_analysis_json_missing_is_the_defaults_unreadable_is_named(tmp_path: Path) -> None:
    assert read_analysis_config(tmp_path) == AnalyzerConfig()
    (tmp_path / ANALYSIS_FILE).mkdir()
    with pytest.raises(RunDirError, match=f"cannot read {tmp_path / ANALYSIS_FILE}: Is a dir"):
        read_analysis_config(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"experiment_id": "x", "run_', "run.json: Invalid JSON: EOF while parsing a string"),
        (
            b'{"experiment_id": "x", "run_id": 7}',
            "run.json: run_id: Input should be a valid string",
        ),
        (b"\xff\xfe", "run.json: Invalid JSON"),
    ],
)
def test_report_on_a_bad_run_json_exits_2_naming_it(
    tmp_path: Path, procs: Processes, content: bytes, message: str
) -> None:
    (tmp_path / "run.json").write_bytes(content)
    done = procs.run(
        [sys.executable, "-m", "aftershock.cli.main", "report", str(tmp_path)],
        text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: {tmp_path}/{message}"), done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"health": {"window_s": 2.0, "min_fail', "Invalid JSON: EOF while parsing a string"),
        (b'{"health": {"window_s": -1}}', "health.window_s: Input should be greater than 0"),
        (b'{"slos": [{"p99_max_ms": null, "x": 1}]}', "slos.0.x: Extra inputs are not permitted"),
    ],
)
def test_report_on_a_bad_analysis_json_exits_2_naming_it(
    tmp_path: Path, procs: Processes, content: bytes, message: str
) -> None:
    write_meta(tmp_path, RunMeta(experiment_id="x", run_id="r"))
    (tmp_path / ANALYSIS_FILE).write_bytes(content)
    done = procs.run(
        [sys.executable, "-m", "aftershock.cli.main", "report", str(tmp_path)],
        text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    expected = f"error: {tmp_path}/{ANALYSIS_FILE}: not an analyzer configuration: {message}"
    assert done.stderr.startswith(expected), done.stderr
    assert "Traceback" not in done.stderr
