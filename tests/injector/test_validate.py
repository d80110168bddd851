"""`aftershock validate`: every problem of every broken file, with its path, line and message."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from aftershock.cli.main import app
from injector.validate import check_file, load_experiment
from schemas.experiment import parse_duration_s

HERE = Path(__file__).parent
BAD = HERE / "bad"
ROOT = HERE.parent.parent

# file -> [(line, path, fragment of the message)], all of them and nothing else.
CASES: dict[str, list[tuple[int | None, str, str]]] = {
    "not-yaml.yaml": [(4, "", "expected ',' or '}'")],
    "not-json.json": [(3, "", "not valid JSON: Expecting value")],
    "empty.yaml": [(1, "", "the file is empty")],
    "top-level-list.yaml": [(1, "", "must be a mapping")],
    "unknown-key.yaml": [
        (1, "titel", "unknown key 'titel'; did you mean 'title'?"),
        (1, "title", "missing required key 'title'"),
    ],
    "duplicate-key.yaml": [(3, "description", "duplicate key 'description'")],
    "bad-duration.yaml": [(8, "extensions[0].faults[0].at", "invalid duration '1x'")],
    "unknown-toxic-type.yaml": [
        (12, "extensions[0].faults[0].toxic", "'latancy' is not one of"),
    ],
    "fault-without-kind.yaml": [
        (7, "extensions[0].faults[0]", "a fault needs either a 'toxic' object or 'down: true'"),
    ],
    "unknown-proxy.yaml": [
        (10, "extensions[0].faults[0].proxy", "unknown proxy 'redsi' (known: redis); did you mean"),
    ],
    "duplicate-fault-id.yaml": [(8, "extensions[0].faults[1].id", "duplicate fault id 'slow'")],
    "overlapping-outages.yaml": [
        (8, "extensions[0].faults[1].at", "outage 'outage-2' overlaps outage 'outage-1'"),
    ],
    "bad-toxic-attributes.yaml": [
        (13, "extensions[0].faults[0].toxic.stream", "(got 'sideways')"),
        (14, "extensions[0].faults[0].toxic.toxicity", "less than or equal to 1"),
        (16, "extensions[0].faults[0].toxic.attributes.latency", "greater than or equal to 0"),
        (17, "extensions[0].faults[0].toxic.attributes.jiter", "did you mean 'jitter'?"),
    ],
    "bad-match.yaml": [
        (13, "extensions[0].faults[0].match.clients", "'tenant-a' is not an IP address"),
    ],
    "bad-safeguard.yaml": [
        (5, "extensions[0].safeguards[0]", "'error_rates' is not one of"),
    ],
    "dependency-cycle.yaml": [
        (5, "extensions[0].targets", "dependency cycle: gateway -> message -> gateway"),
    ],
    "probe-without-tolerance.yaml": [
        (5, "steady-state-hypothesis.probes[0].tolerance", "missing required key 'tolerance'"),
    ],
    "dangling-ref.yaml": [(6, "method[1].ref", "ref 'helth' names no activity")],
    "chaostoxi-bad-call.json": [
        (12, "method[0].provider.arguments", "needs argument 'for_proxy'"),
        (12, "method[0].provider.arguments.proxy_name", "did you mean 'for_proxy'?"),
        (21, "method[1].provider.func", "has no function 'remove_toxic'"),
    ],
    "ctk-refused.yaml": [
        (3, "secrets.a.x", "secrets from 'vault' are not supported by Aftershock: use {type: env"),
        (5, "configuration.d", "dynamic configuration (a probe whose output becomes the value)"),
        (8, "controls[0].provider.func", "hook functions (before_activity_control ...)"),
        (14, "steady-state-hypothesis.probes[0].tolerance", "a decimal tolerance (1.5) never"),
        (15, "steady-state-hypothesis.probes[0].provider.timeout", "must be finite (got inf)"),
        (18, "steady-state-hypothesis.probes[1].tolerance.path", "invalid JSON path '$['"),
        (22, "steady-state-hypothesis.probes[2].tolerance", "tolerance type 'foo' is not one"),
        (27, "method[0].secrets", "goes in its provider (provider.secrets: [scope, ...])"),
        (28, "method[0].timeout", "put 'timeout' in the provider (http or process)"),
        (30, "method[0].pauses.before", "must be finite (got nan)"),
        (30, "method[0].pauses.after", "a pause is a number of seconds (write 40, not '40s')"),
    ],
    "lease-lapses.yaml": [(4, "extensions[0].leases", "heartbeat must be at most half of ttl")],
}


def test_every_bad_file_has_expectations() -> None:
    assert sorted(p.name for p in BAD.iterdir()) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_file_reports_each_problem_where_it_is(name: str) -> None:
    exp, problems = check_file(BAD / name)
    assert exp is None
    got = [(p.line, p.path, p.message) for p in problems]
    assert len(got) == len(CASES[name]), got
    for line, path, fragment in CASES[name]:
        assert any(g[0] == line and g[1] == path and fragment in g[2] for g in got), (
            f"expected line {line} {path!r}: {fragment!r}; got {got}"
        )


def test_problems_in_different_sections_are_all_reported() -> None:
    # Schema errors do not hide cross-reference errors elsewhere in the file.
    text = (BAD / "dangling-ref.yaml").read_text() + "bogus: 1\n"
    path = BAD.parent / "tmp-combined.yaml"
    try:
        path.write_text(text)
        _, problems = check_file(path)
    finally:
        path.unlink()
    assert {p.path for p in problems} == {"method[1].ref", "bogus"}


def test_cli_exits_1_and_prints_file_line_path(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["validate", str(BAD / "bad-duration.yaml")])
    assert result.exit_code == 1
    assert f"{BAD / 'bad-duration.yaml'}:8:13: extensions[0].faults[0].at: invalid" in result.output
    assert "1 problem(s)" in result.output


def test_cli_json_output_lists_problems() -> None:
    import json

    result = CliRunner().invoke(app, ["validate", "--json", str(BAD / "chaostoxi-bad-call.json")])
    assert result.exit_code == 1
    rows = json.loads(result.stdout)
    assert [r["line"] for r in rows] == [12, 12, 21]


@pytest.mark.parametrize("name", ["chat-gameday.yaml", "chaostoxi-latency.json"])
def test_shipped_experiments_validate(name: str) -> None:
    path = ROOT / "experiments" / name
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output
    load_experiment(path)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("1m30s", 90.0),
        ("250ms", 0.25),
        ("2h", 7200.0),
        (12, 12.0),
        ("1.5", 1.5),
        ("1m 5s", 65.0),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1x", "s", "-3", True, "5 parsecs", "1m30"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration_s(text)
