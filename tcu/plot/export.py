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
TABLES = ("verdicts", "sessions", "commands", "link")


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


def _table_rows(timeline: Timeline, name: str) -> tuple[list[str], list[str], list[list[Any]]]:
    if name == "verdicts":
        cols = ["time_s", "service", "outcome", "reasons", "warnings"]
        types = ["float", "str", "str", "str", "str"]
        rows = [
            [v["t"], v["service"], v["outcome"], ";".join(v["reasons"]), ";".join(v["warnings"])]
            for v in timeline.verdicts
        ]
    elif name == "sessions":
        cols = ["time_s", "boot", "service", "session_id", "from_state", "to_state", "event"]
        cols.append("reason")
        types = ["float", "float", "str", "str", "str", "str", "str", "str"]
        rows = [
            [
                t["t"],
                float(t["boot"]),
                t["service"],
                t["session_id"],
                t["from_state"],
                t["to_state"],
                t["event"],
                t["reason"],
            ]
            for t in timeline.transitions
        ]
    elif name == "commands":
        cols = ["time_s", "command", "command_id", "source", "status", "session_id", "reasons"]
        types = ["float", "str", "str", "str", "str", "str", "str"]
        rows = [
            [
                c["t"],
                c["command"],
                c["command_id"],
                c["source"],
                c["status"],
                c["session_id"],
                ";".join(c["reasons"]),
            ]
            for c in timeline.commands
        ]
    else:
        cols = ["time_s", "state", "registered", "plmn", "operator", "country", "roaming"]
        types = ["float", "str", "bool", "str", "str", "str", "bool"]
        rows = [
            [
                c["t"],
                c["state"],
                c["registered"],
                c["plmn"],
                c["operator"],
                c["country"],
                c["roaming"],
            ]
            for c in timeline.link
        ]
    return cols, types, rows


def write_tables(timeline: Timeline, path: Path) -> list[Path]:
    """The event tables next to ``path``; the files written."""
    out = []
    for name in TABLES:
        cols, types, rows = _table_rows(timeline, name)
        target = table_path(path, name)
        writer = _Rows(target, cols, types)
        try:
            for row in rows:
                writer.add(row)
        finally:
            writer.close()
        out.append(target)
    return out
