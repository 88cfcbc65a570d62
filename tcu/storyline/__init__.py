"""Storylines: what the reference van does, as data, and the traces generated from them.

``STORYLINES`` names the built-in storylines; ``get(name)`` builds one. See
``docs/reference-van.md`` for what happens in each.
"""

from __future__ import annotations

from collections.abc import Callable

from tcu.errors import ConfigError
from tcu.storyline import city_delivery, cross_border, depot_night
from tcu.storyline.story import BusPhase, Event, Knot, StoryBuilder, Storyline

STORYLINES: dict[str, Callable[[], Storyline]] = {
    "depot_night": depot_night.build,
    "city_delivery": city_delivery.build,
    "cross_border": cross_border.build,
}


def get(name: str) -> Storyline:
    """The storyline called ``name``; ConfigError names the unknown one."""
    try:
        build = STORYLINES[name]
    except KeyError:
        raise ConfigError(f"unknown storyline {name!r} (known: {', '.join(STORYLINES)})") from None
    return build()


__all__ = ["STORYLINES", "BusPhase", "Event", "Knot", "StoryBuilder", "Storyline", "get"]
