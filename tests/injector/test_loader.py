"""The experiment loader on hostile input: every failure is a message with a line, never a
traceback, within bounded time and memory."""

from __future__ import annotations

import json
import resource
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from aftershock.cli.main import app
from injector.document import MAX_BYTES, parse_text
from injector.validate import check_document, check_file

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p for p in (ROOT / "experiments").iterdir() if p.suffix in (".yaml", ".json"))
LAUGHS = "\n".join(
    [f"a0: &a0 [{', '.join(['x'] * 9)}]"]
    + [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 10)]
)


def _bounded(text: str, *, json_first: bool = False, trace: bool = True) -> list[str]:
    """Validate ``text``; the messages. Fails when it takes over 5 s or (``trace``) allocates
    over 64 MB at its peak."""
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    try:
        exp, problems = check_document(parse_text(text, json_first=json_first))
    finally:
        if trace:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    assert time.perf_counter() - t0 < 5.0
    if trace:
        assert peak < 64 << 20, f"peak {peak >> 20} MB"
    assert exp is not None or problems
    for p in problems:
        assert p.message
    return [p.render() for p in problems]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('title: "a\x1bb"\n', ":1:10: <top>: not valid YAML: character '\\x1b' is not allowed"),
        ("title: &a [*a]\n", ":1:8: <top>: too complex: an alias refers to the anchor"),
        ("title: " + "1" * 5000 + "\n", ":1:8: <top>: too complex: a number longer than 100"),
        (LAUGHS, "too complex: the document expands to more than 100000 values"),
        ("title: " + "[" * 5000 + "\n", "too complex: nested more than 64 levels deep"),
        ("a:\n" + "".join(" " * n + "- \n" for n in range(1, 200)), "nested more than 64"),
        ("<<: &a {<<: *a}\n", "too complex: a '<<' merge includes the mapping it is in"),
        ("a: &a {x: 1}\nb: &b {<<: *a, y: *b}\n", ":2:4: <top>: too complex: an alias refers"),
        ("? [a, b]\n: 1\n", "mapping keys must be plain text"),
        ("title: x\n" + "#" * (MAX_BYTES + 1), f"the file is larger than {MAX_BYTES} bytes"),
    ],
)
def test_hostile_yaml_is_refused_with_a_message(text: str, expected: str) -> None:
    messages = _bounded(text)
    assert any(expected in m for m in messages), messages


def _with_fault(at: str, duration: str) -> str:
    return f"""title: t
extensions:
  - name: aftershock
    targets: [{{name: db, upstream: "127.0.0.1:1", proxy: db, listen: "127.0.0.1:0"}}]
    faults:
      - {{id: f, at: {at}, duration: {duration}, proxy: db, down: true}}
"""


@pytest.mark.parametrize(
    ("at", "duration", "expected"),
    [
        (".nan", "1", "faults[0].at: a number of seconds must be finite (got nan)"),
        ("1", ".inf", "faults[0].duration: a number of seconds must be finite (got inf)"),
        ("1e400", "1", "faults[0].at: a number of seconds must be finite (got '1e400')"),
        ("1", "'1e400'", "faults[0].duration: a number of seconds must be finite"),
        ("1", "999999999", "faults[0].duration: 1e+09 seconds is more than a year"),
        ("-.inf", "1", "faults[0].at: a number of seconds must be finite (got -inf)"),
    ],
)
def test_non_finite_seconds_are_refused(at: str, duration: str, expected: str) -> None:
    messages = _bounded(_with_fault(at, duration))
    assert any(expected in m for m in messages), messages


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"title": "t", "method": [{"type": "action", "name": "a", "provider": '
            '{"type": "process", "path": "ls", "timeout": NaN}}]}',
            "timeout: Chaos Toolkit wants a number of seconds here (write 40, not 'NaN')",
        ),
        ('{"title": ' + "[" * 5000 + "]" * 5000 + "}", "nested"),
        ('{"title": 1' + "0" * 5000 + "}", "number longer than 100"),
    ],
)
def test_hostile_json_is_refused_with_a_message(text: str, expected: str) -> None:
    messages = _bounded(text, json_first=True)
    assert any(expected in m for m in messages), messages


# --- mutations of the shipped experiments -----------------------------------------------

NASTY = [
    "\x00", "\x1b", "\t", "\ufeff", "&a ", "*a", "&b [*b]", "<<: *a", "!!python/object:os.system",
    "!!binary", "? ", ": ", "- ", "{", "}", "[", "]", '"', "'", "|", ">", "#", "%YAML 1.1\n",
    "---\n", "...\n", ".nan", ".inf", "-.inf", "1e400", "9" * 200, "-1", "0x1f", "0o17",
    "2001-12-14", "~", "null", "yes", "\n  ", "\n- ", "${x}", "\\u0000", "\U0001f4a5",
]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bool]:
    path = draw(st.sampled_from(SHIPPED))
    text = path.read_text()
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "duplicate", "replace-number", "nest"]))
        if op == "insert":
            piece = draw(st.sampled_from(NASTY) | st.text(max_size=8))
            text = text[:at] + piece + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)) :]
        elif op == "duplicate":
            end = at + draw(st.integers(1, 200))
            text = text[:end] + text[at:end] * draw(st.integers(1, 50)) + text[end:]
        elif op == "replace-number":
            digits = [i for i, c in enumerate(text) if c.isdigit()]
            if digits:
                i = draw(st.sampled_from(digits))
                new = draw(st.sampled_from([".nan", ".inf", "-1", "1e400", "9" * 500, "'40s'"]))
                text = text[:i] + new + text[i + 1 :]
        else:
            depth = draw(st.integers(1, 300))
            text = text[:at] + "[" * depth + "1" + "]" * depth + text[at:]
    return text, path.suffix == ".json"


@settings(
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated())
def _validate_ends_with_a_message(case: tuple[str, bool]) -> None:
    text, is_json = case
    _bounded(text, json_first=is_json, trace=False)
    _seen.append(1)


_seen: list[int] = []


def test_validate_always_ends_with_a_message() -> None:
    """2000 mutated files: never a traceback, each within 5 s, and the process's peak memory
    grows by less than 256 MB over all of them (tracing every allocation would be too slow;
    the single worst cases are traced above)."""
    before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _seen.clear()
    _validate_ends_with_a_message()
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kb) / 1024
    assert len(_seen) >= 2000
    assert grown_mb < 256, grown_mb


def test_validate_command_on_hostile_files_prints_messages(tmp_path: Path) -> None:
    runner = CliRunner()
    for n, text in enumerate(
        ['title: "a\x1bb"\n', "title: &a [*a]\n", LAUGHS, _with_fault(".nan", "1")]
    ):
        f = tmp_path / f"bad-{n}.yaml"
        f.write_text(text)
        result = runner.invoke(app, ["validate", str(f)])
        assert result.exit_code == 1
        assert not isinstance(result.exception, Exception) or isinstance(
            result.exception, SystemExit
        ), result.exception
        assert "problem(s)" in result.output
        assert "Traceback" not in result.output


def test_shipped_experiments_are_valid() -> None:
    for path in SHIPPED:
        if path.name == "chat-proxies.json":
            continue  # proxy configuration for `aftershock proxy serve`, not an experiment
        exp, problems = check_file(path)
        assert exp is not None, [p.render(str(path)) for p in problems]
        assert json.dumps(exp.as_loaded())


def test_a_file_that_is_not_utf8_is_named_with_its_line(tmp_path: Path) -> None:
    f = tmp_path / "latin1.yaml"
    f.write_bytes('title: t\ndescription: "caf\xe9"\n'.encode("latin-1"))
    exp, problems = check_file(f)
    assert exp is None
    assert [p.render() for p in problems] == [
        ":2:18: <top>: the file is not UTF-8 text (byte 0xe9)"
    ]
