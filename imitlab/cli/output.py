"""Where the commands print: results to stdout (``console``), progress and notes to stderr (``err_console``)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def print_summary(title: str, rows: dict[str, object]) -> None:
    """A two-column table of a command's outcome: name, value."""
    table = Table(title=title, show_header=False)
    for k, v in rows.items():
        table.add_row(k, str(v))
    console.print(table)
