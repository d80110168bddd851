"""``aftershock proxy serve`` as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from tests.processes import Processes

SERVE = [sys.executable, "-m", "aftershock.cli.main", "proxy", "serve", "--port", "0"]


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_serve_with_config_token_and_events(tmp_path: Path, procs: Processes) -> None:
    config = tmp_path / "populate.json"
    config.write_text(
        json.dumps([{"name": "redis", "upstream": "127.0.0.1:6379", "listen": "127.0.0.1:0"}])
    )
    events = tmp_path / "events.jsonl"
    proc = procs.popen(
        [*SERVE, "--config", str(config), "--token", "t0k", "--events", str(events)],
        stdout=subprocess.PIPE,
        text=True,
    )
    _check_serving(proc)
    lines = events.read_text().splitlines()
    assert [json.loads(line)["kind"] for line in lines] == ["fault.proxy_created"]


def _check_serving(proc: subprocess.Popen[str]) -> None:
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("proxy redis: 127.0.0.1:"), first
        assert first.rstrip().endswith("-> 127.0.0.1:6379")
        url = proc.stdout.readline().split()[-1]
        assert _get(url + "/proxies")[0] == 401
        status, body = _get(url + "/proxies", token="t0k")
        assert status == 200
        assert list(json.loads(body)) == ["redis"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0


def test_bad_config_is_a_clear_error(tmp_path: Path, procs: Processes) -> None:
    config = tmp_path / "populate.json"
    config.write_text('{"name": "not an array"}')
    result = procs.run([*SERVE, "--config", str(config)], text=True, timeout=60)
    assert result.returncode == 2
    assert f"--config {config}: bad request body: json: cannot unmarshal object" in result.stderr
    missing = procs.run([*SERVE, "--config", str(tmp_path / "nope.json")], text=True, timeout=60)
    assert missing.returncode == 2
    assert "cannot read --config" in missing.stderr


def test_empty_token_is_a_start_up_error(procs: Processes) -> None:
    """``AFTERSHOCK_PROXY_TOKEN=`` must not mean "no authentication"."""
    for args, env in (
        ([], {"AFTERSHOCK_PROXY_TOKEN": ""}),
        (["--token", " "], {}),
    ):
        result = procs.run([*SERVE, *args], text=True, timeout=60, env={**os.environ, **env})
        assert result.returncode == 2, result.stderr
        assert "the API token (--token or AFTERSHOCK_PROXY_TOKEN) is empty" in result.stderr
        assert "fault proxy API on" not in result.stdout


def _post(url: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_allow_flags_open_what_they_name(procs: Processes) -> None:
    """``--allow-any-upstream`` lets a proxy forward outside loopback; ``--allow-listen``
    lets it listen on the network it names, and only there (10.9.8.7 is not an address of
    this machine: allowed, it gets as far as the bind, which fails; nothing is exposed)."""
    config = [*SERVE, "--allow-any-upstream", "--allow-listen", "10.9.8.7/32"]
    proc = procs.popen(config, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[-1]
        status, created = _post(url + "/proxies", {"name": "far", "upstream": "192.0.2.1:80"})
        assert status == 201, created
        assert str(created["listen"]).startswith("127.0.0.1:")
        status, tried = _post(
            url + "/proxies",
            {"name": "there", "upstream": "127.0.0.1:1", "listen": "10.9.8.7:0"},
        )
        assert status == 500, tried
        assert tried["error"] == "listen tcp 10.9.8.7:0: bind: cannot assign requested address"
        status, refused = _post(
            url + "/proxies",
            {"name": "elsewhere", "upstream": "127.0.0.1:1", "listen": "10.9.8.6:0"},
        )
        assert status == 403, refused
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    bad = procs.run([*SERVE, "--allow-listen", "everywhere"], text=True, timeout=60)
    assert bad.returncode == 2
    assert "not a CIDR: 'everywhere'" in bad.stderr
