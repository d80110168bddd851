"""The analyzer configuration file (``--config`` of ``aftershock analyze`` and ``replay``): a
configuration written as YAML or JSON reads back the same, and anything else is an
``InputError`` naming the file and what is wrong."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from analyzers.cli import load_config
from analyzers.core import AnalyzerConfig
from analyzers.errors import InputError
from schemas.experiment import Slo
from tests.analyzers.configs import configs

if TYPE_CHECKING:
    from pathlib import Path

    from tests.processes import Processes


def _outcome(path: Path) -> tuple[AnalyzerConfig | None, str | None]:
    try:
        return load_config(path), None
    except InputError as exc:
        return None, str(exc)


@settings(max_examples=100, deadline=None)
@given(config=configs, as_yaml=st.booleans())
def test_a_configuration_reads_back_as_written(
    tmp_path_factory: pytest.TempPathFactory, config: AnalyzerConfig, as_yaml: bool
) -> None:
    path = tmp_path_factory.mktemp("config") / ("analysis.yaml" if as_yaml else "analysis.json")
    doc = config.model_dump(mode="json")
    path.write_text(yaml.safe_dump(doc) if as_yaml else json.dumps(doc), encoding="utf-8")
    assert load_config(path) == config


@settings(max_examples=300, deadline=None)
@given(content=st.text(max_size=80).map(str.encode) | st.binary(max_size=80))
def test_any_file_is_a_configuration_or_an_error_naming_it(
    tmp_path_factory: pytest.TempPathFactory, content: bytes
) -> None:
    path = tmp_path_factory.mktemp("config") / "analysis.yaml"
    path.write_bytes(content)
    config, message = _outcome(path)
    assert isinstance(config, AnalyzerConfig) or message is not None
    assert message is None or message.startswith(f"{path}: "), message


# YAML that reads as something other than a mapping of settings, or not at all.
yaml_scalars = (
    st.integers().map(str)
    | st.sampled_from(["true", "no", "~", "[]", "- a", "'text'", "2024-01-01", "1.5", ".inf"])
    | st.from_regex(r"\A(19|20)\d\d-(0[1-9]|1[0-2])-([0-2]\d|3[01])\Z")
)


@settings(max_examples=200, deadline=None)
@given(
    key=st.none() | st.sampled_from(["reply_timeout_s", "health", "slos", "x"]), value=yaml_scalars
)
def test_values_yaml_cannot_make_or_the_model_refuses_are_named(
    tmp_path_factory: pytest.TempPathFactory, key: str | None, value: str
) -> None:
    path = tmp_path_factory.mktemp("config") / "analysis.yaml"
    path.write_text(value if key is None else f"{key}: {value}\n", encoding="utf-8")
    config, message = _outcome(path)
    if key is None and value != "~":  # the whole file: a mapping or nothing, else refused
        assert message is not None, config
        assert message.startswith(f"{path}: "), message
    elif message is not None:
        assert message.startswith(f"{path}: "), message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", None),
        ("# nothing set\n", None),
        ("[1, 2]\n", "an analyzer configuration is a mapping of settings, not a list"),
        ("0\n", "an analyzer configuration is a mapping of settings, not a number"),
        ("'{}'\n", "an analyzer configuration is a mapping of settings, not text"),
        ("health: {window_s: 0}\n", "health.window_s: Input should be greater than 0"),
        ("health: {window_s: .inf}\n", "health.window_s: Input should be a finite number"),
        ("slos: [{p99_max_ms: fast}]\n", "slos.0.p99_max_ms: Input should be a valid number"),
        ("reply_timeout: 5\n", "reply_timeout: Extra inputs are not permitted"),
        ("baseline_phase: 2024-13-45\n", "a value cannot be read: ValueError('month must be"),
        ("a: !!bool maybe\n", "a value cannot be read: KeyError('maybe')"),
        ("{\n", "while parsing a flow node"),
        ("a: !!python/name:os.system\n", "could not determine a constructor"),
        ("[" * 1000 + "]" * 1000, "nested too deeply"),
    ],
)
def test_bad_configuration_files_are_named(
    tmp_path: Path, content: str, expected: str | None
) -> None:
    path = tmp_path / "analysis.yaml"
    path.write_text(content, encoding="utf-8")
    if expected is None:
        assert load_config(path) == AnalyzerConfig()
        return
    with pytest.raises(InputError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: {expected}"), caught.value


def test_an_unreadable_configuration_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=f"cannot read {tmp_path}: Is a directory"):
        load_config(tmp_path)


def test_replay_with_a_bad_configuration_exits_2_naming_it(
    tmp_path: Path, procs: Processes
) -> None:
    config = tmp_path / "analysis.yaml"
    config.write_text("baseline_phase: 2024-13-45\n", encoding="utf-8")
    events = tmp_path / "events.jsonl"
    events.write_text("")
    done = procs.run(
        [sys.executable, "-m", "aftershock.cli.main", "replay", "exp",
         "--from-file", str(events), "--config", str(config)],
        text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: {config}: a value cannot be read: "), done.stderr
    assert "Traceback" not in done.stderr


def test_an_experiments_slo_is_finite_as_the_configuration_it_becomes() -> None:
    with pytest.raises(ValidationError, match="p99_latency_ms\n  Input should be a finite number"):
        Slo.model_validate({"target": "api", "p99_latency_ms": float("inf")})
