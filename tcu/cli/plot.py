"""``tcu plot TRACE -o FILE [SIGNAL ...]``: a replay drawn as one timeline (or exported)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from tcu import validate
from tcu.compose.replay import ReplayOptions, ReplayReport, replay_file
from tcu.output import Progress
from tcu.plot.outputs import Outputs, add_output_arguments, output_options


def register(sub: Any) -> None:
    p = sub.add_parser(
        "plot",
        help="replay a CAN trace and draw its timeline (.png .svg .pdf .html)",
        description="Replay TRACE as tcu replay does and draw one figure on a shared time "
        "axis: the signals, verdicts, sessions, the SIM link, outbox and records.",
    )
    p.add_argument("trace", help="trace file (.asc .blf .log .trc .csv .db .mf4, optionally .gz)")
    p.add_argument(
        "signals",
        nargs="*",
        metavar="SIGNAL",
        help="VSS path or alias (soc, plug, charging, gear, doors, locked, tyres, "
        "outside_temp, speed, ...); default: those",
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="the picture: .png .svg .pdf .html"
    )
    p.add_argument("--dbc", help="CAN database (DBC, KCD, ARXML); needs --mapping")
    p.add_argument("--mapping", help="mapping file from DBC signals to the signal catalogue")
    validate.add_window_and_commands(p)
    add_output_arguments(p)
    p.set_defaults(func=run)
    intermixed(p)


def intermixed(p: argparse.ArgumentParser) -> None:
    """Let positionals follow options (``TRACE -o FILE SIGNAL ...``), as in the usage line."""
    base = type(p)

    class Intermixed(base):  # type: ignore[valid-type,misc]
        _mixing = False

        def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
            if self._mixing:
                return super().parse_known_args(args, namespace)
            self._mixing = True
            try:
                return self.parse_known_intermixed_args(args, namespace)
            finally:
                self._mixing = False

    p.__class__ = Intermixed


def replay_with_outputs(
    opts: ReplayOptions, outputs: Outputs, *, progress: Progress | None
) -> tuple[ReplayReport, list[Path]]:
    """Replay with the outputs' sinks; write the outputs; the report and the files written."""
    if not outputs.wanted:
        return replay_file(opts, progress=progress), []
    opts = ReplayOptions(**{**_fields(opts), "sinks": (*opts.sinks, *outputs.sinks())})
    try:
        report = replay_file(opts, progress=progress)
    except BaseException:
        outputs.close()
        if outputs.opts.export is not None:
            with contextlib.suppress(OSError):
                outputs.opts.export.unlink()
        raise
    end = report.vehicle_time_s + max(0.0, opts.start or 0.0)
    return report, outputs.finish(end, start=opts.start, stop=opts.stop)


def _fields(opts: ReplayOptions) -> dict[str, Any]:
    return {name: getattr(opts, name) for name in opts.__dataclass_fields__}


def run(args: argparse.Namespace) -> int:
    validate.check_window(args.start, args.stop)
    outputs = Outputs(output_options(args, args.output, args.signals, "-o"))
    opts = ReplayOptions(
        trace=Path(args.trace),
        dbc=args.dbc,
        mapping=args.mapping,
        start=args.start,
        stop=args.stop,
        commands=tuple(args.command),
    )
    progress = Progress("replay", total=None)
    try:
        report, written = replay_with_outputs(opts, outputs, progress=progress)
    finally:
        progress.close()
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    tl = outputs.recorder.timeline
    print(
        f"{report.trace}: {report.counts['frames']:,} frames, "
        f"{report.vehicle_time_s:,.0f} s of vehicle time, {len(tl.verdicts)} verdicts, "
        f"{len(tl.sessions())} sessions"
    )
    for path in written:
        print(f"wrote {path}")
    return 0
