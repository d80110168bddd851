"""``aftershock proxy serve`` as a user runs it."""

from __future__ import annotations

import json
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
