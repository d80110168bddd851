"""The promtool check the metrics tests rely on does fail on a page Prometheus would lint."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.promtool import check_metrics, promtool_installed

if TYPE_CHECKING:
    from tests.processes import Processes

pytestmark = pytest.mark.skipif(not promtool_installed(), reason="promtool is not installed")


def test_a_counter_without_total_fails_and_a_good_page_passes(procs: Processes) -> None:
    bad = "# HELP rounds Rounds.\n# TYPE rounds counter\nrounds 3\n"
    with pytest.raises(AssertionError, match="promtool check metrics"):
        check_metrics(procs, bad)
    check_metrics(
        procs, "# HELP rounds_total Rounds.\n# TYPE rounds_total counter\nrounds_total 3\n"
    )
