"""The npm ``toxiproxy-node-client``, unchanged, against our server (see node/conformance.js)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.processes import Processes
    from tests.proxy.conftest import ThreadedServer

NODE_CLIENT = "toxiproxy-node-client@4.1.0"
REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".aftershock" / "npm"
SCRIPT = Path(__file__).parent / "node" / "conformance.js"


def _node_client(procs: Processes) -> Path:
    """Install the client with npm into a cached folder inside the repository, once."""
    modules = CACHE / "node_modules"
    if not (modules / "toxiproxy-node-client" / "package.json").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        installed = procs.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(CACHE), NODE_CLIENT],
            timeout=240,
        )
        assert installed.returncode == 0, installed.stderr
    return modules


@pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None,
    reason="node and npm are not installed on this machine",
)
def test_node_client_conformance(threaded_server: ThreadedServer, procs: Processes) -> None:
    modules = _node_client(procs)
    result = procs.run(
        ["node", str(SCRIPT), threaded_server.api_url, str(threaded_server.echo_port)],
        text=True,
        timeout=120,
        env={**os.environ, "NODE_PATH": str(modules)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout
