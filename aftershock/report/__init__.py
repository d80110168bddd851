"""Reports of a game-day run: HTML, Markdown, JSON and JUnit from the run's events and results."""

from aftershock.report.files import read_results, write_reports
from aftershock.report.model import Findings, RunData, RunMeta

__all__ = [
    "Findings",
    "RunData",
    "RunMeta",
    "read_results",
    "write_reports",
]
