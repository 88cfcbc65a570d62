"""Scenario results for people and for CI: the summary table and JUnit XML."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from tcu.output import table
from tcu.scenario.runner import CaseResult

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
SUITE_NAME = "tcu scenarios"


def counts(results: Sequence[CaseResult]) -> dict[str, int]:
    return {
        "passed": sum(r.outcome == "passed" for r in results),
        "failed": sum(r.outcome == "failed" for r in results),
        "error": sum(r.outcome == "error" for r in results),
    }


def closing_line(results: Sequence[CaseResult]) -> str:
    """``scenarios: 12 passed, 1 failed``; a case that crashed counts as failed."""
    c = counts(results)
    return f"scenarios: {c['passed']} passed, {c['failed'] + c['error']} failed"


def summary_table(results: Sequence[CaseResult], width: int = 60) -> str:
    rows = []
    for r in results:
        reason = r.reason
        if len(reason) > width:
            reason = reason[: width - 3] + "..."
        rows.append(
            (
                r.file,
                r.case,
                r.outcome.upper() if not r.passed else "passed",
                f"{r.vehicle_time_s:,.1f} s",
                f"{r.wall_s * 1000:,.1f} ms",
                reason or "",
            )
        )
    headers = ("scenario", "case", "result", "vehicle time", "wall time", "failure")
    return table(rows, headers=headers)


def _clean(text: str) -> str:
    return _NOT_XML.sub("?", text)


def _classname(file: str) -> str:
    p = Path(file)
    stem = p.name.removesuffix(".yaml").removesuffix(".yml")
    parts = [x for x in p.parent.parts if x not in ("", ".", "..", "/")] + [stem]
    return ".".join(parts).replace(" ", "_")


def junit_xml(results: Sequence[CaseResult], report: Path | None = None) -> ET.ElementTree:
    """JUnit XML: one ``testsuite`` per scenario file, one ``testcase`` per case.

    With ``report`` (the ``--report`` folder) each case names its page: a ``report``
    property and, in ``system-out``, ``[[ATTACHMENT|path]]`` (as Jenkins and GitLab read it).
    """
    c = counts(results)
    root = ET.Element(
        "testsuites",
        name=SUITE_NAME,
        tests=str(len(results)),
        failures=str(c["failed"]),
        errors=str(c["error"]),
        time=f"{sum(r.wall_s for r in results):.6f}",
    )
    by_file: dict[str, list[CaseResult]] = {}
    for r in results:
        by_file.setdefault(r.file, []).append(r)
    for file, group in by_file.items():
        gc = counts(group)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=_clean(file),
            tests=str(len(group)),
            failures=str(gc["failed"]),
            errors=str(gc["error"]),
            skipped="0",
            time=f"{sum(r.wall_s for r in group):.6f}",
        )
        for r in group:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=_clean(_classname(file)),
                name=_clean(r.case),
                file=_clean(file),
                time=f"{r.wall_s:.6f}",
            )
            props = ET.SubElement(case, "properties")
            ET.SubElement(props, "property", name="vehicle_time_s", value=f"{r.vehicle_time_s:g}")
            ET.SubElement(props, "property", name="tags", value=_clean(",".join(r.tags)))
            if report is not None:
                from tcu.scenario.pages import result_page

                page = str(result_page(report, r).resolve())
                ET.SubElement(props, "property", name="report", value=_clean(page))
            if r.outcome != "passed":
                tag = "failure" if r.outcome == "failed" else "error"
                el = ET.SubElement(
                    case,
                    tag,
                    message=_clean(r.reason),
                    type="ScenarioFailure" if tag == "failure" else "ScenarioError",
                )
                el.text = _clean(r.render())
            if report is not None:
                out = ET.SubElement(case, "system-out")
                out.text = _clean(f"[[ATTACHMENT|{page}]]")
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(results: Sequence[CaseResult], path: Path, report: Path | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    junit_xml(results, report).write(path, encoding="utf-8", xml_declaration=True)
