from __future__ import annotations

import pytest

from tcu.errors import ConfigError
from tcu.link.geo import COUNTRIES
from tcu.link.operators import (
    BY_PLMN,
    COUNTRY_MCC,
    OPERATORS,
    PREFERRED_PARTNERS,
    Operator,
    candidates,
    operator,
    operators_in,
    parse_plmn,
)

REQUIRED = ("NO", "SE", "DK", "FI", "DE", "NL", "BE", "FR", "PL", "AT", "CH", "IT", "ES")


@pytest.mark.parametrize("plmn", ["242-01", "240-07", "310-260", "001-01"])
def test_well_formed_plmns_pass(plmn: str) -> None:
    assert parse_plmn(plmn, "x") == plmn


@pytest.mark.parametrize("plmn", ["24x-01", "242-1", "2420-01", "24201", "242-0001", " 242-01", ""])
def test_malformed_plmns_name_the_field(plmn: str) -> None:
    with pytest.raises(ConfigError, match=r"^link\.home_plmn: malformed MCC-MNC"):
        parse_plmn(plmn, "link.home_plmn")


def test_non_string_plmn_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"^f: expected an MCC-MNC string"):
        parse_plmn(24201, "f")


@pytest.mark.parametrize(
    ("plmn", "name", "country"),
    [
        ("242-01", "Telenor Norge", "NO"),
        ("242-02", "Telia Norge", "NO"),
        ("240-01", "Telia Sverige", "SE"),
        ("240-07", "Tele2 Sverige", "SE"),
        ("240-08", "Telenor Sverige", "SE"),
        ("262-01", "Telekom Deutschland", "DE"),
        ("208-01", "Orange France", "FR"),
        ("228-01", "Swisscom", "CH"),
    ],
)
def test_known_operators_have_their_real_codes(plmn: str, name: str, country: str) -> None:
    op = operator(plmn)
    assert (op.name, op.country) == (name, country)


@pytest.mark.parametrize("country", REQUIRED)
def test_every_required_country_has_several_networks_with_its_mcc(country: str) -> None:
    ops = operators_in(country)
    assert len(ops) >= 3
    assert {op.mcc for op in ops} == {COUNTRY_MCC[country]}
    assert country in COUNTRIES


def test_plmns_are_unique_and_mccs_distinct_per_country() -> None:
    assert len(BY_PLMN) == len(OPERATORS)
    assert len(set(COUNTRY_MCC.values())) == len(COUNTRY_MCC)


def test_operator_rejects_an_mcc_from_another_country() -> None:
    with pytest.raises(ConfigError, match=r"^plmn: MCC 240 is not NO's \(242\)"):
        Operator(plmn="240-99", name="x", country="NO")


def test_unknown_but_well_formed_operator_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"^link\.home_plmn: unknown operator 242-99$"):
        operator("242-99", "link.home_plmn")


def test_preferred_partner_table_refers_to_real_networks_of_each_country() -> None:
    for home, by_country in PREFERRED_PARTNERS.items():
        assert home in BY_PLMN
        for country, plmns in by_country.items():
            assert country != BY_PLMN[home].country
            assert all(BY_PLMN[p].country == country for p in plmns)


def test_at_home_only_the_home_network_is_a_candidate() -> None:
    assert candidates(operator("242-01"), "NO") == (operator("242-01"),)


def test_abroad_the_preferred_partner_comes_first_then_every_other_network() -> None:
    telenor_no = operator("242-01")
    order = [op.plmn for op in candidates(telenor_no, "SE")]
    assert order[0] == "240-08"
    assert sorted(order) == sorted(op.plmn for op in operators_in("SE"))
    telia_no = operator("242-02")
    assert candidates(telia_no, "SE")[0].plmn == "240-01"
    assert candidates(telia_no, "DK")[0].plmn == "238-20"


def test_agreements_rank_before_group_ties_and_overrides_before_both() -> None:
    telenor_no = operator("242-01")
    assert candidates(telenor_no, "DE")[0].plmn == "262-01"
    assert [op.plmn for op in candidates(telenor_no, "SE", {"SE": ("240-07",)})][:2] == [
        "240-07",
        "240-01",
    ]


def test_no_country_means_no_candidates() -> None:
    assert candidates(operator("242-01"), None) == ()
