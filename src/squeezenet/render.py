"""Rendering records: one Markdown-table helper and one figure helper.

Library functions compute lists of dict rows; these turn them into what a person
reads. Matplotlib is imported only when a figure is drawn (headless ``Agg``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

Cell = str | Callable[[dict], object]


def markdown_table(rows: Sequence[dict], columns: Sequence[tuple[str, Cell]]) -> str:
    """A Markdown table: ``columns`` are (header, key-or-function) pairs; a function gets
    the row and returns the cell text. Missing keys render as ``-``."""
    head = [h for h, _ in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [cell(r) if callable(cell) else r.get(cell, "-") for _, cell in columns]
        lines.append("| " + " | ".join("-" if c is None else str(c) for c in cells) + " |")
    return "\n".join(lines)


def pyplot():
    """matplotlib.pyplot on the headless Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, dpi: int = 110) -> Path:
    """Lay out, write (atomically) and close a figure; returns its path."""
    import io

    from .files import atomic_write_bytes

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format=Path(path).suffix.lstrip(".") or "png")
    pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
