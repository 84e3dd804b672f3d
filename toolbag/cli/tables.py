"""Tables that stay legible at any width, on a terminal or piped: ids and short fields are never cut.

A bordered table when it fits; otherwise a narrow layout: the short fields aligned on one line per row, each
longer field on an indented line of its own below it. Every cell is data, never markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

MIN_WRAPPED_WIDTH = 20  # narrower than this, a wrapped column is harder to read than a line of its own
NARROW_GAP = "  "


@dataclass(frozen=True)
class Column:
    """``whole``: printed in full on one line (ids, names, statuses, numbers); else free text that may wrap."""

    header: str
    whole: bool = True


def legible_table(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int, title: str = ""
) -> RenderableType:
    """``rows`` under ``columns`` in at most ``width`` cells: a bordered table if it fits, else the narrow layout."""
    natural = [max([cell_len(c.header), *(_longest_line(row[i]) for row in rows)]) for i, c in enumerate(columns)]
    wrapped = [i for i, c in enumerate(columns) if not c.whole]
    borders = 3 * len(columns) + 1
    room = width - borders - sum(natural[i] for i, c in enumerate(columns) if c.whole)
    needed = sum(min(natural[i], MIN_WRAPPED_WIDTH) for i in wrapped)
    if room < needed:
        return _narrow(columns, rows, natural, width, title)
    widths = list(natural)
    for n, i in enumerate(sorted(wrapped, key=lambda i: natural[i])):
        widths[i] = min(natural[i], room // (len(wrapped) - n))
        room -= widths[i]
    table = Table(title=title or None)
    for column, column_width in zip(columns, widths, strict=True):
        table.add_column(column.header, width=column_width, no_wrap=column.whole, overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def _longest_line(cell: str) -> int:
    return max((cell_len(line) for line in cell.splitlines()), default=0)


def _narrow(columns: Sequence[Column], rows: Sequence[Sequence[str]], natural: list[int], width: int,
            title: str) -> RenderableType:
    head: list[int] = []
    used = 0
    for i, column in enumerate(columns):
        gap = len(NARROW_GAP) if head else 0
        if column.whole and (not head or used + gap + natural[i] <= width):
            head.append(i)
            used += gap + natural[i]
    below = [i for i in range(len(columns)) if i not in head]

    def line(cells: Sequence[str]) -> str:
        return NARROW_GAP.join(cells[i] + " " * (natural[i] - cell_len(cells[i])) for i in head).rstrip()

    lines: list[Text] = [Text(title, style="bold")] if title else []
    lines.append(Text(line([c.header for c in columns]), style="bold"))
    for row in rows:
        lines.append(Text(line(row)))
        lines.extend(Text(f"  {columns[i].header}: {' '.join(row[i].split())}") for i in below if row[i])
    return Group(*lines)
