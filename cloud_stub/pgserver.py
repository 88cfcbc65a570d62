"""A throwaway PostgreSQL cluster on loopback, for tests and benchmarks.

Theory of operation: `PostgresCluster` runs ``initdb`` into a fresh temporary folder (trust
authentication, UTF-8), then ``pg_ctl start`` with the server listening on 127.0.0.1 and a
free port only, its Unix socket in that folder, and waits for ``pg_ctl -w``. ``stop`` is
``pg_ctl stop -m fast`` and removes the folder. The binaries come from PATH or from
``/usr/lib/postgresql/<version>/bin`` (Debian's layout). ``initdb`` refuses to run as root:
as root, the folder is given to the ``postgres`` user and every binary runs as that user
through ``runuser``. `database(name)` creates a database and returns its URL.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Final

from cloud_stub.broker import LOOPBACK, free_port
from cloud_stub.errors import CloudError
from cloud_stub.servers import ManagedServer

__all__ = ["PostgresCluster", "find_postgres"]

_SUPERUSER: Final = "postgres"
_START_TIMEOUT_S: Final = 60
_PORT_ATTEMPTS: Final = 3


def find_postgres() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, newest version first; None without one."""
    found = shutil.which("initdb")
    if found is not None and shutil.which("pg_ctl") is not None:
        return Path(found).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
        reverse=True,
    )
    return Path(candidates[0]).parent if candidates else None


class PostgresCluster(ManagedServer):
    """``initdb`` + ``pg_ctl`` in a temporary folder, on 127.0.0.1 and a free port."""

    def __init__(self, *, bindir: Path | None = None, fsync: bool = True) -> None:
        found = bindir or find_postgres()
        if found is None:
            raise CloudError("PostgreSQL not found (apt-get install postgresql)")
        self.bindir = found
        self.fsync = fsync
        self.port = 0
        self.folder: Path | None = None
        self._as_user: list[str] = []
        self._created = 0

    @property
    def url(self) -> str:
        """URL of the default database ``postgres``."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql://{_SUPERUSER}@{LOOPBACK}:{self.port}/{name}"

    def start(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="tcu-pg-"))
        if os.geteuid() == 0:
            owner = pwd.getpwnam(_SUPERUSER)
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
            self._as_user = ["runuser", "-u", _SUPERUSER, "--"]
        data = self.folder / "data"
        self._run(
            "initdb", "-D", str(data), "-U", _SUPERUSER, "--auth=trust", "-E", "UTF8",
            "--no-instructions", "--no-sync",
        )  # fmt: skip
        for attempt in range(_PORT_ATTEMPTS):
            # a free port may be taken by someone else before the server binds it: retry
            self.port = free_port()
            options = (
                f"-c listen_addresses={LOOPBACK} -p {self.port} -k {self.folder}"
                f" -c fsync={'on' if self.fsync else 'off'} -c max_connections=200"
            )
            try:
                self._run(
                    "pg_ctl", "-D", str(data), "-l", str(self.folder / "server.log"),
                    "-o", options, "-w", "-t", str(_START_TIMEOUT_S), "start",
                )  # fmt: skip
                return
            except CloudError:
                if attempt == _PORT_ATTEMPTS - 1:
                    raise

    def database(self, name: str | None = None) -> str:
        """Create a database (a fresh name unless given) and return its URL."""
        import psycopg

        if name is None:
            self._created += 1
            name = f"db{self._created}"
        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')  # our own names only
        return self.database_url(name)

    def stop(self) -> None:
        folder, self.folder = self.folder, None
        if folder is None:
            return
        try:
            if (folder / "data" / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(folder / "data"), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        if self.folder is None:
            return ""
        with contextlib.suppress(OSError):
            return "\n".join(
                (self.folder / "server.log").read_text(errors="replace").splitlines()[-lines:]
            )
        return ""

    def _run(self, program: str, *args: str) -> None:
        command = [*self._as_user, str(self.bindir / program), *args]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=_START_TIMEOUT_S + 10, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CloudError(f"{program}: {exc}") from None
        if done.returncode != 0:
            raise CloudError(
                f"{program} failed ({done.returncode}): {done.stderr.strip()}\n{self.log_tail()}"
            )
