"""``with`` for the project's resources: files that close, processes and servers that stop.

``Closing``: ``with`` hands the object back and calls ``close`` at the end of the block.
``Running``: ``with`` calls ``start`` first and ``stop`` at the end, however the block ends.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Closing:
    """A resource that ``with`` closes."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Running:
    """Something that ``with`` starts and stops."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> object:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
