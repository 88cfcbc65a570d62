"""``tcu scenario run|validate PATH...``: YAML scenario suites, in virtual time, for CI."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tcu import validate
from tcu.errors import ConfigError
from tcu.output import Progress
from tcu.scenario.pages import CaseRecorder
from tcu.scenario.world import add_shared_options


def register(sub: Any) -> None:
    p = sub.add_parser("scenario", help="run or check YAML scenario suites")
    ssub = p.add_subparsers(dest="scenario_command", metavar="ACTION", required=True)

    run = ssub.add_parser("run", help="run scenario files; exit 1 if any case fails")
    run.add_argument("paths", nargs="+", metavar="PATH", help="scenario files or directories")
    run.add_argument("--junit-xml", metavar="FILE", help="write a JUnit XML report")
    run.add_argument(
        "-j", "--jobs", type=validate.jobs, default=1, metavar="N", help="run in N processes"
    )
    add_shared_options(run.add_argument)
    run.add_argument(
        "-m",
        "--tag",
        action="append",
        default=[],
        metavar="TAG",
        help="run only cases with this tag (repeatable: any of them)",
    )
    run.add_argument(
        "-k", "--keyword", metavar="TEXT", help="run only cases whose name contains TEXT"
    )
    run.set_defaults(func=run_command)

    val = ssub.add_parser("validate", help="check scenario files; exit 2 on any problem")
    val.add_argument("paths", nargs="+", metavar="PATH", help="scenario files or directories")
    val.add_argument(
        "--pending", action="store_true", help="also check scenarios/**/pending/ files"
    )
    val.set_defaults(func=validate_command)


def _load(paths: list[str], pending: bool) -> Any:
    from tcu.scenario.loader import ScenarioError, load_paths

    try:
        return load_paths(paths, include_pending=pending)
    except ScenarioError as e:
        for line in e.problems:
            print(f"error: {line}", file=sys.stderr)
        return None


def validate_command(args: argparse.Namespace) -> int:
    files = _load(args.paths, args.pending)
    if files is None:
        return 2
    n = sum(len(f.cases) for f in files)
    print(f"ok: {len(files)} files, {n} cases")
    return 0


def run_command(args: argparse.Namespace) -> int:
    from tcu.scenario.report import closing_line, summary_table, write_junit
    from tcu.scenario.runner import CaseResult, run_cases
    from tcu.scenario.world import WorldOptions, resolve_factory

    options = WorldOptions(broker=args.broker)
    resolve_factory(args.world)
    files = _load(args.paths, args.pending)
    if files is None:
        return 2
    cases = [c for f in files for c in f.cases]
    if args.tag:
        cases = [c for c in cases if set(args.tag) & set(c.tags)]
    if args.keyword:
        cases = [c for c in cases if args.keyword in c.name]
    if not cases:
        print("no cases selected", file=sys.stderr)
        return 2
    progress = Progress("scenarios", total=float(len(cases)))
    done: list[CaseResult] = []

    def on_result(result: CaseResult) -> None:
        done.append(result)
        failed = sum(not r.passed for r in done)
        progress.update(float(len(done)), f"{len(done)}/{len(cases)}, {failed} failed")

    jobs = min(args.jobs, len(cases))
    report = Path(args.report) if args.report else None
    if report is not None and report.exists() and not report.is_dir():
        raise ConfigError(f"--report {report}: not a folder")
    try:
        results = run_cases(
            cases,
            jobs=jobs,
            options=options,
            world=args.world,
            on_result=on_result,
            report=report,
            recorder=CaseRecorder,
        )
    finally:
        progress.close()
    print(summary_table(results))
    failed = [r for r in results if not r.passed]
    if failed:
        print()
        for r in failed:
            print(f"--- {r.file}::{r.case}")
            print(r.render())
            print()
    if report is not None:
        from tcu.scenario.pages import write_index

        print(f"report: {write_index(report, results)}")
    if args.junit_xml:
        write_junit(results, Path(args.junit_xml), report=report)
    print(closing_line(results))
    return 1 if failed else 0
