"""pytest plugin (entry point ``pytest11``): scenario files become test items.

Theory of operation. ``pytest_collect_file`` takes the files that ``is_scenario_file``
accepts (``scenario_*.yaml``, ``*.scenario.yaml``, or YAML below a ``scenarios``
directory, leaving out ``scenarios/**/pending/`` unless ``--scenario-pending``), judged
on the path relative to the rootdir. Each case of a file is one item, named by the
case. A file with problems fails collection with every problem as ``file:line:col``.
The case's tags become markers, registered as they are met so ``--strict-markers``
and warnings-as-errors stay quiet, and ``-m charging`` selects. A failed case shows
the step, then each expectation's fields, expected against actual. With
``--scenario-report DIR`` each case writes its page there, names it in the JUnit XML
(``report`` property), and the index is written when the session ends. Heavy imports wait
until a scenario file is actually collected.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tcu.scenario.discover import is_scenario_file
from tcu.scenario.world import add_shared_options

if TYPE_CHECKING:
    from tcu.scenario.cases import Case
    from tcu.scenario.runner import CaseResult

SCENARIO_MARKER = "scenario"
RESULTS = pytest.StashKey[list["CaseResult"]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tcu-scenarios", "tcu scenario suites")
    add_shared_options(group.addoption, "scenario-")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{SCENARIO_MARKER}: a case of a YAML scenario file")
    config.stash[RESULTS] = []


def pytest_sessionfinish(session: pytest.Session) -> None:
    """With ``--scenario-report DIR``: the index of the cases that ran."""
    report = session.config.getoption("scenario_report")
    results = session.config.stash.get(RESULTS, [])
    if report and results:
        from tcu.scenario.pages import write_index

        write_index(Path(report), results)


def _relative(path: Path, root: Path) -> Path:
    try:
        return path.relative_to(root)
    except ValueError:
        return path


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix not in (".yaml", ".yml"):
        return None
    config = parent.config
    rel = _relative(file_path, config.rootpath)
    if not is_scenario_file(rel, include_pending=config.getoption("scenario_pending")):
        return None
    collector: pytest.Collector = ScenarioFileCollector.from_parent(parent, path=file_path)
    return collector


def _register(config: pytest.Config, tag: str) -> None:
    known = {line.split(":", 1)[0].split("(", 1)[0].strip() for line in config.getini("markers")}
    if tag not in known:
        config.addinivalue_line("markers", f"{tag}: scenario tag")


class ScenarioFileCollector(pytest.File):
    def collect(self) -> Iterator[ScenarioItem]:
        from tcu.scenario.loader import load_file

        loaded = load_file(_relative(self.path, Path.cwd()))
        for case in loaded.cases:
            for tag in case.tags:
                _register(self.config, tag)
            item = ScenarioItem.from_parent(self, name=case.name, case=case)
            item.add_marker(SCENARIO_MARKER)
            for tag in case.tags:
                item.add_marker(tag)
            yield item

    def repr_failure(  # type: ignore[override]
        self, excinfo: pytest.ExceptionInfo[BaseException]
    ) -> str | Any:
        from tcu.scenario.loader import ScenarioError

        if isinstance(excinfo.value, ScenarioError):
            return "invalid scenario file:\n" + "\n".join(excinfo.value.problems)
        return super().repr_failure(excinfo)


class ScenarioFailed(Exception):
    def __init__(self, result: CaseResult) -> None:
        super().__init__(result.reason)
        self.result = result


class ScenarioItem(pytest.Item):
    def __init__(self, *, case: Case, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case

    def runtest(self) -> None:
        from tcu.scenario.runner import run_case
        from tcu.scenario.world import WorldOptions, resolve_factory

        config = self.config
        report = config.getoption("scenario_report")
        from tcu.scenario.pages import CaseRecorder

        result = run_case(
            self.case,
            options=WorldOptions(broker=config.getoption("scenario_broker")),
            factory=resolve_factory(config.getoption("scenario_world")),
            report=Path(report) if report else None,
            recorder=CaseRecorder if report else None,
        )
        self.user_properties.append(("vehicle_time_s", round(result.vehicle_time_s, 6)))
        if report:
            from tcu.scenario.pages import result_page

            config.stash[RESULTS].append(result)
            page = str(result_page(Path(report), result).resolve())
            self.user_properties.append(("report", page))
        if not result.passed:
            raise ScenarioFailed(result)

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: Any = None,
    ) -> str | Any:
        from tcu.errors import TcuError

        if isinstance(excinfo.value, ScenarioFailed):
            return excinfo.value.result.render()
        if isinstance(excinfo.value, TcuError):
            return f"{self.case.where}: error: {excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.case.where.line - 1, f"scenario: {self.case.name}"
