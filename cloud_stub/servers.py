"""Servers started for tests and benchmarks: ``with Server() as s`` starts, and always stops.

A server that fails half-way through `start` is stopped before the error propagates, so
no node or database is left running behind a failed test.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

__all__ = ["ManagedServer"]


class ManagedServer(ABC):
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

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
