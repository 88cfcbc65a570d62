"""The vehicle state: the latest value of every signal, and how fresh it is.

Every catalogue signal has a cell from the start; a mapping that binds names of the
user's own (or every DBC signal, ``Message.Signal``) adds theirs with ``track``.

Each signal lives in a ``Cell``. A cell's freshness comes from its ``source``: the
message (or multiplexed page) that last carried it. Every frame of that message
refreshes ``source.seen`` with one assignment, whether or not its bytes changed, so
refreshing costs nothing per signal. A signal whose source has not been seen within
its ``stale_after`` reads as unknown (``None``), never as its last value.

Overrides (set by a scenario or a bench operator) take precedence over the bus until
released.
"""

from __future__ import annotations

from collections.abc import Iterable

from tcu.vehicle.catalogue import CATALOGUE, Value


class Source:
    """The last time a message (or multiplexed page) was seen on the bus."""

    __slots__ = ("last", "seen")

    def __init__(self) -> None:
        self.seen = float("-inf")
        self.last: bytes | bytearray | None = None


_NEVER = Source()


class Cell:
    __slots__ = ("path", "source", "stale_after", "value")

    def __init__(self, path: str, stale_after: float) -> None:
        self.path = path
        self.value: Value | None = None
        self.source: Source = _NEVER
        self.stale_after = stale_after


class VehicleState:
    """Signal path -> value, unknown when stale or never seen."""

    def __init__(self, stale_after: dict[str, float] | None = None) -> None:
        stale_after = stale_after or {}
        self.cells: dict[str, Cell] = {
            path: Cell(path, stale_after.get(path, float("inf"))) for path in CATALOGUE
        }
        self.overrides: dict[str, Value | None] = {}

    def track(self, path: str, stale_after: float) -> None:
        """Give ``path`` a cell (if it has none) that goes stale after ``stale_after`` s."""
        cell = self.cells.get(path)
        if cell is None:
            self.cells[path] = Cell(path, stale_after)
        else:
            cell.stale_after = stale_after

    def get(self, path: str, now: float) -> Value | None:
        if path in self.overrides:
            return self.overrides[path]
        cell = self.cells[path]
        if now - cell.source.seen > cell.stale_after:
            return None
        return cell.value

    def is_stale(self, path: str, now: float) -> bool:
        """True when the signal has a value on record but it is too old to use."""
        if path in self.overrides:
            return False
        cell = self.cells[path]
        return cell.source is not _NEVER and now - cell.source.seen > cell.stale_after

    def snapshot(self, now: float, paths: Iterable[str] | None = None) -> dict[str, Value | None]:
        return {p: self.get(p, now) for p in (paths if paths is not None else self.cells)}

    def update(self, path: str, value: Value | None, source: Source) -> bool:
        """Record a decoded value; True when it differs from the previous one."""
        cell = self.cells[path]
        changed = cell.value != value or type(cell.value) is not type(value)
        cell.value = value
        cell.source = source
        return changed

    def override(self, path: str, value: Value | None) -> None:
        if path not in self.cells:
            raise KeyError(f"unknown signal path {path!r}")
        self.overrides[path] = value

    def release(self, path: str) -> None:
        self.overrides.pop(path, None)
