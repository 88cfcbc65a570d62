"""Terminal output: a progress bar and summary tables, for every command and report."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any


class Progress:
    """A one-line progress bar on stderr, drawn only on a terminal."""

    def __init__(self, label: str, total: float | None = None, stream: IO[str] | None = None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.label = label
        self.total = total
        self._last = 0.0
        self._t0 = time.monotonic()

    def update(self, done: float, detail: str = "") -> None:
        if not self.enabled:
            return
        t = time.monotonic()
        if t - self._last < 0.1:
            return
        self._last = t
        if self.total:
            frac = min(1.0, done / self.total)
            bar = "#" * int(frac * 30)
            text = f"\r{self.label} [{bar:<30}] {frac * 100:5.1f}% {detail}"
        else:
            text = f"\r{self.label} {detail}"
        self.stream.write(text[:120].ljust(60))
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 120 + "\r")
            self.stream.flush()


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str] | None = None) -> str:
    """A plain-text table with aligned columns."""
    cells = [[_fmt(c) for c in row] for row in rows]
    if headers:
        cells.insert(0, list(headers))
    if not cells:
        return ""
    widths = [max(len(r[i]) for r in cells if i < len(r)) for i in range(max(map(len, cells)))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip())
        if headers and n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None:
        return "unknown"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.3f}".rstrip("0").rstrip(".") if abs(v) < 1e6 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it, else as given."""
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path)


def fold_unknown(values: dict[str, Any]) -> tuple[list[tuple[str, Any]], list[str]]:
    """Rows of the values that are known, and the names of those never seen (None)."""
    rows = [(name, v) for name, v in values.items() if v is not None]
    never = [name for name, v in values.items() if v is None]
    return rows, never
