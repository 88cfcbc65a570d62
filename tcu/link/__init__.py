"""The van's SIM link: operators, geography, modem, coverage and the link model.

The sans-I/O core is importable from here; the asyncio TCP proxy that realises the
link for live runs lives in `tcu.link.proxy` and is imported only by those who need it.
"""

from tcu.link.sim import Link, LinkConfig, LinkSnapshot, RoamingBatchPolicy

__all__ = ["Link", "LinkConfig", "LinkSnapshot", "RoamingBatchPolicy"]
