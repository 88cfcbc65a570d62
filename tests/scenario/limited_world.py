"""A scenario world that can do less than the real one: for the runner's NotSupported paths."""

from __future__ import annotations

from tcu.errors import ConfigError
from tcu.scenario.cases import Case, Expectation, Step
from tcu.scenario.scenario_world import ScenarioWorld
from tcu.scenario.world import NotSupported, Observation, WorldOptions

CAN = frozenset({"set", "release", "command"})
SEES = frozenset({"verdict", "session", "vehicle", "command"})


class LimitedWorld(ScenarioWorld):
    """Bus overrides and commands only, in memory only; anything else is NotSupported."""

    def __init__(self, case: Case, options: WorldOptions) -> None:
        if options.broker != "memory":
            raise ConfigError(f"--broker {options.broker}: LimitedWorld takes only memory")
        super().__init__(case, options)

    def apply(self, step: Step, now: float) -> None:
        if step.action not in CAN:
            raise NotSupported(str(step.action))
        super().apply(step, now)

    def observe(self, expectation: Expectation, now: float) -> Observation:
        if expectation.kind not in SEES:
            raise NotSupported(expectation.kind)
        return super().observe(expectation, now)
