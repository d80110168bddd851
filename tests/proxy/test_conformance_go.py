"""The stock Go client (``github.com/Shopify/toxiproxy/v2/client``), unchanged, against our
server (see go/conformance.go).

Needs ``go`` and the client's module: ``go`` fetches it through the module proxy, or it is
taken from a Toxiproxy checkout named by ``AFTERSHOCK_TOXIPROXY_SRC`` (the client package uses
the standard library only, so a checkout builds offline).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.processes import Processes
    from tests.proxy.conftest import ThreadedServer

GO_CLIENT = "github.com/Shopify/toxiproxy/v2"
GO_CLIENT_VERSION = "v2.12.0"
SCRIPT = Path(__file__).parent / "go" / "conformance.go"


def _module(tmp_path: Path) -> Path:
    """A module holding conformance.go that requires the client (or a local checkout of it)."""
    source = os.environ.get("AFTERSHOCK_TOXIPROXY_SRC")
    lines = ["module aftershock.test/conformance", "", "go 1.19", "",
             f"require {GO_CLIENT} {GO_CLIENT_VERSION}"]  # fmt: skip
    if source:
        lines.append(f"replace {GO_CLIENT} => {Path(source).resolve()}")
    (tmp_path / "go.mod").write_text("\n".join(lines) + "\n")
    shutil.copy(SCRIPT, tmp_path / "conformance.go")
    return tmp_path


@pytest.mark.skipif(shutil.which("go") is None, reason="go is not installed on this machine")
def test_go_client_conformance(
    threaded_server: ThreadedServer, tmp_path: Path, procs: Processes
) -> None:
    module = _module(tmp_path)
    env = {
        **os.environ,
        "GOFLAGS": "-mod=mod",
        "GOCACHE": str(Path(__file__).resolve().parents[2] / ".aftershock" / "go-cache"),
        "GOTOOLCHAIN": "local",
    }
    if "AFTERSHOCK_TOXIPROXY_SRC" in os.environ:
        env["GOPROXY"] = "off"
    build = procs.run(
        ["go", "build", "-o", "conformance", "."], cwd=module, text=True, timeout=300, env=env
    )
    if build.returncode != 0 and "AFTERSHOCK_TOXIPROXY_SRC" not in os.environ:
        pytest.skip(f"cannot fetch the Go client: {build.stderr.strip()[-300:]}")
    assert build.returncode == 0, build.stderr
    result = procs.run(
        [str(module / "conformance"), threaded_server.api_url, str(threaded_server.echo_port)],
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout
