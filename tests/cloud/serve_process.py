"""``cloud-stub serve`` as a child process, for tests that need the real command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Self

from cloud_stub.registry import Registry
from cloud_stub.service import REGISTRY_FILE
from cloud_stub.testing import VehicleDouble


def register(data: Path, vans: list[VehicleDouble]) -> None:
    with Registry(data / REGISTRY_FILE) as registry:
        for van in vans:
            van.register(registry)


class ServeProcess:
    """Runs ``cloud-stub serve ARGS`` and waits for its ``serving`` line (bounded)."""

    def __init__(self, *args: str, timeout: float = 90.0) -> None:
        self.args = args
        self.timeout = timeout
        self.lines: list[str] = []
        self._process: subprocess.Popen[str] | None = None
        self._ready = threading.Event()

    def __enter__(self) -> Self:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "cloud_stub.cli", "serve", *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(self.timeout) or self._process.poll() is not None:
            self.stop()
            raise AssertionError("serve did not start:\n" + "".join(self.lines))
        return self

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self.lines.append(line)
            if "serving" in line:
                self._ready.set()
        self._ready.set()

    def stop(self) -> str:
        """SIGTERM, wait (bounded); returns everything it printed."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process is not None:
            self._reader.join(10)
            if process.stdout is not None:
                process.stdout.close()
        return "".join(self.lines)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
