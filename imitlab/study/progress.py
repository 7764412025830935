"""The sweep's own progress: a bar over its stages, printed as a line at each stage event.

A static line rather than a live bar, on purpose: the stages draw live bars of their own (collection, the
judge, training), and a second live display around them would fight them for the terminal. Each line shows the
share of the planned stages done (run now or reused from the cache), the stage that just started or finished,
and the time since the sweep began; the plan shrinks when a cell is skipped (its data is smaller than its
budget).
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress_bar import ProgressBar
from rich.table import Table

# Events that finish a stage (it ran, or its cached result was reused).
FINISHED = ("done", "cached")


class SweepProgress:
    def __init__(self, console: Console, planned: int) -> None:
        self.console = console
        self.planned = planned
        self.finished = 0
        self.started = time.perf_counter()

    def skip(self, stages: int) -> None:
        """A cell will not run: its ``stages`` leave the plan."""
        self.planned = max(self.finished, self.planned - stages)

    def on_event(self, what: str, name: str) -> None:
        if what in FINISHED:
            self.finished += 1
        self.planned = max(self.planned, self.finished)  # a stage beyond the plan (a rerun) never overflows it
        elapsed = time.perf_counter() - self.started
        minutes, seconds = divmod(int(elapsed), 60)
        line = Table.grid(padding=(0, 1))
        line.add_column(width=20)
        line.add_column(no_wrap=True)
        line.add_row(
            ProgressBar(total=self.planned, completed=self.finished, width=20),
            f"{self.finished}/{self.planned} stages · {minutes}:{seconds:02d} · [dim]{what}[/] {name}",
        )
        self.console.print(line)
