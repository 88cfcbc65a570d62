from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcu.errors import TransitionError
from tcu.link.modem import (
    CEREG_OF,
    TRANSITIONS,
    Cereg,
    CeregReport,
    CountryChanged,
    CoverageChanged,
    Modem,
    ModemTimings,
    PowerOff,
    PowerOn,
    RegState,
    SignalChanged,
    Tick,
    next_state,
    select_rat,
)
from tcu.link.operators import Rat, operator

TIMINGS = ModemTimings(
    search_s=(3.0, 9.0),
    attach_home_s=(0.5, 2.0),
    attach_roaming_s=(2.0, 5.0),
    detach_s=(0.3, 1.0),
    retry_s=(1.0, 2.0),
)


def _modem(seed: int = 0, **kwargs: object) -> Modem:
    return Modem(home=operator("242-01"), timings=TIMINGS, seed=seed, **kwargs)  # type: ignore[arg-type]


def _run_until_quiet(modem: Modem, now: float, limit: float) -> list[CeregReport]:
    reports: list[CeregReport] = []
    while (due := modem.next_wakeup()) is not None and due <= limit:
        reports += modem.handle(Tick(), due)
    return reports


def _powered_in(country: str, seed: int = 0, **kwargs: object) -> tuple[Modem, list[CeregReport]]:
    modem = _modem(seed, **kwargs)
    reports = modem.handle(CountryChanged(country=country), 0.0)
    reports += modem.handle(PowerOn(), 0.0)
    reports += _run_until_quiet(modem, 0.0, 1000.0)
    return modem, reports


def test_every_state_has_a_row_and_every_target_is_a_state() -> None:
    assert set(TRANSITIONS) == set(RegState)
    assert set(CEREG_OF) == set(RegState)
    for row in TRANSITIONS.values():
        assert all(isinstance(target, RegState) for target in row.values())


def test_every_state_is_reachable_from_idle() -> None:
    seen = {RegState.IDLE}
    todo = deque([RegState.IDLE])
    while todo:
        for target in TRANSITIONS[todo.popleft()].values():
            if target not in seen:
                seen.add(target)
                todo.append(target)
    assert seen == set(RegState)


def test_cereg_stats_are_the_3gpp_values() -> None:
    assert CEREG_OF[RegState.REGISTERED_HOME] == 1
    assert CEREG_OF[RegState.SEARCHING] == 2
    assert CEREG_OF[RegState.DENIED] == 3
    assert CEREG_OF[RegState.REGISTERED_ROAMING] == 5
    assert CEREG_OF[RegState.IDLE] == 0


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (RegState.IDLE, "attach_home"),
        (RegState.IDLE, "power_off"),
        (RegState.SEARCHING, "power_on"),
        (RegState.REGISTERED_HOME, "search_done"),
        (RegState.REGISTERED_ROAMING, "regained"),
        (RegState.DETACHING, "power_on"),
    ],
)
def test_the_table_rejects_illegal_transitions(state: RegState, event: str) -> None:
    with pytest.raises(TransitionError, match=f"event '{event}' is not allowed in state"):
        next_state(state, event)


def test_walking_every_table_entry_lands_where_the_table_says() -> None:
    for state, row in TRANSITIONS.items():
        for event, target in row.items():
            assert next_state(state, event) is target


def test_powering_on_twice_is_an_illegal_transition() -> None:
    modem = _modem()
    modem.handle(PowerOn(), 0.0)
    with pytest.raises(TransitionError):
        modem.handle(PowerOn(), 1.0)


def test_power_off_while_off_is_an_illegal_transition() -> None:
    with pytest.raises(TransitionError):
        _modem().handle(PowerOff(), 0.0)


@pytest.mark.parametrize("seed", range(20))
def test_registers_home_in_norway_within_the_configured_times(seed: int) -> None:
    modem, reports = _powered_in("NO", seed)
    assert [(r.stat, r.plmn) for r in reports] == [
        (Cereg.SEARCHING, None),
        (Cereg.REGISTERED_HOME, "242-01"),
    ]
    took = reports[1].t - reports[0].t
    assert TIMINGS.search_s[0] + TIMINGS.attach_home_s[0] <= took
    assert took <= TIMINGS.search_s[1] + TIMINGS.attach_home_s[1]
    assert modem.cereg == Cereg.REGISTERED_HOME and modem.country == "NO"


@pytest.mark.parametrize("seed", range(20))
def test_crossing_into_sweden_searches_then_roams_on_the_preferred_partner(seed: int) -> None:
    modem, _ = _powered_in("NO", seed)
    crossed = 500.0
    reports = modem.handle(CountryChanged(country="SE"), crossed)
    assert [(r.stat, r.event) for r in reports] == [(Cereg.SEARCHING, "moved")]
    reports += _run_until_quiet(modem, crossed, crossed + 100)
    registered = reports[-1]
    assert registered.stat == Cereg.REGISTERED_ROAMING
    assert registered.plmn == "240-08" and registered.country == "SE"
    took = registered.t - crossed
    assert TIMINGS.search_s[0] + TIMINGS.attach_roaming_s[0] <= took
    assert took <= TIMINGS.search_s[1] + TIMINGS.attach_roaming_s[1]


def test_a_forbidden_partner_is_denied_and_the_next_network_is_tried() -> None:
    modem, _ = _powered_in("NO", forbidden={"240-08"})
    reports = modem.handle(CountryChanged(country="SE"), 100.0)
    reports += _run_until_quiet(modem, 100.0, 200.0)
    assert [(r.stat, r.plmn) for r in reports] == [
        (Cereg.SEARCHING, None),
        (Cereg.DENIED, "240-08"),
        (Cereg.SEARCHING, None),
        (Cereg.REGISTERED_ROAMING, "240-01"),
    ]


def test_when_every_network_refuses_the_modem_stays_denied_without_timers() -> None:
    refused = {"240-01", "240-02", "240-07", "240-08"}
    modem, _ = _powered_in("NO", forbidden=refused)
    modem.handle(CountryChanged(country="SE"), 100.0)
    reports = _run_until_quiet(modem, 100.0, 1000.0)
    assert sum(r.stat == Cereg.DENIED for r in reports) == 4
    assert modem.cereg == Cereg.DENIED and modem.next_wakeup() is None
    back = modem.handle(CountryChanged(country="NO"), 2000.0)
    back += _run_until_quiet(modem, 2000.0, 3000.0)
    assert back[-1].stat == Cereg.REGISTERED_HOME


def test_losing_coverage_searches_without_timers_until_coverage_returns() -> None:
    modem, _ = _powered_in("NO")
    lost = modem.handle(CoverageChanged(covered=False), 100.0)
    assert [r.stat for r in lost] == [Cereg.SEARCHING]
    assert modem.next_wakeup() is None
    assert modem.handle(Tick(), 5000.0) == []
    modem.handle(CoverageChanged(covered=True), 5000.0)
    back = _run_until_quiet(modem, 5000.0, 6000.0)
    assert back[-1].stat == Cereg.REGISTERED_HOME
    assert back[-1].t - 5000.0 <= TIMINGS.search_s[1] + TIMINGS.attach_home_s[1]


def test_power_off_detaches_within_the_configured_time() -> None:
    modem, _ = _powered_in("NO")
    reports = modem.handle(PowerOff(), 100.0)
    assert modem.state is RegState.DETACHING and reports[0].stat == Cereg.NOT_REGISTERED
    due = modem.next_wakeup()
    assert due is not None
    assert TIMINGS.detach_s[0] <= due - 100.0 <= TIMINGS.detach_s[1]
    modem.handle(Tick(), due)
    assert modem.cereg == Cereg.NOT_REGISTERED and modem.next_wakeup() is None


def test_no_country_means_searching_forever() -> None:
    modem, _ = _powered_in("NO")
    modem.handle(CountryChanged(country=None), 10.0)
    assert modem.cereg == Cereg.SEARCHING and modem.next_wakeup() is None


def test_time_must_not_go_backwards() -> None:
    modem = _modem()
    modem.handle(Tick(), 10.0)
    with pytest.raises(ValueError, match="backwards"):
        modem.handle(Tick(), 9.0)


def test_rat_follows_signal_and_what_the_network_still_runs() -> None:
    assert select_rat(-90.0, operator("240-01").rats) is Rat.LTE
    assert select_rat(-119.0, operator("240-01").rats) is Rat.UMTS
    assert select_rat(-130.0, operator("240-01").rats) is Rat.GSM
    assert select_rat(-119.0, operator("242-01").rats) is Rat.GSM  # 3G switched off
    assert select_rat(-130.0, operator("228-01").rats) is Rat.UMTS  # 2G switched off
    modem, _ = _powered_in("NO")
    modem.handle(SignalChanged(rsrp=-120.0), 50.0)
    assert modem.rat is Rat.GSM


def test_at_line_looks_like_the_unsolicited_result_code() -> None:
    _, reports = _powered_in("NO")
    assert reports[0].at_line() == "+CEREG: 2"
    assert reports[1].at_line() == "+CEREG: 1,,,7"


EVENTS = st.one_of(
    st.builds(CountryChanged, country=st.sampled_from(["NO", "SE", "DK", "DE", None])),
    st.builds(CoverageChanged, covered=st.booleans()),
    st.builds(SignalChanged, rsrp=st.one_of(st.none(), st.floats(-140, -44))),
    st.just(Tick()),
)


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(st.tuples(st.floats(0, 30), EVENTS), max_size=40), seed=st.integers(0, 99))
def test_any_sequence_of_outside_events_keeps_the_modem_consistent(
    steps: list[tuple[float, object]], seed: int
) -> None:
    modem = _modem(seed, forbidden={"238-02"})
    modem.handle(PowerOn(), 0.0)
    now = 0.0
    for gap, event in steps:
        now += gap
        for report in modem.handle(event, now):  # type: ignore[arg-type]
            assert report.t <= now
            assert report.stat in set(Cereg) - {Cereg.UNKNOWN}
        if modem.registered:
            assert modem.covered and modem.serving is not None
            assert modem.serving.country == modem.country
            assert modem.serving.plmn not in modem.forbidden
            assert (modem.cereg == Cereg.REGISTERED_HOME) == (modem.country == "NO")
        wake = modem.next_wakeup()
        assert wake is None or wake > now
