"""Mobile operators the van's SIM can register on, and whom it prefers abroad.

Theory of operation: a PLMN is written ``MCC-MNC`` (``"242-01"``): a 3-digit mobile
country code and a 2- or 3-digit mobile network code (ITU-T E.212). `OPERATORS` holds
the public land mobile networks of the countries the van drives in, with the radio
access technologies each still runs. At home the SIM registers only on its home PLMN;
abroad it tries the home operator's preferred roaming partners for that country first
(its own group's network, or an explicit agreement in `PREFERRED_PARTNERS`), then the
remaining networks of the country in table order, largest first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from tcu.errors import ConfigError

_PLMN_RE = re.compile(r"(?P<mcc>[0-9]{3})-(?P<mnc>[0-9]{2,3})")


class Rat(StrEnum):
    """Radio access technology of the serving cell."""

    LTE = "LTE"
    UMTS = "UMTS"
    GSM = "GSM"
    NONE = "none"


ALL_RATS: tuple[Rat, ...] = (Rat.LTE, Rat.UMTS, Rat.GSM)

COUNTRY_MCC: Mapping[str, str] = {
    "NO": "242",
    "SE": "240",
    "DK": "238",
    "FI": "244",
    "DE": "262",
    "NL": "204",
    "BE": "206",
    "LU": "270",
    "FR": "208",
    "PL": "260",
    "AT": "232",
    "CH": "228",
    "IT": "222",
    "ES": "214",
}


def parse_plmn(value: object, field: str) -> str:
    """Validate an ``MCC-MNC`` string and return it; `field` names it in the error."""
    if not isinstance(value, str):
        raise ConfigError(f"{field}: expected an MCC-MNC string such as '242-01', got {value!r}")
    if _PLMN_RE.fullmatch(value) is None:
        raise ConfigError(
            f"{field}: malformed MCC-MNC {value!r} (want a 3-digit MCC, '-', and a 2- or "
            "3-digit MNC, e.g. '242-01')"
        )
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Operator:
    """One public land mobile network."""

    plmn: str
    name: str
    country: str
    group: str | None = None
    rats: tuple[Rat, ...] = ALL_RATS

    def __post_init__(self) -> None:
        parse_plmn(self.plmn, "plmn")
        expected = COUNTRY_MCC.get(self.country)
        if expected is None:
            raise ConfigError(f"country: unknown country {self.country!r}")
        if self.mcc != expected:
            raise ConfigError(f"plmn: MCC {self.mcc} is not {self.country}'s ({expected})")
        if not self.rats or Rat.NONE in self.rats:
            raise ConfigError(f"rats: {self.plmn} needs at least one real RAT")

    @property
    def mcc(self) -> str:
        return self.plmn[:3]

    @property
    def mnc(self) -> str:
        return self.plmn[4:]


_NO_3G = (Rat.LTE, Rat.GSM)
_NO_2G = (Rat.LTE, Rat.UMTS)

OPERATORS: tuple[Operator, ...] = (
    Operator(plmn="242-01", name="Telenor Norge", country="NO", group="Telenor", rats=_NO_3G),
    Operator(plmn="242-02", name="Telia Norge", country="NO", group="Telia", rats=_NO_3G),
    Operator(plmn="242-14", name="Ice", country="NO", rats=(Rat.LTE,)),
    Operator(plmn="240-01", name="Telia Sverige", country="SE", group="Telia"),
    Operator(plmn="240-07", name="Tele2 Sverige", country="SE", group="Tele2"),
    Operator(plmn="240-08", name="Telenor Sverige", country="SE", group="Telenor"),
    Operator(plmn="240-02", name="Tre Sverige", country="SE", group="Hutchison"),
    Operator(plmn="238-01", name="TDC", country="DK"),
    Operator(plmn="238-02", name="Telenor Danmark", country="DK", group="Telenor"),
    Operator(plmn="238-20", name="Telia Danmark", country="DK", group="Telia"),
    Operator(plmn="238-06", name="3 Danmark", country="DK", group="Hutchison"),
    Operator(plmn="244-05", name="Elisa", country="FI"),
    Operator(plmn="244-91", name="Telia Finland", country="FI", group="Telia"),
    Operator(plmn="244-12", name="DNA", country="FI", group="Telenor"),
    Operator(plmn="262-01", name="Telekom Deutschland", country="DE", group="DT", rats=_NO_3G),
    Operator(plmn="262-02", name="Vodafone DE", country="DE", group="Vodafone", rats=_NO_3G),
    Operator(plmn="262-03", name="Telefonica O2 DE", country="DE", group="Telefonica", rats=_NO_3G),
    Operator(plmn="204-08", name="KPN", country="NL", rats=_NO_3G),
    Operator(plmn="204-04", name="Vodafone NL", country="NL", group="Vodafone", rats=_NO_3G),
    Operator(plmn="204-16", name="Odido", country="NL", rats=_NO_3G),
    Operator(plmn="206-01", name="Proximus", country="BE"),
    Operator(plmn="206-10", name="Orange Belgium", country="BE", group="Orange"),
    Operator(plmn="206-20", name="BASE", country="BE"),
    Operator(plmn="270-01", name="POST Luxembourg", country="LU"),
    Operator(plmn="270-77", name="Tango", country="LU"),
    Operator(plmn="270-99", name="Orange Luxembourg", country="LU", group="Orange"),
    Operator(plmn="208-01", name="Orange France", country="FR", group="Orange"),
    Operator(plmn="208-10", name="SFR", country="FR"),
    Operator(plmn="208-20", name="Bouygues Telecom", country="FR"),
    Operator(plmn="208-15", name="Free Mobile", country="FR", group="Iliad"),
    Operator(plmn="260-01", name="Plus", country="PL"),
    Operator(plmn="260-02", name="T-Mobile Polska", country="PL", group="DT"),
    Operator(plmn="260-03", name="Orange Polska", country="PL", group="Orange"),
    Operator(plmn="260-06", name="Play", country="PL", group="Iliad"),
    Operator(plmn="232-01", name="A1 Telekom Austria", country="AT"),
    Operator(plmn="232-03", name="Magenta Telekom", country="AT", group="DT"),
    Operator(plmn="232-10", name="Drei", country="AT", group="Hutchison"),
    Operator(plmn="228-01", name="Swisscom", country="CH", rats=_NO_2G),
    Operator(plmn="228-02", name="Sunrise", country="CH", rats=_NO_2G),
    Operator(plmn="228-03", name="Salt", country="CH", rats=_NO_2G),
    Operator(plmn="222-01", name="TIM", country="IT"),
    Operator(plmn="222-10", name="Vodafone IT", country="IT", group="Vodafone"),
    Operator(plmn="222-88", name="WindTre", country="IT", group="Hutchison"),
    Operator(plmn="222-50", name="Iliad Italia", country="IT", group="Iliad"),
    Operator(plmn="214-07", name="Movistar", country="ES", group="Telefonica"),
    Operator(plmn="214-01", name="Vodafone ES", country="ES", group="Vodafone"),
    Operator(plmn="214-03", name="Orange Espana", country="ES", group="Orange"),
    Operator(plmn="214-04", name="Yoigo", country="ES"),
)

BY_PLMN: Mapping[str, Operator] = {op.plmn: op for op in OPERATORS}

PREFERRED_PARTNERS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "242-01": {"DE": ("262-01",), "NL": ("204-08",), "PL": ("260-02",), "AT": ("232-03",)},
    "242-02": {"DE": ("262-02",), "NL": ("204-08",), "FR": ("208-01",)},
    "242-14": {"SE": ("240-07",), "DK": ("238-01",), "FI": ("244-05",)},
    "240-01": {"NO": ("242-02",), "DE": ("262-01",)},
    "240-07": {"NO": ("242-02",), "DK": ("238-01",), "FI": ("244-05",)},
    "240-08": {"DE": ("262-01",)},
    "238-01": {"NO": ("242-01",), "SE": ("240-07",), "FI": ("244-05",)},
    "244-05": {"NO": ("242-01",), "SE": ("240-07",), "DK": ("238-01",)},
}
"""Roaming agreements beyond group ties: home PLMN -> country -> PLMNs, best first."""


def operators_in(country: str) -> tuple[Operator, ...]:
    return tuple(op for op in OPERATORS if op.country == country)


def operator(plmn: str, field: str = "plmn") -> Operator:
    """The operator with this PLMN; ConfigError naming `field` if it is unknown."""
    parse_plmn(plmn, field)
    found = BY_PLMN.get(plmn)
    if found is None:
        raise ConfigError(f"{field}: unknown operator {plmn}")
    return found


def preferred_partners(
    home: Operator,
    country: str,
    overrides: Mapping[str, Iterable[str]] | None = None,
) -> tuple[Operator, ...]:
    """Partners `home` prefers in `country`, best first: overrides, agreements, group."""
    if overrides is not None and country in overrides:
        return tuple(BY_PLMN[plmn] for plmn in overrides[country])
    chosen = [BY_PLMN[plmn] for plmn in PREFERRED_PARTNERS.get(home.plmn, {}).get(country, ())]
    if home.group is not None:
        chosen += [op for op in operators_in(country) if op.group == home.group]
    return tuple(dict.fromkeys(chosen))


def candidates(
    home: Operator,
    country: str | None,
    overrides: Mapping[str, Iterable[str]] | None = None,
) -> tuple[Operator, ...]:
    """Networks the SIM may try in `country`, in the order it tries them."""
    if country is None:
        return ()
    if country == home.country:
        return (home,)
    preferred = preferred_partners(home, country, overrides)
    rest = tuple(op for op in operators_in(country) if op not in preferred)
    return preferred + rest
