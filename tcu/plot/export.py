"""Exports of a run: decoded signals streamed to CSV or Parquet, events as tables of their own.

Theory of operation. ``SignalExport`` is a sink of the host with a tap on the core's
signals (``tcu.plot.timeline.TapSink``): each time signals change it writes one row, as
it comes, and keeps nothing of the past. Wide (the default): a ``time_s`` column and one
column per catalogue signal, ``PATH [unit]``, holding the state after the change (empty
while unknown). Long (``--long``): ``time_s, signal, unit, number, text``, one row per
changed signal (``number`` for on/off 0/1 and numbers, ``text`` for enumerations).
Rows at the same instant merge into one. CSV is written with the standard library;
Parquet with pyarrow's ``ParquetWriter``, in row groups of ``ROW_GROUP`` rows, so a
1,000,000-frame trace never sits in memory.

Verdicts, sessions, commands and link changes come from the timeline (they are few) and
go to files next to the signals, named by a suffix each: ``run.csv`` gives
``run.verdicts.csv``, ``run.sessions.csv``, ``run.commands.csv``, ``run.link.csv``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from tcu.errors import ConfigError
from tcu.plot.deps import require
from tcu.plot.timeline import TapSink, Timeline
from tcu.vehicle.catalogue import CATALOGUE

FORMATS = (".csv", ".parquet")
ROW_GROUP = 65_536


def column(path: str) -> str:
    unit = CATALOGUE[path].unit
    return f"{path} [{unit}]" if unit else path


def table_path(path: Path, name: str) -> Path:
    """``run.csv`` and ``verdicts`` -> ``run.verdicts.csv``."""
    return path.with_name(f"{path.stem}.{name}{path.suffix}")


def check_export_path(path: Path, option: str = "--export") -> None:
    if path.suffix.lower() not in FORMATS:
        raise ConfigError(f"{option} {path}: the suffix must be one of {', '.join(FORMATS)}")
    if not path.parent.is_dir():
        raise ConfigError(f"{option} {path}: folder {path.parent} does not exist")
    if path.suffix.lower() == ".parquet":
        require("pyarrow", f"{option} {path}")


def _csv_cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return v


class _Rows:
    """Rows to a CSV file or a Parquet file, in row groups."""

    def __init__(self, path: Path, names: Sequence[str], types: Sequence[str]) -> None:
        self.path = path
        self.names = list(names)
        self.parquet = path.suffix.lower() == ".parquet"
        self.count = 0
        self._file: IO[str] | None = None
        self._writer: Any = None
        self._buffer: list[list[Any]] = [[] for _ in names]
        try:
            if self.parquet:
                pa = require("pyarrow", f"--export {path}")
                pq = require("pyarrow.parquet", f"--export {path}")
                kinds = {"bool": pa.bool_(), "float": pa.float64(), "str": pa.string()}
                self.schema = pa.schema(
                    [pa.field(n, kinds[t]) for n, t in zip(names, types, strict=True)]
                )
                self._pa = pa
                self._writer = pq.ParquetWriter(str(path), self.schema)
            else:
                self._file = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
                self._writer = csv.writer(self._file)
                self._writer.writerow(self.names)
        except OSError as e:
            raise ConfigError(f"--export {path}: {e.strerror or e}") from None

    def add(self, row: Sequence[Any]) -> None:
        self.count += 1
        if self.parquet:
            for col, v in zip(self._buffer, row, strict=True):
                col.append(v)
            if len(self._buffer[0]) >= ROW_GROUP:
                self._flush()
        else:
            self._writer.writerow([_csv_cell(v) for v in row])

    def _flush(self) -> None:
        if self._buffer[0]:
            batch = self._pa.record_batch(self._buffer, schema=self.schema)
            self._writer.write_batch(batch)
            self._buffer = [[] for _ in self.names]

    def close(self) -> None:
        if self.parquet:
            if self._writer is not None:
                self._flush()
                self._writer.close()
                self._writer = None
        elif self._file is not None:
            self._file.close()
            self._file = None


def _kind(path: str) -> str:
    k = CATALOGUE[path].kind
    return "str" if k == "enum" else k


class SignalExport(TapSink):
    """Streams every signal change of the run to ``path`` (see the module docstring)."""

    def __init__(self, path: Path, *, long: bool = False) -> None:
        self.path = path
        self.long = long
        self.paths = list(CATALOGUE)
        if long:
            self.rows = _Rows(
                path,
                ("time_s", "signal", "unit", "number", "text"),
                ("float", "str", "str", "float", "str"),
            )
        else:
            self.rows = _Rows(
                path,
                ["time_s", *(column(p) for p in self.paths)],
                ["float", *(_kind(p) for p in self.paths)],
            )
        self._t: float | None = None
        self._pending: list[Any] | None = None
        self._long_pending: dict[str, Any] = {}

    def signals_changed(self, changed: list[str], state: Any, now: float) -> None:
        if self._t is not None and now != self._t:
            self._flush()
        self._t = now
        if self.long:
            for p in changed:
                self._long_pending[p] = state.get(p, now)
        else:
            self._pending = [now, *(state.get(p, now) for p in self.paths)]

    def _flush(self) -> None:
        t = self._t
        if self.long:
            for p, v in self._long_pending.items():
                spec = CATALOGUE[p]
                if spec.kind == "enum":
                    self.rows.add((t, p, spec.unit, None, v))
                else:
                    num = None if v is None else float(v)
                    self.rows.add((t, p, spec.unit, num, None))
            self._long_pending = {}
        elif self._pending is not None:
            self.rows.add(self._pending)
            self._pending = None

    def close(self, timeline: Timeline | None = None) -> list[Path]:
        """Write what is pending and the event tables; the files written."""
        self._flush()
        self.rows.close()
        written = [self.path]
        if timeline is not None:
            written += write_tables(timeline, self.path)
        return written


# table name -> the timeline's list, and (column, key, type) per column; lists join with ";"
TABLE_COLUMNS: dict[str, tuple[str, tuple[tuple[str, str, str], ...]]] = {
    "verdicts": (
        "verdicts",
        (
            ("time_s", "t", "float"),
            ("service", "service", "str"),
            ("outcome", "outcome", "str"),
            ("reasons", "reasons", "list"),
            ("warnings", "warnings", "list"),
        ),
    ),
    "sessions": (
        "transitions",
        (
            ("time_s", "t", "float"),
            ("boot", "boot", "float"),
            ("service", "service", "str"),
            ("session_id", "session_id", "str"),
            ("from_state", "from_state", "str"),
            ("to_state", "to_state", "str"),
            ("event", "event", "str"),
            ("reason", "reason", "str"),
        ),
    ),
    "commands": (
        "commands",
        (
            ("time_s", "t", "float"),
            ("command", "command", "str"),
            ("command_id", "command_id", "str"),
            ("source", "source", "str"),
            ("status", "status", "str"),
            ("session_id", "session_id", "str"),
            ("reasons", "reasons", "list"),
        ),
    ),
    "link": (
        "link",
        (
            ("time_s", "t", "float"),
            ("state", "state", "str"),
            ("registered", "registered", "bool"),
            ("plmn", "plmn", "str"),
            ("operator", "operator", "str"),
            ("country", "country", "str"),
            ("roaming", "roaming", "bool"),
        ),
    ),
}


def _cell(value: Any, kind: str) -> Any:
    if kind == "list":
        return ";".join(value)
    if kind == "float" and value is not None:
        return float(value)
    return value


def write_tables(timeline: Timeline, path: Path) -> list[Path]:
    """The event tables next to ``path``; the files written."""
    out = []
    for name, (source, columns) in TABLE_COLUMNS.items():
        target = table_path(path, name)
        types = [("str" if kind == "list" else kind) for _, _, kind in columns]
        writer = _Rows(target, [c for c, _, _ in columns], types)
        try:
            for item in getattr(timeline, source):
                writer.add([_cell(item[key], kind) for _, key, kind in columns])
        finally:
            writer.close()
        out.append(target)
    return out
