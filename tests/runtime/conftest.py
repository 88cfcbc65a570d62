"""Fixtures of the driver tests."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest


@pytest.fixture
def nothing_left_behind() -> Iterator[None]:
    """Every thread and file descriptor a test opens is gone when it ends."""
    threads = set(threading.enumerate())
    fds = set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else set()
    yield
    extra = [t for t in threading.enumerate() if t not in threads and t.is_alive()]
    assert not extra, f"threads left running: {extra}"
    if fds:
        left = set(os.listdir("/proc/self/fd")) - fds
        assert not left, f"file descriptors left open: {sorted(left)}"
