"""Run documents read from outside: the file ``aftershock generate`` reads, and the plan and the
statistics generators read back from Redis. A valid document reads back as written, in YAML or
any JSON spelling; any other bytes give the project's error naming the file (or key) and, for a
field gone bad, that field; never a traceback of the parser underneath."""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from typing import TYPE_CHECKING, Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from generators.distributed import Plan, stats_from_json
from generators.errors import CoordinationError
from generators.profile_file import ProfileFileError, RunFile, load_run_file
from generators.stats import GeneratorStats

if TYPE_CHECKING:
    from pathlib import Path

KEY = "aftershock:exp:gen:plan"

# -- valid documents ------------------------------------------------------------------------

hosts = st.sampled_from(["127.0.0.1", "localhost", "gw.internal", "10.0.0.7"])
texts = st.text(st.characters(codec="utf-8", exclude_characters="\x85"), min_size=1, max_size=12)
"""Any characters, astral ones too; but NEL, which PyYAML's writer leaves raw in a quoted
string, where YAML reads it as a line break (a writer's fault, not the reader's)."""


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(
        st.lists(st.sampled_from(["gw", "api", "echo"]), min_size=1, max_size=3, unique=True)
    )
    targets = []
    for name in names:
        protocol = draw(st.sampled_from(["ws", "http", "tcp"]))
        target: dict[str, Any] = {
            "name": name,
            "upstream": f"{draw(hosts)}:{draw(st.integers(1, 65535))}",
            "protocol": protocol,
        }
        if draw(st.booleans()):
            target["path"] = "/" + draw(st.text("abc/", max_size=6))
        targets.append(target)
    load = []
    for target in draw(st.lists(st.sampled_from(targets), min_size=1, max_size=2)):
        expect = "response" if target["protocol"] == "http" else "echo"
        send = {
            "do": "send",
            "count": draw(st.integers(1, 10**6)),
            "rate_per_s": draw(st.floats(1e-6, 10_000)),
            "expect": expect,
        }
        tenants = draw(st.lists(texts, min_size=1, max_size=3, unique=True))
        profile: dict[str, Any] = {
            "target": target["name"],
            "duration_s": draw(st.floats(1e-3, 1e9)),
            "tenants": [
                {
                    "name": t,
                    "users": draw(st.integers(1, 9)),
                    "channels": draw(st.lists(texts, max_size=2)),
                }
                for t in tenants
            ],
            "script": [{"do": "connect"}, send, {"do": "think", "max_ms": 5}, {"do": "disconnect"}],
        }
        if draw(st.booleans()):
            profile["seed"] = draw(st.integers(-(2**63), 2**63 - 1))
        load.append(profile)
    return {"targets": targets, "load": load}


def spelled(doc: Any, how: int) -> str:
    """``doc`` as YAML or as JSON, in one of the spellings writers use."""
    if how == 0:
        return yaml.safe_dump(doc, allow_unicode=True)
    if how == 1:
        return yaml.safe_dump(doc, allow_unicode=False, default_flow_style=True)
    indent: list[int | str | None] = [None, 2, "\t"]
    return json.dumps(doc, ensure_ascii=how % 2 == 0, indent=indent[how % 3])


spellings = st.integers(0, 7)

# -- documents with one field gone bad ------------------------------------------------------

ABSENT = object()
NASTY: list[Any] = [
    None, [], {}, {"zz": 1}, [[1]], -1, 0, 1.5, True, "", "x" * 201, "h:99999", "a..b:80",
    "[::1]:80", "1e400", "NaN",
]  # fmt: skip
Path_ = tuple[str | int, ...]


def paths(value: Any, at: Path_ = ()) -> list[Path_]:
    """Every place in ``value`` (below the root)."""
    out: list[Path_] = []
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, inner in items:
        out.append((*at, key))
        out.extend(paths(inner, (*at, key)))
    return out


def replaced(value: Any, at: Path_, new: Any) -> Any:
    if not at:
        return new
    head, rest = at[0], at[1:]
    if isinstance(value, dict):
        return {k: replaced(v, rest, new) if k == head else v for k, v in value.items()}
    return [replaced(v, rest, new) if i == head else v for i, v in enumerate(value)]


@st.composite
def garbled_documents(draw: st.DrawFn) -> tuple[dict[str, Any], Path_]:
    doc = draw(documents())
    at = draw(st.sampled_from(paths(doc)))
    return replaced(doc, at, draw(st.sampled_from(NASTY))), at


def dotted(at: Path_) -> str:
    out = ""
    for part in at:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def place_of(problem: str) -> str:
    """The place a problem names: ``line N: <place>: <what>`` or ``<place>: <what>``."""
    return re.sub(r"^line \d+: ", "", problem).split(": ", 1)[0]


def related(place: str, at: str) -> bool:
    """``place`` is ``at``, holds it or lies within it."""
    a, b = (place, at) if len(place) <= len(at) else (at, place)
    return b == a or b.startswith((a + ".", a + "["))


def names_the_field(problems: list[str], at: Path_, within: str = "") -> bool:
    field = dotted(at)
    if within:
        field = f"{within}.{field}"
    places = [place_of(p) for p in problems]
    if at[0] == "targets" and at[-1] == "name":
        # A target renamed leaves the profiles that named it without their target.
        places = [re.sub(r"^(run_file\.)?load\[\d+\]\.target$", field, p) for p in places]
    return any(p not in ("", "run_file") and related(p, field) for p in places)


def _load(path: Path) -> RunFile | ProfileFileError:
    try:
        return load_run_file(path)
    except ProfileFileError as exc:
        return exc


def _plan(raw: str | bytes) -> Plan | CoordinationError:
    try:
        return Plan.from_json(raw, KEY)
    except CoordinationError as exc:
        return exc


# -- the run file ----------------------------------------------------------------------------


def _write(tmp: Path, content: str | bytes) -> Path:
    path = tmp / "run.yaml"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(doc=documents(), how=spellings)
def test_a_valid_file_reads_as_written_in_yaml_or_any_json(
    tmp_path_factory: Any, doc: dict[str, Any], how: int
) -> None:
    path = _write(tmp_path_factory.mktemp("run"), spelled(doc, how))
    assert load_run_file(path) == RunFile.model_validate(doc)


@SETTINGS
@given(garbled=garbled_documents(), how=spellings)
@example(garbled=({"targets": [{"name": "gw", "upstream": "h:80"}], "load": "x"}, ("load",)), how=5)
def test_a_field_gone_bad_is_named_with_the_file(
    tmp_path_factory: Any, garbled: tuple[dict[str, Any], Path_], how: int
) -> None:
    doc, at = garbled
    path = _write(tmp_path_factory.mktemp("run"), spelled(doc, how))
    got = _load(path)
    if isinstance(got, ProfileFileError):
        assert str(got).startswith(f"{path}: invalid load profile file:\n")
        assert names_the_field(got.problems, at), (dotted(at), got.problems)


@SETTINGS
@given(
    content=st.binary(max_size=300)
    | st.text(max_size=300).map(str.encode)
    | st.tuples(documents(), spellings, st.integers(min_value=0), st.binary(max_size=3)).map(
        lambda t: (s := spelled(t[0], t[1]).encode())[: t[2] % (len(s) + 1)] + t[3]
    )
)
@example(content=b"\xff\xfe" + "targets: []".encode("utf-16-le"))
@example(content=b"[" * 5000 + b"]" * 5000)
@example(content=b"{a: " * 3000 + b"1" + b"}" * 3000)
@example(content=b"a: &a [*a, *a]\n")
@example(content=b"targets: \x00")
@example(content=b"")
def test_any_bytes_load_or_give_the_file_error(tmp_path_factory: Any, content: bytes) -> None:
    path = _write(tmp_path_factory.mktemp("run"), content)
    got = _load(path)
    if isinstance(got, ProfileFileError):
        assert str(got).startswith(f"{path}: invalid load profile file:\n")
        assert got.problems


# -- what is read back from Redis ---------------------------------------------------------------


OPTIONS = st.fixed_dictionaries(
    {
        "events": st.sampled_from(["kafka", "jsonl", "none"]),
        "kafka_bootstrap": st.none() | st.just("127.0.0.1:9092"),
    }
)


@settings(max_examples=100, deadline=None)
@given(doc=documents(), members=st.integers(1, 1000), options=OPTIONS)
def test_a_plan_reads_back_as_written(
    doc: dict[str, Any], members: int, options: dict[str, Any]
) -> None:
    plan = Plan(run_file=doc, members=members, options=options)
    assert Plan.from_json(plan.to_json(), KEY) == plan
    # As the coordinator writes it: the run file it read, every default spelled out.
    dumped = Plan(RunFile.model_validate(doc).model_dump(mode="json"), members, options)
    assert Plan.from_json(dumped.to_json(), KEY) == dumped


@settings(max_examples=200, deadline=None)
@given(garbled=garbled_documents(), members=st.integers(1, 9), options=OPTIONS)
def test_a_plan_whose_run_file_went_bad_names_the_key_and_the_field(
    garbled: tuple[dict[str, Any], Path_], members: int, options: dict[str, Any]
) -> None:
    doc, at = garbled
    raw = json.dumps({"run_file": doc, "members": members, "options": options})
    got = _plan(raw)
    if isinstance(got, CoordinationError):
        head, _, rest = str(got).partition(": invalid run file:\n  ")
        assert head == KEY
        assert names_the_field(rest.split("\n  "), at, within="run_file"), (dotted(at), str(got))


@settings(max_examples=200, deadline=None)
@given(
    raw=st.binary(max_size=200)
    | st.builds(
        lambda parts: json.dumps(parts).encode(),
        st.dictionaries(
            st.sampled_from(["run_file", "members", "options", "x"]),
            st.sampled_from(NASTY) | OPTIONS | documents() | st.integers(-5, 5),
        ),
    )
)
@example(raw=b'{"run_file": {}, "members": true, "options": {}}')
@example(raw=b'{"run_file": {}, "members": 1, "options": {"events": "smoke"}}')
@example(raw=b"[" * 2000)
def test_any_plan_bytes_give_a_plan_or_the_coordination_error(raw: bytes) -> None:
    got = _plan(raw)
    if isinstance(got, CoordinationError):
        assert str(got).startswith(f"{KEY}: ")
    else:
        assert got.members >= 1
        RunFile.model_validate(got.run_file)


counts = st.integers(0, 2**63 - 1)
numbers = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53)
stats = st.builds(
    GeneratorStats,
    **{
        name: counts if kind is int else numbers if kind is float else st.none() | numbers
        for name, kind in typing.get_type_hints(GeneratorStats).items()
    },
)
HB = "aftershock:exp:gen:hb:g1"


def _stats(raw: str | bytes) -> GeneratorStats | CoordinationError:
    try:
        return stats_from_json(raw, HB)
    except CoordinationError as exc:
        return exc


@settings(max_examples=100, deadline=None)
@given(stats)
def test_statistics_read_back_as_written(written: GeneratorStats) -> None:
    assert stats_from_json(json.dumps(dataclasses.asdict(written)), HB) == written


@settings(max_examples=200, deadline=None)
@given(
    written=stats,
    field=st.sampled_from([f.name for f in dataclasses.fields(GeneratorStats)]),
    value=st.sampled_from([*NASTY, ABSENT]),
)
def test_statistics_with_a_field_gone_bad_name_the_key_and_the_field(
    written: GeneratorStats, field: str, value: Any
) -> None:
    data = dataclasses.asdict(written)
    if value is ABSENT:
        del data[field]
    else:
        data[field] = value
    got = _stats(json.dumps(data))
    if isinstance(got, CoordinationError):
        assert str(got).startswith(f"{HB}: {field}: ")
    else:
        assert dataclasses.asdict(got) == data


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
@example(b"[" * 2000)
@example(b'{"elapsed_s": NaN}')
def test_any_statistics_bytes_give_statistics_or_the_coordination_error(raw: bytes | str) -> None:
    got = _stats(raw)
    if isinstance(got, CoordinationError):
        assert str(got).startswith(f"{HB}: ")
