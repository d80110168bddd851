"""The compose stack, checked without Docker: settings names, pinned images, real commands."""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    from tests.processes import Processes
from typer.testing import CliRunner

from aftershock.cli.commands import COMMANDS
from aftershock.cli.main import app, load
from spine.settings import Settings

COMPOSE = Path(__file__).parents[2] / "compose"


def _compose() -> dict[str, Any]:
    doc = yaml.safe_load((COMPOSE / "docker-compose.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def _services() -> dict[str, dict[str, Any]]:
    services = _compose()["services"]
    assert isinstance(services, dict)
    return services


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _command(service: dict[str, Any]) -> list[str]:
    """The command's words; ``sh -c "exec CMD"`` counts as CMD."""
    cmd = service.get("command") or []
    words = cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]
    if words[:2] == ["sh", "-c"] and len(words) == 3 and words[2].startswith("exec "):
        return shlex.split(words[2].replace("$$", "$"))[1:]  # compose's $$ is a literal $
    return words


def test_generators_expected_follow_the_members(procs: Processes) -> None:
    """The coordinator waits for itself and every member replica, from one variable."""
    services = _services()
    replicas = services["generator-member"]["deploy"]["replicas"]
    assert replicas == "${GENERATOR_MEMBERS:-2}"
    gen = services["generator"]
    assert _env(gen)["GENERATOR_MEMBERS"] == replicas
    words = _command(gen)
    assert words[words.index("--expect") + 1] == "$((GENERATOR_MEMBERS + 1))"
    for members in (1, 2, 5):
        out = procs.run(
            ["sh", "-c", f"echo {words[words.index('--expect') + 1]}"],
            env={"GENERATOR_MEMBERS": str(members)},
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == str(members + 1)


def test_unauthenticated_apis_are_published_on_loopback_only() -> None:
    for name, service in _services().items():
        for port in service.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_spans_reach_kafka_in_a_format_the_analyzers_read() -> None:
    collector = yaml.safe_load((COMPOSE / "otel-collector.yaml").read_text())
    assert collector["exporters"]["kafka"]["encoding"] in ("otlp_proto", "otlp_json")


def test_the_stack_has_every_part() -> None:
    services = _services()
    images = {name: str(s.get("image", "")) for name, s in services.items()}
    assert images["kafka"].startswith("apache/kafka:")
    assert images["toxiproxy"].startswith("ghcr.io/shopify/toxiproxy:")
    assert images["redis"].startswith("redis:")
    assert images["otel-collector"].startswith("otel/opentelemetry-collector")
    assert images["jaeger"].startswith("jaegertracing/")
    assert "broker,controller" in _env(services["kafka"])["KAFKA_PROCESS_ROLES"]  # KRaft
    assert services["analyzer"]["deploy"]["replicas"] >= 2
    members = re.fullmatch(
        r"\$\{GENERATOR_MEMBERS:-(\d+)\}", services["generator-member"]["deploy"]["replicas"]
    )
    assert members is not None
    assert int(members.group(1)) >= 1
    assert (COMPOSE / "otel-collector.yaml").exists()


@pytest.mark.parametrize("name", sorted(_services()))
def test_image_tags_are_pinned(name: str) -> None:
    image = str(_services()[name].get("image", ""))
    m = re.fullmatch(r"(?P<repo>[^@]+?)(?::(?P<tag>[^:/@]+))?(?:@sha256:[0-9a-f]{64})?", image)
    assert m is not None, f"{name}: image {image!r} is not a reference"
    tag = m.group("tag")
    assert tag, f"{name}: image {image!r} has no tag"
    assert tag != "latest", f"{name}: image {image!r} uses 'latest'"
    assert re.search(r"\d", tag), f"{name}: tag {tag!r} is not a version"


@pytest.mark.parametrize("name", sorted(_services()))
def test_aftershock_settings_exist_and_validate(name: str) -> None:
    env = {k: v for k, v in _env(_services()[name]).items() if k.startswith("AFTERSHOCK_")}
    fields = {f"AFTERSHOCK_{f.upper()}" for f in Settings.model_fields}
    unknown = sorted(set(env) - fields)
    assert not unknown, f"{name}: not settings of spine.settings.Settings: {unknown}"
    Settings(**{k.removeprefix("AFTERSHOCK_").lower(): v for k, v in env.items()})


def _walk(command: Any, words: list[str]) -> tuple[Any, list[str], list[str]]:
    """The (sub)command the words name, the words naming it, and the rest. (Typer's command
    classes need not derive from the installed click's, so this goes by attributes.)"""
    path: list[str] = []
    rest = list(words)
    while rest and rest[0] in (getattr(command, "commands", None) or {}):
        path.append(rest[0])
        command = command.commands[rest.pop(0)]
    return command, path, rest


AFTERSHOCK_SERVICES = sorted(n for n, s in _services().items() if _command(s)[:1] == ["aftershock"])


@pytest.mark.parametrize("name", AFTERSHOCK_SERVICES)
def test_aftershock_commands_exist(name: str) -> None:
    words = _command(_services()[name])[1:]
    assert words[0] in COMMANDS, f"{name}: 'aftershock {words[0]}' is not a command"
    command, path, rest = _walk(load(words[0]), words[1:])
    path = [words[0], *path]
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, f"{name}: aftershock {' '.join(path)} --help: {result.output}"
    known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    used = [w for w in rest if w.startswith("--")]
    bad = [w for w in used if w.split("=", 1)[0] not in known]
    assert not bad, f"{name}: aftershock {' '.join(path)} has no option {bad}"


@pytest.mark.parametrize("name", ["chat-message", "chat-gateway"])
def test_sample_system_commands_exist(name: str, procs: Processes) -> None:
    cmd = _command(_services()[name])
    assert cmd[:3] == ["python", "-m", "examples.chat"]
    assert importlib.util.find_spec("examples.chat") is not None
    shown = procs.run([sys.executable, "-m", "examples.chat", "--help"], text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    help_text = shown.stdout
    for opt in (w for w in cmd[3:] if w.startswith("--")):
        assert opt in help_text, f"{name}: python -m examples.chat has no option {opt}"


def test_dockerfile_builds_from_the_lock_file() -> None:
    text = (COMPOSE / "Dockerfile").read_text()
    base = re.search(r"^FROM\s+(\S+)", text, re.M)
    assert base is not None
    assert ":" in base.group(1)
    assert "latest" not in base.group(1)
    assert "COPY requirements.lock" in text
    assert "pip sync --system" in text
    assert "requirements.lock" in text


def test_mounted_config_files_exist() -> None:
    for name, s in _services().items():
        for vol in s.get("volumes") or []:
            src = str(vol).split(":", 1)[0]
            if src.startswith("."):
                assert (COMPOSE / src).exists(), f"{name}: mounts missing {src}"
        for word in _command(s):
            if word.startswith("/etc/aftershock/"):
                path = COMPOSE / "config" / word.removeprefix("/etc/aftershock/")
                assert path.exists(), f"{name}: runs with missing {path}"


def test_compose_experiment_and_load_files_validate() -> None:
    from generators.profile_file import load_run_file
    from injector.validate import load_experiment

    exp = load_experiment(COMPOSE / "config" / "chat-gameday.yaml")
    # A stock Toxiproxy has only the standard toxics and no per-client matching.
    standard = {"latency", "bandwidth", "slow_close", "timeout", "reset_peer", "slicer",
                "limit_data"}  # fmt: skip
    for fault in exp.aftershock.faults:
        toxic = getattr(fault, "toxic", None)
        assert toxic is None or toxic.type in standard, fault.id
        assert getattr(fault, "match", None) is None, fault.id
    run_file = load_run_file(COMPOSE / "config" / "chat-load.yaml")
    assert {t.name for t in run_file.targets} == {t.name for t in exp.aftershock.targets}
    proxies = {
        p["name"] for p in yaml.safe_load((COMPOSE / "config" / "toxiproxy.json").read_text())
    }
    assert proxies == {t.proxy for t in exp.aftershock.targets}
