"""Scenario reports: an index of the cases and one page per case with its timeline.

Theory of operation. With ``--report DIR`` (``tcu scenario run``, or ``--scenario-report``
in pytest) the runner attaches a ``CaseRecorder`` to each case's world: a
``TimelineRecorder`` on the world's host (the scenario world has one; a world without a
host gets a page without a timeline) and a list of every expectation checked, expected
against actual, passed or not. When the case ends, its page is written where it ran
(also in a worker process): ``DIR/cases/<file>-<index>-<case>.html``, the case's
timeline (the zoomable page of ``tcu.plot.html``) over the table. Once all cases are in,
``write_index`` writes ``DIR/index.html`` listing them, failures first, each linking its
page; the JUnit XML names each page (``tcu.scenario.report``).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tcu.plot.html import page, timeline_fragment
from tcu.plot.signals import DEFAULT_SIGNALS, resolve
from tcu.plot.timeline import Timeline, TimelineRecorder
from tcu.vehicle.catalogue import CATALOGUE

if TYPE_CHECKING:
    from tcu.scenario.cases import Case
    from tcu.scenario.runner import CaseResult
    from tcu.scenario.world import FieldCheck

CASES = "cases"
INDEX = "index.html"


def page_path(report: Path, file: str, index: int, case: str) -> Path:
    """Where the page of case ``index`` of ``file`` goes."""
    stem = Path(file).as_posix().removesuffix(".yaml").removesuffix(".yml")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{stem}-{index}-{case}").strip("._")[:150]
    return report / CASES / f"{slug}.html"


def result_page(report: Path, result: CaseResult) -> Path:
    return page_path(report, result.file, result.index, result.case)


@dataclass(frozen=True, slots=True, kw_only=True)
class Checked:
    """One expectation as it was checked."""

    step: str
    where: str
    kind: str
    ok: bool
    fields: tuple[FieldCheck, ...] = ()
    detail: str = ""


def case_signals(case: Case) -> list[str]:
    """The default signals and every catalogue signal the case sets or expects."""
    named: list[str] = []
    for step in case.steps:
        if step.action == "set" and isinstance(step.value, dict):
            named += [p for p in step.value if p in CATALOGUE]
        for exp in step.expect:
            if exp.kind == "vehicle":
                named += [p for p in exp.fields if p in CATALOGUE]
    return resolve([*DEFAULT_SIGNALS, *named])


class CaseRecorder:
    """What a case's page shows: the timeline and every expectation checked."""

    def __init__(self, case: Case, world: Any) -> None:
        self.case = case
        self.checks: list[Checked] = []
        self.recorder: TimelineRecorder | None = None
        host = getattr(world, "host", None)
        if host is not None and hasattr(host, "add_sink"):
            self.recorder = TimelineRecorder(case_signals(case))
            host.add_sink(self.recorder)

    def checked(self, step: str, expectation: Any, observation: Any, error: str = "") -> None:
        self.checks.append(
            Checked(
                step=step,
                where=str(expectation.where),
                kind=expectation.kind,
                ok=observation is not None and bool(observation.ok) and not error,
                fields=tuple(observation.fields) if observation is not None else (),
                detail=error or (observation.detail if observation is not None else ""),
            )
        )

    def write(self, report: Path, result: CaseResult) -> Path:
        path = result_page(report, result)
        path.parent.mkdir(parents=True, exist_ok=True)
        timeline = self.recorder.finish(result.vehicle_time_s) if self.recorder else None
        if timeline is not None:  # signals the case never saw would be empty rows
            timeline.signals = [p for p in timeline.signals if timeline.series[p].buckets]
            timeline.marks = step_marks(self.case, result)
        path.write_text(case_page(result, timeline, self.checks), encoding="utf-8")
        return path


def step_marks(case: Case, result: CaseResult) -> list[dict[str, Any]]:
    """The case's steps as marks on its timeline; the step where it failed in red."""
    failed = {f.step for f in result.failures}
    marks = []
    for step in case.steps:
        label = step.describe()
        if step.index < 0 and step.action is None and not step.expect:
            continue
        what = label.split(": ", 1)[-1]
        short = what if len(what) <= 48 else what[:47] + "…"
        marks.append({"t": step.at, "text": short, "detail": what, "bad": label in failed})
    return marks


def _show(value: Any) -> str:
    from tcu.scenario.runner import show

    return show(value)


def checks_table(checks: Sequence[Checked]) -> str:
    rows = [
        "<table><tr><th>step</th><th>expectation</th><th>field</th><th>expected</th>"
        "<th>actual</th><th></th></tr>"
    ]
    for c in checks:
        fields = c.fields or ()
        head = (
            f"<td rowspan={max(1, len(fields))}>{html.escape(c.step)}</td>"
            f"<td rowspan={max(1, len(fields))}>{html.escape(c.kind)}<br>"
            f"<small>{html.escape(c.where)}</small></td>"
        )
        if not fields:
            mark = "ok" if c.ok else "bad"
            rows.append(
                f"<tr>{head}<td colspan=3>{html.escape(c.detail)}</td>"
                f'<td class="{mark}">{"ok" if c.ok else "differs"}</td></tr>'
            )
            continue
        for i, f in enumerate(fields):
            mark = "ok" if f.ok else "bad"
            rows.append(
                f"<tr>{head if i == 0 else ''}<td>{html.escape(f.name)}</td>"
                f"<td>{html.escape(_show(f.expected))}</td>"
                f"<td>{html.escape(_show(f.actual))}</td>"
                f'<td class="{mark}">{"ok" if f.ok else "differs"}</td></tr>'
            )
    rows.append("</table>")
    return "\n".join(rows)


def case_page(result: CaseResult, timeline: Timeline | None, checks: Sequence[Checked]) -> str:
    title = f"{result.file} :: {result.case}"
    mark = "ok" if result.passed else "bad"
    body = [
        '<p><a href="../index.html">all cases</a></p>',
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="{mark}">{result.outcome.upper()}</p>',
        f"<p>{result.vehicle_time_s:,.1f} s of vehicle time, {result.steps_run} of "
        f"{result.steps_total} steps run</p>",
    ]
    if not result.passed:
        body.append(f"<pre>{html.escape(result.render())}</pre>")
    if timeline is not None:
        body.append('<p class="hint">wheel: zoom, drag: pan, double click: whole case</p>')
        body.append(timeline_fragment(timeline, clock=False, title=title))
    body += ["<h2>Expected and actual</h2>", checks_table(checks)]
    return page(title, "\n".join(body) + "\n")


def write_index(report: Path, results: Iterable[CaseResult]) -> Path:
    """``index.html``: every case, failures first, each linking its page."""
    report.mkdir(parents=True, exist_ok=True)
    ordered = sorted(results, key=lambda r: (r.passed, r.file, r.index))
    failed = sum(not r.passed for r in ordered)
    rows = ["<table><tr><th>result</th><th>scenario</th><th>case</th><th>vehicle time</th>"]
    rows[0] += "<th>failure</th></tr>"
    for r in ordered:
        link = result_page(report, r).relative_to(report).as_posix()
        mark = "ok" if r.passed else "bad"
        rows.append(
            f'<tr><td class="{mark}">{"passed" if r.passed else r.outcome.upper()}</td>'
            f"<td>{html.escape(r.file)}</td>"
            f'<td><a href="{html.escape(link)}">{html.escape(r.case)}</a></td>'
            f"<td>{r.vehicle_time_s:,.1f} s</td><td>{html.escape(r.reason)}</td></tr>"
        )
    rows.append("</table>")
    head = f"<h1>Scenarios: {len(ordered) - failed} passed, {failed} failed</h1>"
    path = report / INDEX
    path.write_text(page("tcu scenarios", head + "\n" + "\n".join(rows) + "\n"), encoding="utf-8")
    return path
