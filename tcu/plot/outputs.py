"""What ``tcu plot`` and ``tcu replay --plot/--export`` ask for, checked before the replay.

Theory of operation. ``Outputs`` is made from the options before anything runs: a plot
suffix it cannot write, a folder that does not exist, a signal name it does not know or a
library that is missing is an ``error:`` before the first frame. It hands the replay its
sinks (a ``TimelineRecorder`` and, for ``--export``, a ``SignalExport`` that streams
rows as they come), and once the replay is done ``finish`` writes the picture and the
event tables and returns the files written.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from tcu.errors import ConfigError
from tcu.plot.deps import check_installed
from tcu.plot.export import SignalExport, check_export_path
from tcu.plot.signals import resolve
from tcu.plot.timeline import TimelineRecorder
from tcu.runtime.host import Sink

PLOT_SUFFIXES = (".png", ".svg", ".pdf", ".html")


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputOptions:
    plot: Path | None = None
    export: Path | None = None
    long: bool = False
    signals: tuple[str, ...] = ()
    clock: bool = True
    title: str = ""
    plot_option: str = "--plot"


def check_plot_path(path: Path, option: str) -> None:
    suffix = path.suffix.lower()
    if suffix not in PLOT_SUFFIXES:
        raise ConfigError(f"{option} {path}: the suffix must be one of {', '.join(PLOT_SUFFIXES)}")
    if not path.parent.is_dir():
        raise ConfigError(f"{option} {path}: folder {path.parent} does not exist")
    if suffix != ".html":
        check_installed("matplotlib", f"{option} {path}")


class Outputs:
    """The sinks a replay needs for a plot and an export, and writing them at the end."""

    def __init__(self, opts: OutputOptions) -> None:
        self.opts = opts
        if opts.plot is not None:
            check_plot_path(opts.plot, opts.plot_option)
        if opts.export is not None:
            check_export_path(opts.export)
        if opts.long and opts.export is None:
            raise ConfigError("--long: only with --export")
        if opts.signals and opts.plot is None:
            raise ConfigError(f"{opts.signals[0]}: signals to draw only with {opts.plot_option}")
        paths = resolve(opts.signals) if opts.plot is not None else []
        self.recorder = TimelineRecorder(paths)
        self.export = SignalExport(opts.export, long=opts.long) if opts.export else None

    @property
    def wanted(self) -> bool:
        return self.opts.plot is not None or self.opts.export is not None

    def sinks(self) -> tuple[Sink, ...]:
        if not self.wanted:
            return ()
        return (self.recorder,) if self.export is None else (self.recorder, self.export)

    def finish(
        self, end: float, *, start: float | None = None, stop: float | None = None
    ) -> list[Path]:
        """Write the plot and the export; the files written. ``start``/``stop``: the
        replay's window, which the plot shows (the world's own timers ran from 0)."""
        timeline = self.recorder.finish(end, start=start, stop=stop)
        written: list[Path] = []
        if self.export is not None:
            written += self.export.close(timeline)
        plot = self.opts.plot
        if plot is not None:
            if plot.suffix.lower() == ".html":
                from tcu.plot.html import write_html

                write_html(timeline, plot, clock=self.opts.clock, title=self.opts.title)
            else:
                from tcu.plot.figure import save_figure

                save_figure(timeline, plot, clock=self.opts.clock, title=self.opts.title)
            written.append(plot)
        return written

    def close(self) -> None:
        """Close the export's file after a failed replay."""
        if self.export is not None:
            self.export.rows.close()


def add_output_arguments(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--export``, ``--long`` and ``--time``, the same on ``tcu replay`` and ``tcu plot``."""
    p.add_argument(
        "--export",
        metavar="FILE",
        help="decoded signals to FILE (.csv or .parquet), and FILE's stem + .verdicts, "
        ".sessions, .commands, .link tables next to it",
    )
    p.add_argument(
        "--long", action="store_true", help="export one row per signal change (time, signal, value)"
    )
    p.add_argument(
        "--time",
        choices=("clock", "vehicle"),
        default="clock",
        help="time axis of a plot: UTC clock time (default, when the trace has it) or "
        "vehicle time since the first frame",
    )


def output_options(
    args: argparse.Namespace, plot: str | None, signals: list[str], option: str
) -> OutputOptions:
    return OutputOptions(
        plot=Path(plot) if plot else None,
        export=Path(args.export) if args.export else None,
        long=args.long,
        signals=tuple(signals),
        clock=args.time == "clock",
        title=Path(args.trace).name,
        plot_option=option,
    )
