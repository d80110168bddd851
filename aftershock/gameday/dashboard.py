"""The live terminal dashboard of a game day (rich), or one summary line at a time in a pipe.

:class:`Dashboard` pulls a :class:`LiveSnapshot` from a callable; it never raises into the
run: a failing snapshot or terminal is reported once and the dashboard stops drawing. The run
shows the last frame itself (:meth:`Dashboard.show_final`) once the analysis has drained, so
the last line agrees with the report.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from collections.abc import Callable

    from aftershock.gameday.live import LiveSnapshot


def _f(v: float | int | None, fmt: str = "{:.1f}", unit: str = "") -> str:
    return "–" if v is None else fmt.format(v) + unit


def summary_line(s: LiveSnapshot) -> str:
    """One line, for logs and pipes."""
    clock = f"{s.elapsed_s:6.1f}s" + (f"/{s.planned_s:.0f}s" if s.planned_s > 0 else "")
    return (
        f"[{clock}] phase={s.phase} "
        f"faults={','.join(s.active_faults) or '-'} sessions={_f(s.sessions, '{:d}')} "
        f"thr={s.throughput_per_s:.0f}/s err={s.error_rate_pct:.1f}% "
        f"p99={_f(s.p99_ms, '{:.0f}', 'ms')} open_episodes={len(s.open_episodes)} "
        f"episodes={s.episodes} mttr={_f(s.mttr_s, '{:.2f}', 's')} "
        f"isolation={s.isolation_violations}"
    )


def render(s: LiveSnapshot) -> Panel:
    bar = ProgressBar(total=max(s.planned_s, 1e-9), completed=min(s.elapsed_s, s.planned_s))
    head = Text.assemble(
        (f"{s.title}\n", "bold"),
        (f"experiment {s.experiment_id} · run {s.run_id} · phase ", "dim"),
        (s.phase, "bold cyan"),
        (
            f" · {s.elapsed_s:.0f} s" + (f" of {s.planned_s:.0f} s" if s.planned_s > 0 else ""),
            "dim",
        ),
    )
    grid = Table.grid(padding=(0, 3))
    grid.add_column(justify="right", style="dim")
    grid.add_column()
    grid.add_column(justify="right", style="dim")
    grid.add_column()
    err_style = "red" if s.error_rate_pct >= 5 else "green"
    iso_style = "bold red" if s.isolation_violations else "green"
    grid.add_row(
        "sessions", _f(s.sessions, "{:d}"), "throughput", f"{s.throughput_per_s:.0f} msg/s"
    )
    grid.add_row(
        "error rate",
        Text(f"{s.error_rate_pct:.1f} %", style=err_style),
        "p99",
        _f(s.p99_ms, "{:.0f}", " ms"),
    )
    grid.add_row(
        "open episodes",
        Text(", ".join(s.open_episodes) or "none", style="red" if s.open_episodes else ""),
        "episodes · MTTR",
        f"{s.episodes} · " + _f(s.mttr_s, "{:.2f}", " s"),
    )
    grid.add_row(
        "active faults",
        Text(", ".join(s.active_faults) or "none", style="yellow" if s.active_faults else ""),
        "isolation violations",
        Text(str(s.isolation_violations), style=iso_style),
    )
    return Panel(Group(head, bar, Text(""), grid), title="aftershock", border_style="blue")


def unwrapped_console(*, stderr: bool = True) -> Console:
    """A console that wraps long lines only on a terminal: piped or redirected, each line
    stays one line (for grep), however long."""
    out = Console(stderr=stderr)
    out.soft_wrap = not out.is_terminal
    return out


class Dashboard:
    """Draws ``snapshot()`` every ``refresh_s`` on a terminal, or prints a summary line every
    ``line_every_s`` when the console is not a terminal."""

    def __init__(
        self,
        snapshot: Callable[[], LiveSnapshot],
        console: Console | None = None,
        *,
        refresh_s: float = 0.5,
        line_every_s: float = 5.0,
        enabled: bool = True,
    ) -> None:
        self.snapshot = snapshot
        self.console = console or unwrapped_console()
        self.refresh_s = refresh_s
        self.line_every_s = line_every_s
        self.enabled = enabled
        self.lines_printed = 0

    async def run(self) -> None:
        """Until cancelled."""
        if not self.enabled:
            await asyncio.Event().wait()
        try:
            if self.console.is_terminal:
                await self._live()
            else:
                await self._lines()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a dashboard must never break the run it shows
            with contextlib.suppress(Exception):
                self.console.print(f"dashboard stopped: {exc!r}")

    async def _live(self) -> None:
        with Live(
            render(self.snapshot()), console=self.console, auto_refresh=False, transient=True
        ) as live:
            while True:
                await asyncio.sleep(self.refresh_s)
                live.update(render(self.snapshot()), refresh=True)

    async def _lines(self) -> None:
        while True:
            await asyncio.sleep(self.line_every_s)
            self._line(self.snapshot())

    def _line(self, snap: LiveSnapshot) -> None:
        self.console.print(summary_line(snap), highlight=False, soft_wrap=True)
        self.lines_printed += 1

    def show_final(self, snap: LiveSnapshot) -> None:
        """The last frame (terminal) or line (pipe): the snapshot of the drained analysis."""
        if not self.enabled:
            return
        with contextlib.suppress(Exception):
            if self.console.is_terminal:
                self.console.print(render(snap))
            else:
                self._line(snap)
