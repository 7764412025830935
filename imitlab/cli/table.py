"""Tables that stay readable at 80 columns and when piped: key columns are never cut, optional ones make room.

rich shrinks every column of a table wider than the console, cutting a long model name to
``qwen2.5-coder-0.5b-ins…``, the one thing a user must copy. Here key columns keep their full width and
never wrap; when the table does not fit, whole optional columns are left out (least useful first), so every
cell shown is whole. Piped output is 80 columns wide unless ``$COLUMNS`` says otherwise (rich's rule).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text


@dataclass(frozen=True)
class Column:
    header: str
    key: bool = False  # never truncated, never dropped
    drop_rank: int = 0  # optional columns with the lowest rank are dropped first when space runs out


def fit_table(console: Console, title: str, columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> Table:
    """The widest table of ``rows`` that fits ``console.width``, leaving out optional columns as needed.

    When the key columns alone are wider than the console, the table keeps them whole and is as wide as they
    need; print it with :func:`print_table`, which lets the terminal wrap the line instead of cutting it.
    """
    shown = list(range(len(columns)))
    droppable = sorted((i for i, c in enumerate(columns) if not c.key), key=lambda i: columns[i].drop_rank)
    unbounded = console.options.update_width(1 << 16)  # measure the natural width, not one clamped to the console
    while True:
        table = _table(title, [columns[i] for i in shown], [[row[i] for i in shown] for row in rows])
        width = Measurement.get(console, unbounded, table).maximum
        if width <= console.width or not droppable:
            table.width = width
            return table
        shown.remove(droppable.pop(0))


def print_table(console: Console, title: str, columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> None:
    """Print :func:`fit_table`'s table; a line wider than the console is wrapped by the terminal, never cut."""
    console.print(fit_table(console, title, columns, rows), crop=False)


def _table(title: str, columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    for n, column in enumerate(columns):
        # min_width = the longest cell, so rich never shrinks (and so never cuts) any column that is shown.
        widest = max([len(column.header), *(len(row[n]) for row in rows)])
        table.add_column(column.header, no_wrap=True, min_width=widest)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # cells are plain text, never markup
    return table
