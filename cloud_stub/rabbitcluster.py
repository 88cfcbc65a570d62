"""A RabbitMQ cluster on loopback from Debian's ``rabbitmq-server``, for tests and benchmarks.

Theory of operation: `RabbitCluster(nodes=3)` makes a temporary folder (given to the
``rabbitmq`` user when run as root, and every program run as that user through ``runuser``)
with one Erlang cookie, and for node *i* its own ``RABBITMQ_NODENAME`` (``tcu{i}-{tag}@localhost``),
AMQP, MQTT and distribution ports (free ones, on 127.0.0.1 only), its own data, log, pid,
config and enabled-plugins files (``rabbitmq_mqtt``). The nodes boot in parallel (each is a
child process; ``rabbitmqctl await_startup`` waits, bounded), then nodes 2..n join node 1
with ``rabbitmqctl stop_app``, ``join_cluster``, ``start_app``. Erlang's port mapper (epmd)
is told to listen on 127.0.0.1; if this cluster started it, `stop` stops it too.

`kill(i)` is SIGKILL to node *i*'s Erlang VM, a crash; `stop` shuts every node down (in
parallel, ``rabbitmqctl shutdown``, then SIGKILL for any left) and removes the folder.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cloud_stub.broker import LOOPBACK, free_port
from cloud_stub.errors import BrokerError
from cloud_stub.servers import ManagedServer

__all__ = ["RabbitCluster", "RabbitNode", "find_rabbitmq"]

_USER: Final = "rabbitmq"
_EPMD_PORT: Final = 4369
_BOOT_TIMEOUT_S: Final = 120
_CTL_TIMEOUT_S: Final = 60
_BOOT_ATTEMPTS: Final = 3
_LIB_BIN: Final = Path("/usr/lib/rabbitmq/bin")


def find_rabbitmq() -> Path | None:
    """The folder of ``rabbitmq-server`` and ``rabbitmqctl`` (Debian's, else on PATH)."""
    if (_LIB_BIN / "rabbitmq-server").exists():
        return _LIB_BIN
    found = shutil.which("rabbitmq-server")
    if found is not None and not Path(found).parent.name.endswith("sbin"):
        return Path(found).parent
    return None


@dataclass(slots=True, kw_only=True)
class RabbitNode:
    index: int
    name: str
    amqp_port: int
    mqtt_port: int
    dist_port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@{LOOPBACK}:{self.amqp_port}/"

    @property
    def mqtt_address(self) -> tuple[str, int]:
        return LOOPBACK, self.mqtt_port

    @property
    def pid_file(self) -> Path:
        return self.folder / f"{self.name.split('@')[0]}.pid"


class RabbitCluster(ManagedServer):
    """``nodes`` RabbitMQ nodes on 127.0.0.1, clustered with ``rabbitmqctl join_cluster``."""

    def __init__(self, nodes: int = 3, *, bindir: Path | None = None) -> None:
        found = bindir or find_rabbitmq()
        if found is None:
            raise BrokerError("rabbitmq-server not found (apt-get install rabbitmq-server)")
        if nodes < 1:
            raise BrokerError("a cluster needs at least one node")
        self.bindir = found
        self.count = nodes
        self.nodes: list[RabbitNode] = []
        self.folder: Path | None = None
        self._as_user: list[str] = []
        self._started_epmd = False

    @property
    def amqp_urls(self) -> list[str]:
        return [node.amqp_url for node in self.nodes]

    @property
    def mqtt_addresses(self) -> list[tuple[str, int]]:
        return [node.mqtt_address for node in self.nodes]

    def start(self) -> None:
        """Boot and join the nodes; again on new ports if one was taken before a node bound it."""
        for attempt in range(_BOOT_ATTEMPTS):
            try:
                self._boot()
                return
            except BrokerError as exc:
                self.stop()
                if attempt == _BOOT_ATTEMPTS - 1 or "eaddrinuse" not in str(exc):
                    raise

    def _boot(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="tcu-rabbit-"))
        self._started_epmd = not _listening(_EPMD_PORT)
        cookie = self.folder / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16))
        cookie.chmod(0o400)
        tag = secrets.token_hex(3)
        for index in range(1, self.count + 1):
            node = RabbitNode(
                index=index,
                name=f"tcu{index}-{tag}@localhost",
                amqp_port=free_port(),
                mqtt_port=free_port(),
                dist_port=free_port(),
                folder=self.folder,
            )
            (self.folder / f"tcu{index}.conf").write_text(
                "listeners.tcp.1 = " + f"{LOOPBACK}:{node.amqp_port}\n"
                f"mqtt.listeners.tcp.1 = {LOOPBACK}:{node.mqtt_port}\n"
                "mqtt.allow_anonymous = true\n"
                "log.console = false\n"
                "log.file.level = warning\n"
                "disk_free_limit.absolute = 10MB\n"
            )
            self.nodes.append(node)
        (self.folder / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        if os.geteuid() == 0:
            owner = pwd.getpwnam(_USER)
            for path in [self.folder, *self.folder.iterdir()]:
                os.chown(path, owner.pw_uid, owner.pw_gid)
            self._as_user = ["runuser", "-u", _USER, "--"]
        for node in self.nodes:
            with (self.folder / f"tcu{node.index}.out").open("wb") as out:
                node.process = subprocess.Popen(
                    [*self._as_user, "env", *self._env(node), str(self.bindir / "rabbitmq-server")],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(self._await_startup, self.nodes))
        first = self.nodes[0]
        for node in self.nodes[1:]:
            self.ctl(node, "stop_app")
            self.ctl(node, "join_cluster", first.name)
            self.ctl(node, "start_app")
        status = self.ctl(first, "cluster_status")
        missing = [n.name for n in self.nodes if n.name not in status]
        if missing:
            raise BrokerError(f"nodes not in the cluster: {', '.join(missing)}\n{status}")

    def _env(self, node: RabbitNode) -> list[str]:
        assert self.folder is not None
        return [
            f"HOME={self.folder}",
            f"RABBITMQ_NODENAME={node.name}",
            f"RABBITMQ_NODE_IP_ADDRESS={LOOPBACK}",
            f"RABBITMQ_NODE_PORT={node.amqp_port}",
            f"RABBITMQ_DIST_PORT={node.dist_port}",
            f"RABBITMQ_CONFIG_FILE={self.folder}/tcu{node.index}.conf",
            f"RABBITMQ_ENABLED_PLUGINS_FILE={self.folder / 'enabled_plugins'}",
            f"RABBITMQ_MNESIA_BASE={self.folder / 'mnesia'}",
            f"RABBITMQ_LOG_BASE={self.folder / 'log'}",
            f"RABBITMQ_PID_FILE={node.pid_file}",
            "RABBITMQ_CONF_ENV_FILE=/dev/null",
            f"ERL_EPMD_ADDRESS={LOOPBACK}",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
        ]

    def ctl(self, node: RabbitNode, *args: str, timeout: float = _CTL_TIMEOUT_S) -> str:
        """Run ``rabbitmqctl -n NODE ARGS``; returns its output, raises on failure."""
        assert self.folder is not None
        ctl_port = free_port()
        command = [
            *self._as_user,
            "env",
            f"HOME={self.folder}",
            f"ERL_EPMD_ADDRESS={LOOPBACK}",
            f"RABBITMQ_CTL_DIST_PORT_MIN={ctl_port}",
            f"RABBITMQ_CTL_DIST_PORT_MAX={ctl_port}",
            "RABBITMQ_CONF_ENV_FILE=/dev/null",
            str(self.bindir / "rabbitmqctl"),
            "-n",
            node.name,
            *args,
        ]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise BrokerError(f"rabbitmqctl {' '.join(args)} on {node.name}: timed out") from None
        if done.returncode != 0:
            raise BrokerError(
                f"rabbitmqctl {' '.join(args)} on {node.name} failed: "
                f"{(done.stderr or done.stdout).strip()[-2000:]}\n{self.log_tail(node)}"
            )
        return done.stdout

    def _await_startup(self, node: RabbitNode) -> None:
        self.ctl(
            node,
            "wait",
            str(node.pid_file),
            "--timeout",
            str(_BOOT_TIMEOUT_S),
            timeout=_BOOT_TIMEOUT_S + 10,
        )

    def log_tail(self, node: RabbitNode, lines: int = 15) -> str:
        if self.folder is None:
            return ""
        tail = []
        for path in (
            self.folder / f"tcu{node.index}.out",
            self.folder / "log" / f"{node.name}.log",
        ):
            with contextlib.suppress(OSError):
                tail += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(tail)

    def _pid(self, node: RabbitNode) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int(node.pid_file.read_text().strip())
        return None

    def kill(self, index: int) -> RabbitNode:
        """SIGKILL node ``index`` (1-based): a crash, no goodbye to the others."""
        node = self.nodes[index - 1]
        pid = self._pid(node)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if node.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(30)
        return node

    def _stop_node(self, node: RabbitNode) -> None:
        process = node.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(BrokerError):
                self.ctl(node, "shutdown", timeout=30)
        pid = self._pid(node)
        if process.poll() is None and pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
        node.process = None

    def stop(self) -> None:
        if self.nodes:
            with ThreadPoolExecutor(len(self.nodes)) as pool:
                list(pool.map(self._stop_node, self.nodes))
        self.nodes = []
        if self._started_epmd:
            epmd = shutil.which("epmd") or "/usr/lib/erlang/bin/epmd"
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run(
                    [epmd, "-kill"],
                    env={**os.environ, "ERL_EPMD_ADDRESS": LOOPBACK},
                    capture_output=True,
                    timeout=10,
                    check=False,
                )
            self._started_epmd = False
        folder, self.folder = self.folder, None
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((LOOPBACK, port)) == 0


def wait_until(condition: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.1)
    return False
