"""Plain-text tables whose columns are as wide as their widest cell, so no two run together."""

from __future__ import annotations

from collections.abc import Sequence


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1, gap: int = 2) -> list[str]:
    """The lines of a table: ``headers`` then ``rows`` (cells already formatted as strings).

    Each column is as wide as its widest cell (header included); the first ``left`` columns are
    left-aligned, the rest right-aligned, and columns are separated by at least ``gap`` spaces,
    so cells never touch whatever their width. Trailing spaces are stripped.
    """
    widths = [max(len(str(row[j])) for row in [headers, *rows]) for j in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        parts = [f"{c:<{w}}" if j < left else f"{c:>{w}}" for j, (c, w) in enumerate(zip(cells, widths))]
        return (" " * gap).join(parts).rstrip()

    return [line(headers), *(line(r) for r in rows)]
