"""Servers started for tests and benchmarks: ``with Server() as s`` starts, and always stops.

A server that fails half-way through `start` is stopped before the error propagates, so
no node or database is left running behind a failed test.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self

from tcu.lifecycle import Running

__all__ = ["ManagedServer"]


class ManagedServer(Running, ABC):
    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None:
        """Stop whatever `start` got running; safe to call after a partial start."""

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self
