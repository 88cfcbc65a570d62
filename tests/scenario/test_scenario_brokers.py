"""The same scenarios through a real broker: every message crosses amqtt or Mosquitto."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcu.scenario.cases import Case
from tcu.scenario.loader import load_file
from tcu.scenario.runner import run_case
from tcu.scenario.scenario_world import ScenarioWorld
from tcu.scenario.world import WorldOptions

SUITE = Path(__file__).resolve().parents[2] / "scenarios"


def cases(name: str) -> list[Case]:
    return list(load_file(SUITE / name).cases)


@pytest.mark.parametrize("broker", ["embedded", "mosquitto"])
def test_broker_restart_and_hostile_commands_through_a_real_broker(
    broker: str, request: pytest.FixtureRequest
) -> None:
    if broker == "mosquitto":
        request.getfixturevalue("mosquitto_binary")
    worlds: list[ScenarioWorld] = []

    def factory(case: Case, options: WorldOptions) -> ScenarioWorld:
        worlds.append(ScenarioWorld(case, options))
        return worlds[-1]

    chosen = [
        c
        for c in cases("resilience/resilience.yaml") + cases("security/hostile_commands.yaml")
        if c.name in {"broker restart", "forged unlock", "replayed unlock"}
    ]
    assert len(chosen) == 3
    for case in chosen:
        result = run_case(case, options=WorldOptions(broker=broker), factory=factory)
        assert result.passed, result.render()
    for world in worlds:
        relay = world.relay
        assert relay is not None and relay.kind == broker
        assert relay.carried > 5 and relay.lost == 0


def test_an_unknown_broker_is_refused() -> None:
    with pytest.raises(Exception, match="--broker 'rabbit'"):
        WorldOptions(broker="rabbit")
