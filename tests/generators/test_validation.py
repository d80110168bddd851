"""Bad load profile files and session scripts are rejected with the place and the reason."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from generators.errors import CapacityError, PlanError
from generators.limits import check_capacity
from generators.profile_file import ProfileFileError, load_run_file

if TYPE_CHECKING:
    from pathlib import Path

GOOD = """\
targets:
  - name: gw
    upstream: 127.0.0.1:8080
    protocol: ws
    path: /ws
  - name: echo
    upstream: 127.0.0.1:9000
    protocol: tcp
load:
  - target: gw
    tenants:
      - name: acme
        users: 2
    script:
{script}
"""


def write(tmp_path: Path, script: str, name: str = "p.yaml") -> Path:
    p = tmp_path / name
    p.write_text(GOOD.format(script=script))
    return p


def problems(path: Path) -> list[str]:
    with pytest.raises(ProfileFileError) as info:
        load_run_file(path)
    assert str(path) in str(info.value)
    return info.value.problems


def test_a_good_file_loads(tmp_path: Path) -> None:
    run = load_run_file(write(tmp_path, "      - do: connect\n      - do: send\n        count: 3"))
    assert run.load[0].script[1].do == "send"
    assert run.target("gw").path == "/ws"


def test_each_bad_step_is_named_with_its_line(tmp_path: Path) -> None:
    script = """\
      - do: connect
      - do: send
        count: 0
      - do: teleport
      - do: think
        min_ms: 10
        max_ms: 5
      - do: send
        size: {dist: uniform, min_bytes: 10, max_bytes: 5}"""
    got = problems(write(tmp_path, script))
    assert got == [
        "line 17: load[0].script[1].count: Input should be greater than or equal to 1",
        "line 18: load[0].script[2]: Input tag 'teleport' found using 'do' does not match any "
        "of the expected tags: 'connect', 'subscribe', 'send', 'think', 'disconnect'",
        "line 19: load[0].script[3]: Value error, min_ms must not exceed max_ms",
        "line 23: load[0].script[4].size: Value error, min_bytes must not exceed max_bytes",
    ]


def test_a_send_before_connect_is_rejected(tmp_path: Path) -> None:
    got = problems(write(tmp_path, "      - do: send\n      - do: connect"))
    assert len(got) == 1
    assert got == [
        "line 10: load[0]: Value error, script[0] (send) comes before the first connect step"
    ]


def test_a_script_the_target_cannot_run_names_the_step(tmp_path: Path) -> None:
    text = GOOD.format(script="      - do: connect\n      - do: send\n        expect: broadcast")
    p = tmp_path / "p.yaml"
    p.write_text(text.replace("target: gw", "target: echo"))
    got = problems(p)
    assert got == ["line 10: load[0]: script[1] (send): broadcast needs a WebSocket target"]


def test_unknown_target_and_json_files(tmp_path: Path) -> None:
    p = tmp_path / "p.json"
    p.write_text(
        json.dumps(
            {
                "targets": [{"name": "gw", "upstream": "127.0.0.1:1"}],
                "load": [{"target": "nope", "tenants": [{"name": "a", "users": 1}]}],
            },
            indent=1,
        )
    )
    got = problems(p)
    assert len(got) == 1
    assert got[0].endswith("load[0].target: unknown target 'nope' (known: gw)")
    assert got[0].startswith("line ")


def test_not_a_mapping_and_not_yaml(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("- 1\n- 2\n")
    assert problems(p) == ["the file must hold a mapping with 'targets' and 'load'"]
    p.write_text("targets: [\n")
    assert problems(p)[0].startswith("not valid YAML/JSON")


def test_capacity_names_the_processes_needed() -> None:
    with pytest.raises(CapacityError, match=r"--processes 3") as info:
        check_capacity(45_000, limit=20_000)
    assert isinstance(info.value, PlanError)
    check_capacity(19_000, limit=20_000)
