"""Running scenarios: steps in vehicle-time order against a world, expectations checked on the way.

Theory of operation. For each step the runner advances the world to the step's time,
carries out its action (an ``advance`` step moves the clock on instead), then checks the
step's expectations at that time. The first step with a failed expectation, or whose
action the world cannot carry out, ends the case: what follows would only repeat the
failure. Otherwise the world runs on to ``until`` (or the end of the bus source) and the
``expect_end`` expectations are checked there. Nothing reads the wall clock except to
report how long a case took; the same case gives the same result on every run.

``run_cases`` runs many cases, in this process or in ``jobs`` worker processes
(``concurrent.futures.ProcessPoolExecutor``); results come back in the cases' order
either way. A user's mistake (``TcuError``: unreadable trace, bad option) propagates;
a crash inside the world becomes an ``error`` result with its traceback.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Protocol

from tcu.errors import TcuError
from tcu.scenario.cases import Case, Expectation, ScenarioFile, format_time
from tcu.scenario.loader import load_file
from tcu.scenario.world import (
    FieldCheck,
    NotSupported,
    Observation,
    World,
    WorldFactory,
    WorldOptions,
    resolve_factory,
)

Outcome = Literal["passed", "failed", "error"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """Why a case failed: where in the file, at which step, and expected against actual."""

    where: str
    step: str
    what: str
    message: str
    fields: tuple[FieldCheck, ...] = ()
    context: tuple[tuple[str, Any], ...] = ()

    def render(self, case: str = "") -> str:
        bad = [c.name for c in self.fields if not c.ok]
        differ = f" ({', '.join(bad)})" if bad else ""
        head = f"{self.where}: {self.what}: {self.message}{differ}"
        where = f"  in {case!r}, " if case else "  at "
        lines = [head, f"{where}{self.step}"]
        if self.fields:
            lines.append(_diff_table(self.fields, self.context))
        return "\n".join(lines)


class Pages(Protocol):
    """What keeps a case's page while it runs (``tcu.scenario.pages.CaseRecorder``)."""

    def checked(
        self,
        step: str,
        expectation: Expectation,
        observation: Observation | None,
        error: str = "",
    ) -> None: ...

    def write(self, report: Path, result: CaseResult) -> Path: ...


Recorder = Callable[[Case, World], Pages]


def show(value: Any) -> str:
    """A value as the scenario file would write it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    return str(value)


def _diff_table(fields: Sequence[FieldCheck], context: Sequence[tuple[str, Any]] = ()) -> str:
    rows = [("field", "expected", "actual", "")]
    rows += [
        (f.name, show(f.expected), show(f.actual), "" if f.ok else "<-- differs") for f in fields
    ]
    rows += [(name, "(not checked)", show(value), "") for name, value in context]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    out = []
    for r in rows:
        line = "    " + "  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3]
        out.append(line.rstrip())
    return "\n".join(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseResult:
    file: str
    case: str
    index: int
    tags: tuple[str, ...]
    outcome: Outcome
    vehicle_time_s: float
    wall_s: float
    steps_run: int
    steps_total: int
    failures: tuple[Failure, ...] = ()

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"

    @property
    def reason(self) -> str:
        """The first failure in one line, for tables."""
        if not self.failures:
            return ""
        f = self.failures[0]
        bad = [c.name for c in f.fields if not c.ok]
        extra = f" ({', '.join(bad)})" if bad else ""
        return f"{f.what}: {f.message.splitlines()[0]}{extra}"

    def render(self) -> str:
        """Every failure of the case, each with its diff; the first line says it all."""
        if not self.failures:
            return f"{self.file}::{self.case} {self.outcome}"
        lines = [f.render(self.case) for f in self.failures]
        if self.steps_run < self.steps_total:
            lines.append(f"(the case stopped after {self.steps_run} of {self.steps_total} steps)")
        return "\n".join(lines)


def _expect(
    world: World,
    expectations: Iterable[Expectation],
    now: float,
    step: str,
    pages: Pages | None = None,
) -> list[Failure]:
    failures = []
    for exp in expectations:
        what = f"expect {exp.kind}"
        try:
            obs = world.observe(exp, now)
        except NotSupported as e:
            if pages is not None:
                pages.checked(step, exp, None, str(e))
            failures.append(Failure(where=str(exp.where), step=step, what=what, message=str(e)))
            continue
        if pages is not None:
            pages.checked(step, exp, obs)
        if not obs.ok:
            message = obs.detail or "the actual values differ"
            checked = {c.name for c in obs.fields}
            context = tuple(
                (k, v)
                for k, v in (obs.actual or {}).items()
                if k not in checked and exp.kind in ("verdict", "session", "command")
            )
            failures.append(
                Failure(
                    where=str(exp.where),
                    step=step,
                    what=what,
                    message=message,
                    fields=obs.fields,
                    context=context,
                )
            )
    return failures


def run_case(
    case: Case,
    *,
    options: WorldOptions | None = None,
    factory: WorldFactory | None = None,
    report: Path | None = None,
    recorder: Recorder | None = None,
) -> CaseResult:
    """Run one case in a new world; TcuError (a bad trace, a bad option) propagates.

    With ``report`` (a folder) the case's page, kept by ``recorder(case, world)`` (such as
    ``tcu.scenario.pages.CaseRecorder``), is written there.
    """
    if report is not None and recorder is None:
        raise ValueError("a report folder needs a recorder of the case's page")
    options = options or WorldOptions()
    factory = factory or resolve_factory()
    wall0 = time.perf_counter()
    world = factory(case, options)
    pages = recorder(case, world) if report is not None and recorder is not None else None
    failures: list[Failure] = []
    outcome: Outcome = "passed"
    now = 0.0
    steps_run = 0
    try:
        for step in case.steps:
            world.advance(step.at)
            now = step.at
            label = step.describe()
            if step.action == "advance":
                world.advance(step.ends_at)
                now = step.ends_at
            elif step.action is not None:
                try:
                    world.apply(step, now)
                except NotSupported as e:
                    failures.append(
                        Failure(where=str(step.where), step=label, what=step.action, message=str(e))
                    )
            if not failures:
                failures += _expect(world, step.expect, now, label, pages)
            if step.index >= 0:
                steps_run += 1
            if failures:
                break
        else:
            now = world.finish(case.until)
            failures += _expect(world, case.expect_end, now, f"end at {format_time(now)}", pages)
        if failures:
            outcome = "failed"
    except TcuError as e:
        if not isinstance(e, NotSupported):
            raise
        failures.append(Failure(where=str(case.where), step="", what="world", message=str(e)))
        outcome = "failed"
    except Exception as e:  # noqa: BLE001 - a crash in the world is reported, not raised
        failures.append(
            Failure(
                where=str(case.where),
                step=f"at {format_time(now)}",
                what="error",
                message=f"{type(e).__name__}: {e}\n{traceback.format_exc()}",
            )
        )
        outcome = "error"
    finally:
        world.close()
    result = CaseResult(
        file=case.file,
        case=case.name,
        index=case.index,
        tags=case.tags,
        outcome=outcome,
        vehicle_time_s=now,
        wall_s=time.perf_counter() - wall0,
        steps_run=steps_run,
        steps_total=sum(s.index >= 0 for s in case.steps),
        failures=tuple(failures),
    )
    if pages is not None and report is not None:
        pages.write(report, result)
    return result


@lru_cache(maxsize=64)
def _load(path: str) -> ScenarioFile:
    return load_file(path)


def _run_job(
    path: str,
    index: int,
    broker: str,
    world: str | None,
    report: Path | None,
    recorder: Recorder | None,
) -> CaseResult:
    case = _load(path).cases[index]
    options = WorldOptions(broker=broker)
    factory = resolve_factory(world)
    return run_case(case, options=options, factory=factory, report=report, recorder=recorder)


def run_cases(
    cases: Sequence[Case],
    *,
    jobs: int = 1,
    options: WorldOptions | None = None,
    world: str | None = None,
    on_result: Callable[[CaseResult], None] | None = None,
    report: Path | None = None,
    recorder: Recorder | None = None,
) -> list[CaseResult]:
    """Run ``cases`` (in ``jobs`` processes when > 1); results in the order of ``cases``.

    ``world`` names the world factory as ``module:attribute`` (see ``resolve_factory``);
    worker processes load each case again from its file. With ``report`` each case
    writes its page into that folder.
    """
    options = options or WorldOptions()
    results: list[CaseResult | None] = [None] * len(cases)
    if jobs <= 1 or len(cases) <= 1:
        factory = resolve_factory(world)
        for i, case in enumerate(cases):
            results[i] = run_case(
                case, options=options, factory=factory, report=report, recorder=recorder
            )
            if on_result is not None:
                on_result(results[i])  # type: ignore[arg-type]
    else:
        resolve_factory(world)
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = {
                pool.submit(_run_job, c.file, c.index, options.broker, world, report, recorder): i
                for i, c in enumerate(cases)
            }
            try:
                for fut in as_completed(futures):
                    i = futures[fut]
                    results[i] = fut.result()
                    if on_result is not None:
                        on_result(results[i])  # type: ignore[arg-type]
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    return [r for r in results if r is not None]
