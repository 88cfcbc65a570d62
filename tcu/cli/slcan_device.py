"""``tcu slcan-device``: a software LAWICEL/slcan adapter on a pseudo-terminal."""

from __future__ import annotations

from typing import Any

from tcu.bench import slcan_device


def register(sub: Any) -> None:
    p = sub.add_parser(
        "slcan-device",
        help="serve a software slcan USB-CAN adapter on a pty, bridged to a python-can bus",
    )
    slcan_device.add_arguments(p)
    p.set_defaults(func=slcan_device.run)
