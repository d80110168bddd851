"""The same Chaos Toolkit experiments under real ``chaos run`` and ``aftershock injector run``.

A small HTTP service logs every request as received; both runners go through the same
experiment (secrets, controls, every tolerance type, chaostoxi actions on our fault proxy), and
what the service received, what the providers and controls were called with and what the
journals say must be the same. chaostoolkit-reporting then renders our journal.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from .sut import STATUS_BODY, Received, RunningSut

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.processes import Processes

    from .sut import Sut

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TOKEN = "s3cr3t-token"
TOOLS = ("chaos", "aftershock")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def sut() -> Iterator[Sut]:
    with RunningSut() as s:
        yield s


@dataclass
class Outcome:
    code: int
    output: str
    journal: dict[str, Any]
    received: list[Received]
    audit: list[dict[str, Any]]
    recorded: list[dict[str, Any]]


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def _run(
    procs: Processes, argv: list[str], cwd: Path, env: dict[str, str]
) -> tuple[int, str]:
    proc = await procs.exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(240):
        out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def run_both(
    procs: Processes,
    experiment: Path,
    tmp_path: Path,
    sut: Sut,
    api_url: str,
    extra_env: dict[str, str],
    *,
    exist_ok: bool = False,
) -> dict[str, Outcome]:
    host, port = api_url.removeprefix("http://").rsplit(":", 1)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AFTERSHOCK_")},
        "PYTHONPATH": str(ROOT),
        "API_TOKEN": TOKEN,
        "API_HOST": sut.host,
        "API_PORT": str(sut.port),
        "TOXIPROXY_HOST": host,
        "TOXIPROXY_PORT": port,
        **extra_env,
    }
    out: dict[str, Outcome] = {}
    for tool in TOOLS:
        where = tmp_path / tool
        where.mkdir(exist_ok=exist_ok)
        journal = where / "journal.json"
        env["PROXY_PORT"] = str(_free_port())
        if tool == "chaos":
            argv = [str(BIN / "chaos"), "--no-log-file", "run", "--journal-path", str(journal)]
            argv.append(str(experiment))
        else:
            argv = [str(BIN / "aftershock"), "injector", "run", str(experiment)]
            argv += ["--journal", str(journal), "--toxiproxy-url", api_url]
        code, output = await _run(procs, argv, where, env)
        assert journal.exists(), output
        out[tool] = Outcome(
            code,
            output,
            json.loads(journal.read_text()),
            sut.take(),
            _lines(where / "ctk-audit.jsonl"),
            _lines(where / "recorded.jsonl"),
        )
    return out


SENT_HEADERS = ("Authorization", "X-Static", "X-Client", "Content-Type")


def _request(r: Received) -> tuple[Any, ...]:
    headers = {k: v for k, v in r.headers if k in SENT_HEADERS}
    return (r.method, r.path, r.query, headers, r.body)


def _output(value: Any) -> Any:
    if isinstance(value, dict) and isinstance(value.get("headers"), dict):
        headers = {k: v for k, v in value["headers"].items() if k != "Date"}
        return {**value, "headers": headers}
    return value


def _runs(runs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (r["activity"].get("name"), r["status"], r.get("tolerance_met"), _output(r["output"]))
        for r in runs
    ]


def _summary(j: dict[str, Any]) -> dict[str, Any]:
    ss = j["steady_states"]
    return {
        "status": j["status"],
        "deviated": j["deviated"],
        "before": _runs(ss["before"]["probes"]) if ss["before"] else None,
        "before_met": ss["before"]["steady_state_met"] if ss["before"] else None,
        "after": _runs(ss["after"]["probes"]) if ss["after"] else None,
        "after_met": ss["after"]["steady_state_met"] if ss["after"] else None,
        "run": _runs(j["run"]),
        "rollbacks": _runs(j["rollbacks"]),
    }


def _same_shape(ours: Any, theirs: Any, where: str = "") -> None:
    """Every key chaostoolkit-lib wrote is in ours, never null where theirs is not."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), where
        for k, v in theirs.items():
            if where == ".experiment" and k == "dry":
                continue  # chaos run's --dry option, which it records in the experiment
            if where.endswith(".tolerance.provider.arguments") and k == "value":
                continue  # the probed value chaostoolkit-lib writes into the experiment
            assert k in ours, f"{where}.{k} missing from our journal"
            _same_shape(ours[k], v, f"{where}.{k}")
        for k, v in ours.items():
            if k not in theirs and not k.startswith("aftershock"):
                assert v is not None, f"{where}.{k} is null where chaostoolkit-lib omits it"
    elif isinstance(theirs, list) and isinstance(ours, list) and len(ours) == len(theirs):
        for n, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            _same_shape(a, b, f"{where}[{n}]")
    elif theirs is not None:
        assert ours is not None, f"{where} is null in our journal"


def _http(path: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "url": "http://${api_host}:${api_port}" + path,
        "headers": {
            "Authorization": "Bearer ${token}",
            "X-Static": "${static}",
            "X-Client": "${client}",
        },
        "timeout": 5,
        **extra,
    }


def _py(func: str, **arguments: Any) -> dict[str, Any]:
    return {
        "type": "python",
        "module": "tests.injector.ctkmod",
        "func": func,
        "arguments": arguments,
    }


def _probe(name: str, provider: dict[str, Any], tolerance: Any = None) -> dict[str, Any]:
    out = {"type": "probe", "name": name, "provider": provider}
    if tolerance is not None:
        out["tolerance"] = tolerance
    return out


def _action(name: str, provider: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "action", "name": name, "provider": provider, **extra}


def _toxi(module: str, func: str, **arguments: Any) -> dict[str, Any]:
    return {"type": "python", "module": f"chaostoxi.{module}", "func": func, "arguments": arguments}


def every_feature() -> dict[str, Any]:
    """Secrets (env, inline) in headers, arguments and a provider's ``secrets``; a top-level
    control and an activity's own control; every tolerance type; chaostoxi actions."""
    status = _http("/status")
    return {
        "title": "Every Chaos Toolkit feature Aftershock runs",
        "description": "Secrets, controls, every tolerance type and chaostoxi actions.",
        "configuration": {
            "api_host": {"type": "env", "key": "API_HOST"},
            "api_port": {"type": "env", "key": "API_PORT", "env_var_type": "int"},
            "toxiproxy_host": {"type": "env", "key": "TOXIPROXY_HOST"},
            "toxiproxy_port": {"type": "env", "key": "TOXIPROXY_PORT"},
            "proxy_port": {"type": "env", "key": "PROXY_PORT", "env_var_type": "int"},
            "static": "static-value",
            "two": 2,
            "pause": 0.05,
            "read": 5,
        },
        "secrets": {
            "api": {"token": {"type": "env", "key": "API_TOKEN"}, "client": "client-7"},
            "other": {"flag": "on"},
        },
        "controls": [
            {
                "name": "audit",
                "provider": {
                    "type": "python",
                    "module": "injector.audit_control",
                    "arguments": {"path": "ctk-audit.jsonl"},
                },
            }
        ],
        "steady-state-hypothesis": {
            "title": "Every tolerance holds",
            "probes": [
                _probe("bool", _py("truthy"), True),
                _probe("int-status", status, 200),
                _probe("string", _py("echo", text="${static}"), "${static}"),
                _probe("list-of-statuses", status, [200, 204]),
                _probe("list-as-bounds", _py("number"), [1, 10]),
                _probe(
                    "regex",
                    _http("/text"),
                    {"type": "regex", "pattern": r"v1\.\d+\.\d+", "target": "body"},
                ),
                _probe(
                    "jsonpath-expect",
                    status,
                    {
                        "type": "jsonpath",
                        "path": "$.items[*].id",
                        "expect": [1, 2],
                        "target": "body",
                    },
                ),
                _probe(
                    "jsonpath-count",
                    status,
                    {"type": "jsonpath", "path": "$.items[*]", "count": "${two}", "target": "body"}
                    | {"count": 2},
                ),
                _probe("range", status, {"type": "range", "range": [200, 299], "target": "status"}),
                _probe(
                    "probe-tolerance",
                    status,
                    {
                        "type": "probe",
                        "name": "status-is-200",
                        "provider": _py("status_is", expected=200),
                    },
                ),
            ],
        },
        "method": [
            _action(
                "provider-secrets",
                _py("record", label="with-secrets", path="recorded.jsonl", arg="${token}")
                | {"secrets": ["api"]},
                controls=[
                    {
                        "name": "own-audit",
                        "provider": {
                            "type": "python",
                            "module": "injector.audit_control",
                            "arguments": {"path": "ctk-audit.jsonl"},
                        },
                    }
                ],
            ),
            _action(
                "no-provider-secrets",
                _py("record", label="without", path="recorded.jsonl", arg="${flag}"),
            ),
            _action(
                "post-json",
                _http("/echo", method="POST", arguments={"token": "${token}", "n": "${two}"})
                | {"headers": {"Content-Type": "application/json", "X-Static": "${static}"}},
            ),
            _action(
                "post-form",
                _http(
                    "/echo", method="POST", arguments={"client": "${client}", "s": "x ${static}"}
                ),
            ),
            _action(
                "get-query",
                _http(
                    "/status", arguments={"q": "${client}"}, timeout=[3, "${read}"], max_retries=1
                ),
                pauses={"before": "${pause}", "after": 0.05},
            ),
            _action(
                "process-argv",
                {
                    "type": "process",
                    "path": "echo",
                    "arguments": ["--token", "${token}", "", "${two}"],
                },
            ),
            _action(
                "process-shell",
                {"type": "process", "path": "echo", "arguments": "hello ${client}"},
            ),
            _action(
                "create-proxy",
                _toxi(
                    "proxy.actions",
                    "create_proxy",
                    proxy_name="sut",
                    upstream_host="${api_host}",
                    upstream_port="${api_port}",
                    listen_host="127.0.0.1",
                    listen_port="${proxy_port}",
                ),
            ),
            _action(
                "add-latency",
                _toxi(
                    "toxic.actions",
                    "create_latency_toxic",
                    for_proxy="sut",
                    toxic_name="sut-latency",
                    latency=200,
                ),
            ),
            _probe(
                "through-latency",
                {**status, "url": "http://127.0.0.1:${proxy_port}/status"},
            ),
        ],
        "rollbacks": [
            _action(
                "remove-latency",
                _toxi("toxic.actions", "delete_toxic", for_proxy="sut", toxic_name="sut-latency"),
            ),
            _action("remove-proxy", _toxi("proxy.actions", "delete_proxy", proxy_name="sut")),
        ],
    }


@pytest.mark.slow
async def test_every_feature_runs_the_same_under_both_runners(
    tmp_path: Path, sut: Sut, proxy: Any, procs: Processes
) -> None:
    experiment = tmp_path / "every-feature.yaml"
    experiment.write_text(yaml.safe_dump(every_feature(), sort_keys=False))
    got = await run_both(procs, experiment, tmp_path, sut, proxy.api_url, {})
    chaos, ours = got["chaos"], got["aftershock"]
    assert chaos.code == 0, chaos.output
    assert ours.code == 0, ours.output
    assert chaos.journal["status"] == "completed", chaos.output

    # What the service received: the same requests, secrets substituted, names as sent.
    assert [_request(r) for r in ours.received] == [_request(r) for r in chaos.received]
    first = ours.received[0]
    assert first.header("Authorization") == f"Bearer {TOKEN}"
    assert ("X-Static", "static-value") in first.headers
    assert ("X-Client", "client-7") in first.headers
    posts = [r for r in ours.received if r.method == "POST"]
    assert posts[0].body == {"token": TOKEN, "n": 2}
    assert posts[1].body == {"client": ["client-7"], "s": ["x static-value"]}
    assert [r.query for r in ours.received if r.query] == [{"q": ["client-7"]}]
    through = [r for r in ours.received if r.path == "/status"][-1]
    assert through.header("Authorization") == f"Bearer {TOKEN}"

    # What the Python providers were called with.
    assert ours.recorded == chaos.recorded
    assert ours.recorded == [
        {
            "label": "with-secrets",
            "arg": TOKEN,
            "secrets": {"token": TOKEN, "client": "client-7"},
            "static": "static-value",
        },
        {"label": "without", "arg": "on", "secrets": None, "static": "static-value"},
    ]

    # The controls: the same hooks, in the same order, with the same states.
    assert ours.audit == chaos.audit
    hooks = [a["hook"] for a in ours.audit]
    assert hooks[:3] == ["configure_control", "configure_control", "before_experiment_control"]
    assert hooks[-2:] == ["cleanup_control", "cleanup_control"] or hooks[-1] == "cleanup_control"
    assert ours.audit[0]["secret_scopes"] == ["api", "other"]
    own = [a for a in ours.audit if a["context"] == "provider-secrets"]
    assert [a["hook"] for a in own] == [
        "before_activity_control",
        "before_activity_control",
        "after_activity_control",
        "after_activity_control",
    ]

    # The journals say the same.
    assert _summary(ours.journal) == _summary(chaos.journal)
    before = ours.journal["steady_states"]["before"]["probes"]
    assert [p["tolerance_met"] for p in before] == [True] * 10
    theirs = {k: v for k, v in chaos.journal["experiment"].items() if k != "dry"}
    # chaostoolkit-lib writes the last probed value into a probe tolerance's arguments (it
    # mutates the experiment); ours stays as loaded.
    for probe in theirs["steady-state-hypothesis"]["probes"]:
        tolerance = probe.get("tolerance")
        if isinstance(tolerance, dict) and tolerance.get("type") == "probe":
            tolerance["provider"]["arguments"].pop("value")
    assert ours.journal["experiment"] == theirs
    _same_shape(ours.journal, chaos.journal)
    latency = {r["activity"]["name"]: r["duration"] for r in ours.journal["run"]}
    assert latency["through-latency"] >= 0.2
    out = {r["activity"]["name"]: r["output"] for r in ours.journal["run"]}
    assert out["process-argv"]["stdout"] == f"--token {TOKEN} 2\n"
    assert out["process-shell"]["stdout"] == "hello client-7\n"
    assert out["get-query"]["body"] == STATUS_BODY
    assert "X-Served-By" in out["get-query"]["headers"]


@pytest.mark.slow
async def test_shipped_ctk_experiment_runs_the_same_under_both_runners(
    tmp_path: Path, sut: Sut, proxy: Any, procs: Processes
) -> None:
    experiment = ROOT / "experiments" / "ctk-secrets-controls.yaml"
    got = await run_both(procs, experiment, tmp_path, sut, proxy.api_url, {})
    chaos, ours = got["chaos"], got["aftershock"]
    assert chaos.code == 0, chaos.output
    assert ours.code == 0, ours.output
    assert [_request(r) for r in ours.received] == [_request(r) for r in chaos.received]
    assert {r.header("Authorization") for r in ours.received} == {f"Bearer {TOKEN}"}
    assert {r.header("X-Client") for r in ours.received} == {"ctk-gameday"}
    assert ours.audit == chaos.audit
    assert len(ours.audit) > 10
    assert _summary(ours.journal) == _summary(chaos.journal)
    _same_shape(ours.journal, chaos.journal)


_RENDER = """
import json, sys, warnings
warnings.simplefilter("ignore", DeprecationWarning)  # reporting calls a deprecated semver API
from chaosreport import generate_report
print(generate_report(json.load(open(sys.argv[1])), "markdown"))
"""


@pytest.mark.slow
async def test_chaostoolkit_reporting_renders_our_journal(
    tmp_path: Path, sut: Sut, proxy: Any, procs: Processes
) -> None:
    experiment = ROOT / "experiments" / "ctk-secrets-controls.yaml"
    where = tmp_path / "ours"
    where.mkdir()
    env = {
        **os.environ,
        "API_TOKEN": TOKEN,
        "API_HOST": sut.host,
        "API_PORT": str(sut.port),
        "PROXY_PORT": str(_free_port()),
    }
    code, output = await _run(
        procs,
        [
            str(BIN / "aftershock"),
            "injector",
            "run",
            str(experiment),
            "--journal",
            str(where / "journal.json"),
            "--toxiproxy-url",
            proxy.api_url,
        ],
        where,
        env,
    )
    assert code == 0, output
    journal = json.loads((where / "journal.json").read_text())
    # In its own interpreter: chaostoolkit-reporting imports pygal, which installs an import
    # hook that makes every later import warn (and this suite turns warnings into errors).
    code, report = await _run(
        procs, [sys.executable, "-c", _RENDER, str(where / "journal.json")], where, env
    )
    assert code == 0, report
    assert journal["experiment"]["title"] in report
    for name in ("api-answers", "proxy-the-api", "api-through-latency"):
        assert name in report


@pytest.mark.slow
async def test_aftershock_run_runs_a_plain_ctk_experiment(
    tmp_path: Path, sut: Sut, proxy: Any, procs: Processes
) -> None:
    """``aftershock run`` on a file with no load or faults runs it as ``injector run``."""
    experiment = ROOT / "experiments" / "ctk-secrets-controls.yaml"
    host, port = proxy.api_url.removeprefix("http://").rsplit(":", 1)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AFTERSHOCK_")},
        "API_TOKEN": TOKEN,
        "API_HOST": sut.host,
        "API_PORT": str(sut.port),
        "TOXIPROXY_HOST": host,
        "TOXIPROXY_PORT": port,
        "PROXY_PORT": str(_free_port()),
    }
    code, output = await _run(
        procs, [str(BIN / "aftershock"), "run", str(experiment)], tmp_path, env
    )
    assert code == 0, output
    assert "running it as `aftershock injector run` does" in output
    journal = json.loads((tmp_path / "journal.json").read_text())
    assert journal["status"] == "completed"
    assert [r["activity"]["name"] for r in journal["run"]] == [
        "proxy-the-api",
        "slow-down-the-api",
        "api-through-latency",
    ]
    assert {r.header("Authorization") for r in sut.take()} == {f"Bearer {TOKEN}"}
    assert _lines(tmp_path / "ctk-audit.jsonl")


@pytest.mark.slow
async def test_a_control_interrupting_the_run_stops_it_as_chaos_toolkit_does(
    tmp_path: Path, sut: Sut, proxy: Any, procs: Processes
) -> None:
    """InterruptExecution from a hook: no method, no rollbacks (default strategy), status
    interrupted, the after hooks and cleanups still called; the hook's error journalled."""
    doc = {
        "title": "interrupted",
        "description": "a control stops the run before the method",
        "controls": [
            {
                "name": "audit",
                "provider": {
                    "type": "python",
                    "module": "injector.audit_control",
                    "arguments": {"path": "ctk-audit.jsonl"},
                },
            },
            {"name": "stop", "provider": {"type": "python", "module": "tests.injector.ctkmod"}},
        ],
        "method": [_action("never", _py("truthy"))],
        "rollbacks": [_action("never-rolled-back", _py("truthy"))],
    }
    experiment = tmp_path / "interrupted.yaml"
    experiment.write_text(yaml.safe_dump(doc, sort_keys=False))
    got = await run_both(procs, experiment, tmp_path, sut, proxy.api_url, {})
    chaos, ours = got["chaos"], got["aftershock"]
    assert ours.audit == chaos.audit
    assert [a["hook"] for a in ours.audit] == [
        "configure_control",
        "before_experiment_control",
        "before_method_control",
        "after_method_control",
        "after_experiment_control",
        "cleanup_control",
    ]
    assert _summary(ours.journal) == _summary(chaos.journal)
    assert ours.journal["status"] == "interrupted"
    assert ours.journal["run"] == ours.journal["rollbacks"] == []
    stop = [h for h in ours.journal["aftershock"]["control_hooks"] if h["control"] == "stop"]
    assert [(h["hook"], h["error"]) for h in stop] == [
        ("before_method_control", "InterruptExecution: stop before the method")
    ]


@pytest.mark.slow
@pytest.mark.parametrize("when", ["before", "after"])
async def test_a_steady_state_not_met_rolls_back_as_chaos_toolkit(
    tmp_path: Path, sut: Sut, proxy: Any, procs: Processes, when: str
) -> None:
    """Not met before the method (no method) or after it (deviated): chaostoolkit-lib's
    default still plays the rollbacks. The one difference: our status says ``failed``."""
    doc = {
        "title": "not met",
        "description": "the hypothesis is not met",
        "steady-state-hypothesis": {
            "title": "no flag file",
            "probes": [_probe("no-flag", _py("exists", path="flag"), False)],
        },
        "method": [_action("plant-flag", _py("create", path="flag"))],
        "rollbacks": [_action("cleans-up", _py("truthy"))],
    }
    if when == "before":
        for tool in TOOLS:
            (tmp_path / tool).mkdir()
            (tmp_path / tool / "flag").write_text("already there")
    experiment = tmp_path / "not-met.yaml"
    experiment.write_text(yaml.safe_dump(doc, sort_keys=False))
    got = await run_both(procs, experiment, tmp_path, sut, proxy.api_url, {}, exist_ok=True)
    chaos, ours = got["chaos"], got["aftershock"]
    assert chaos.journal["status"] == "completed"
    assert ours.journal["status"] == "failed"
    assert _summary(ours.journal) == _summary(chaos.journal) | {"status": "failed"}
    assert ours.journal["deviated"] is (when == "after")
    assert [r["activity"]["name"] for r in ours.journal["rollbacks"]] == ["cleans-up"]
    # chaos run exits 0 when the hypothesis is not met before the method (its status is
    # "completed" and nothing deviated); Aftershock exits 1 for both.
    assert ours.code == 1
    assert chaos.code == (1 if when == "after" else 0)


SHIPPED = [
    ROOT / "experiments" / "chaostoxi-latency.json",
    ROOT / "experiments" / "chat-gameday.yaml",
    ROOT / "experiments" / "ctk-secrets-controls.yaml",
    ROOT / "compose" / "config" / "chat-gameday.yaml",
]


def test_every_shipped_experiment_is_listed() -> None:
    found = {p for p in (ROOT / "experiments").iterdir() if p.name != "chat-proxies.json"}
    assert found <= set(SHIPPED)


@pytest.mark.slow
@pytest.mark.parametrize("experiment", SHIPPED, ids=lambda p: p.name)
async def test_shipped_experiments_pass_chaos_validate(
    experiment: Path, tmp_path: Path, procs: Processes
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "API_TOKEN": TOKEN}
    code, output = await _run(
        procs, [str(BIN / "chaos"), "--no-log-file", "validate", str(experiment)], tmp_path, env
    )
    assert code == 0, output
    assert "experiment syntax and semantic look valid" in output


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            {"secrets": {"api": {"token": {"type": "env", "key": "AFTERSHOCK_TEST_UNSET"}}}},
            "secret api.token reads the environment variable AFTERSHOCK_TEST_UNSET, which is "
            "not set",
        ),
        (
            {"configuration": {"port": {"type": "env", "key": "AFTERSHOCK_TEST_UNSET"}}},
            "configuration 'port' reads the environment variable AFTERSHOCK_TEST_UNSET",
        ),
        (
            {"controls": [{"name": "c", "provider": {"type": "python", "module": "no.such"}}]},
            "control 'c': cannot import its module 'no.such'",
        ),
    ],
)
def test_what_a_run_cannot_start_without_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, section: dict[str, Any], expected: str
) -> None:
    """Chaos Toolkit fails these at start too (a control module it would only skip)."""
    from typer.testing import CliRunner

    from aftershock.cli.main import app

    monkeypatch.delenv("AFTERSHOCK_TEST_UNSET", raising=False)
    doc = {"title": "t", "description": "d", "method": [_action("a", _py("truthy"))], **section}
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = CliRunner().invoke(
        app, ["injector", "run", str(path), "--journal", str(tmp_path / "j.json")]
    )
    assert result.exit_code == 2, result.output
    assert expected in result.output


def test_aftershock_run_continuous_says_what_to_run_a_plain_ctk_experiment_with() -> None:
    from typer.testing import CliRunner

    from aftershock.cli.main import app

    experiment = ROOT / "experiments" / "ctk-secrets-controls.yaml"
    result = CliRunner().invoke(app, ["run", "--continuous", str(experiment)])
    assert result.exit_code == 2, result.output
    assert "run it once with `aftershock run` or `aftershock injector run`" in result.output
