"""MQTT brokers for the stub backend: amqtt in-process, or a Mosquitto child process.

Theory of operation: both brokers listen on loopback only and expose the same face, a
``url`` (``mqtt://127.0.0.1:PORT``), ``host`` and ``port``, so tests and the CLI can run the
backend and the TCU against either.

`EmbeddedBroker` runs amqtt's `Broker` in the caller's event loop. amqtt marks every client
accepted by its stock anonymous-auth plugin as anonymous and then keeps neither its session nor
its offline QoS 1 messages; `OpenAuthPlugin` accepts every client without that mark, so a
client that connects with ``clean_session=False`` and a stable id finds, on its return, the
QoS 1 messages published while it was away. Those sessions and queues live in memory only:
they die with the broker, are unbounded, and amqtt speaks MQTT 3.1.1 only. Given a
`TlsListener` with a client certificate (the fleet's, from ``cloud_stub.ca``), it listens
with TLS and applies the fleet's rules through ``cloud_stub.amqtt_fleet``'s plugins. A
client that hangs up before amqtt has answered its CONNECT (a TCU trying MQTT 5 first, a
port probe) makes amqtt's connection callback raise ``ENOTCONN`` or ``ECONNRESET`` into the
event loop, whose default handler prints a traceback; while the broker runs, those
disconnects go to the ``cloud_stub.broker`` logger at INFO instead, and every other error
to the handler that was there before. An MQTT 5 CONNECT is answered at once with
"unacceptable protocol version" (`_Broker`): amqtt itself would wait for the rest of a
packet it misreads until the client gives up.

`MosquittoProcess` starts the ``mosquitto`` binary with the repository's ``mosquitto.conf``
(queue and in-flight limits lifted, persistence on) plus a generated tail holding the
listener, the persistence location and the log file, waits until the port accepts TCP
connections, and can `stop` (SIGTERM: the database is saved), `kill` (SIGKILL: only the last
autosave survives), `reload` (SIGHUP: configuration, certificates and CRL read again) and
`restart` on the same port and persistence file. With a fleet `TlsListener` the listener
takes ``mosquitto-tls.conf`` (client certificates required, the CN as username, no
anonymous clients), ``mosquitto.acl`` and the CA's CRL.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import getpass
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol, Self
from urllib.parse import urlsplit

from amqtt.adapters import ReaderAdapter, StreamWriterAdapter
from amqtt.broker import Broker
from amqtt.errors import AMQTTError
from amqtt.errors import BrokerError as AmqttBrokerError
from amqtt.plugins.base import BaseAuthPlugin

from cloud_stub.amqtt_fleet import FleetAuthPlugin, FleetBroker, FleetTopicPlugin
from cloud_stub.errors import BrokerError
from tcu.lifecycle import Running

__all__ = [
    "LOOPBACK",
    "MOSQUITTO_ACL",
    "MOSQUITTO_CONF",
    "MOSQUITTO_TLS_CONF",
    "BrokerHandle",
    "BrokerUrl",
    "EmbeddedBroker",
    "MosquittoProcess",
    "OpenAuthPlugin",
    "TlsListener",
    "find_mosquitto",
    "free_port",
    "mqtt_answers",
    "parse_broker_url",
    "wait_for_broker",
]

LOOPBACK: Final = "127.0.0.1"
MOSQUITTO_CONF: Final = Path(__file__).with_name("mosquitto.conf")
MOSQUITTO_TLS_CONF: Final = Path(__file__).with_name("mosquitto-tls.conf")
MOSQUITTO_ACL: Final = Path(__file__).with_name("mosquitto.acl")
_DEFAULT_PORTS: Final = {"mqtt": 1883, "mqtts": 8883}
_MOSQUITTO_CANDIDATES: Final = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
_DISCONNECT_ERRNOS: Final = frozenset({errno.ENOTCONN, errno.ECONNRESET, errno.EPIPE})
_START_TIMEOUT: Final = 10.0
_STOP_TIMEOUT: Final = 10.0


class BrokerHandle(Protocol):
    """What a running broker offers its clients."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def url(self) -> str: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerUrl:
    """A parsed ``mqtt://HOST:PORT`` or ``mqtts://HOST:PORT``."""

    host: str
    port: int
    tls: bool

    def __post_init__(self) -> None:
        if not self.host:
            raise BrokerError("broker URL has no host")
        if not 0 < self.port < 65536:
            raise BrokerError(f"broker port {self.port} is out of range")

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_broker_url(url: str) -> BrokerUrl:
    """Parse a broker URL; the port defaults to 1883 (mqtt) or 8883 (mqtts)."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS:
        raise BrokerError(f"broker URL {url!r} must start with mqtt:// or mqtts://")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BrokerError(f"broker URL {url!r} must be scheme://host[:port] only")
    try:
        port = parts.port
    except ValueError:
        raise BrokerError(f"broker URL {url!r} has an invalid port") from None
    return BrokerUrl(
        host=parts.hostname or "",
        port=port if port is not None else _DEFAULT_PORTS[parts.scheme],
        tls=parts.scheme == "mqtts",
    )


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


_CONNECT_PROBE: Final = bytes.fromhex("100c00044d5154540402003c0000")
_CONNACK_ACCEPTED: Final = bytes.fromhex("20020000")
_DISCONNECT: Final = bytes.fromhex("e000")


def mqtt_answers(
    host: str,
    port: int,
    *,
    tls: bool = False,
    timeout: float = 1.0,
    context: ssl.SSLContext | None = None,
) -> bool:
    """True if an MQTT 3.1.1 broker on `host:port` accepts a clean CONNECT without username.

    With `tls`, the handshake uses `context` (a client certificate, say) or, without it, one
    that checks nothing.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            if tls:
                if context is None:
                    context = ssl.create_default_context()
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                sock: socket.socket = context.wrap_socket(raw, server_hostname=host)
            else:
                sock = raw
            with sock:
                sock.sendall(_CONNECT_PROBE)
                answer = b""
                while len(answer) < len(_CONNACK_ACCEPTED):
                    chunk = sock.recv(len(_CONNACK_ACCEPTED) - len(answer))
                    if not chunk:
                        return False
                    answer += chunk
                sock.sendall(_DISCONNECT)
                return answer == _CONNACK_ACCEPTED
    except (OSError, ssl.SSLError):
        return False


def wait_for_broker(
    host: str,
    port: int,
    *,
    timeout: float,
    tls: bool = False,
    alive: Callable[[], bool] | None = None,
    context: ssl.SSLContext | None = None,
) -> None:
    """Block until an MQTT broker answers on `host:port`.

    `alive` returns False once waiting is pointless (the broker process died).
    """
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None and not alive():
            raise BrokerError(f"broker on {host}:{port} exited during start-up")
        if mqtt_answers(host, port, tls=tls, context=context):
            return
        if time.monotonic() > deadline:
            raise BrokerError(f"broker on {host}:{port} not answering after {timeout}s")
        time.sleep(0.02)


# --- amqtt, in-process -------------------------------------------------------------------


class OpenAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
    """Accept every client as a named one, so persistent sessions keep their QoS 1 queue."""

    async def authenticate(self, *, session: Any) -> bool:
        return True


log = logging.getLogger("cloud_stub.broker")

_MQTT_311_LEVEL: Final = 4
_MAX_CONNECT: Final = 64 * 1024
# CONNACK, return code 1: unacceptable protocol version (MQTT 3.1.1 section 3.2.2.3)
_CONNACK_BAD_PROTOCOL: Final = b"\x20\x02\x00\x01"


class _ReplayedReader(ReaderAdapter):  # type: ignore[misc]
    """amqtt's stream reader, with the bytes already read put back in front."""

    def __init__(self, reader: asyncio.StreamReader, head: bytes) -> None:
        self._reader = reader
        self._head = bytearray(head)

    async def read(self, n: int = -1) -> bytes:
        if not self._head:
            return await (self._reader.read(n) if n == -1 else self._reader.readexactly(n))
        if n == -1 or n >= len(self._head):
            data = bytes(self._head)
            self._head.clear()
            if n > len(data):
                data += await self._reader.readexactly(n - len(data))
            return data
        data = bytes(self._head[:n])
        del self._head[:n]
        return data

    def feed_eof(self) -> None:
        self._reader.feed_eof()


async def _first_packet(reader: asyncio.StreamReader) -> bytes:
    """The client's first packet, whole: fixed header, remaining length, body."""
    head = await reader.readexactly(1)
    length = shift = 0
    for _ in range(4):
        byte = await reader.readexactly(1)
        head += byte
        length |= (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            break
    if length > _MAX_CONNECT:
        raise ValueError(f"first packet of {length} bytes")
    return head + await reader.readexactly(length)


def _protocol_level(packet: bytes) -> int | None:
    """The protocol level of a CONNECT (``\x10 len \x00\x04 MQTT level``), else None."""
    if packet[:1] != b"\x10":
        return None
    start = packet.find(b"\x00\x04MQTT", 1, 12)
    return packet[start + 6] if start > 0 and len(packet) > start + 6 else None


class _Broker(Broker):  # type: ignore[misc]
    """amqtt, answering an MQTT 5 CONNECT at once with "unacceptable protocol version".

    amqtt 0.12 parses every CONNECT as 3.1.1; the properties of a version 5 CONNECT (a
    TCU's session expiry) make it wait for bytes that never come, and the client falls
    back to 3.1.1 only after its connect timeout (10 s for a TCU). The first packet is read
    here, a version 5 one refused as the 3.1.1 specification says, anything else handed to
    amqtt unchanged.
    """

    async def stream_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
    ) -> None:
        try:
            first = await _first_packet(reader)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            log.info("a client hung up before its MQTT session began: %s", exc)
            writer.close()
            return
        except asyncio.CancelledError:
            # the broker stops while a client is still sending its CONNECT; ending the task
            # normally spares asyncio's stream callback (3.11) a CancelledError traceback
            log.info("a client was still connecting when the broker stopped")
            writer.close()
            return
        level = _protocol_level(first)
        if level is not None and level > _MQTT_311_LEVEL:
            log.info("refused an MQTT protocol level %d CONNECT: amqtt speaks 3.1.1", level)
            with contextlib.suppress(ConnectionError):
                writer.write(_CONNACK_BAD_PROTOCOL)
                await writer.drain()
            writer.close()
            return
        await self.external_connected(
            _ReplayedReader(reader, first), StreamWriterAdapter(writer), listener_name
        )


class _FleetBroker(_Broker, FleetBroker):
    """The fleet's rules (``cloud_stub.amqtt_fleet``) with the quick MQTT 5 refusal."""


def _is_disconnect(context: dict[str, Any]) -> bool:
    """Whether the loop's error is a client that hung up during amqtt's connection callback."""
    exc = context.get("exception")
    if "client_connected_cb" not in str(context.get("message", "")):
        return False
    return isinstance(exc, ConnectionError) or (
        isinstance(exc, OSError) and exc.errno in _DISCONNECT_ERRNOS
    )


class EmbeddedBroker:
    """amqtt's broker in the running event loop, on loopback and a free or given port.

    ``async with EmbeddedBroker() as broker: broker.url``
    """

    def __init__(
        self, *, host: str = LOOPBACK, port: int = 0, tls: TlsListener | None = None
    ) -> None:
        self._host = host
        self._requested_port = port
        self._port = port
        self._tls = tls
        self._broker: Broker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous_handler: Any = None

    def _quiet_disconnects(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        previous = self._previous_handler = loop.get_exception_handler()

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            if _is_disconnect(context):
                log.info("a client hung up before its MQTT session began: %s", context["exception"])
            elif previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handler)

    def _restore_handler(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.set_exception_handler(self._previous_handler)

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        if not self._port:
            raise BrokerError("embedded broker not started")
        return self._port

    @property
    def url(self) -> str:
        return f"{'mqtts' if self._tls else 'mqtt'}://{self.host}:{self.port}"

    def _config(self, port: int) -> dict[str, Any]:
        listener: dict[str, Any] = {"type": "tcp", "bind": f"{self._host}:{port}"}
        plugins: dict[str, Any] = {_dotted(OpenAuthPlugin): {}}
        if self._tls is not None:
            listener.update(
                ssl=True,
                cafile=str(self._tls.cafile),
                certfile=str(self._tls.certfile),
                keyfile=str(self._tls.keyfile),
            )
        if self._tls is not None and self._tls.mutual:
            crl = str(self._tls.crlfile) if self._tls.crlfile else None
            plugins = {_dotted(FleetAuthPlugin): {"crlfile": crl}, _dotted(FleetTopicPlugin): {}}
        return {"listeners": {"default": listener}, "plugins": plugins}

    async def start(self) -> None:
        if self._broker is not None:
            raise BrokerError("embedded broker already started")
        attempts = 1 if self._requested_port else 5
        for attempt in range(attempts):
            port = self._requested_port or free_port(self._host)
            mutual = self._tls is not None and self._tls.mutual
            broker = (_FleetBroker if mutual else _Broker)(self._config(port))
            try:
                await broker.start()
            except (AMQTTError, AmqttBrokerError, OSError) as exc:
                if attempt + 1 == attempts:
                    raise BrokerError(
                        f"embedded broker cannot listen on port {port}: {exc}"
                    ) from None
                continue
            self._broker = broker
            self._port = port
            self._quiet_disconnects()
            return

    async def stop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            try:
                await broker.shutdown()
            finally:
                self._restore_handler()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def _dotted(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# --- Mosquitto, a child process ----------------------------------------------------------


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary (PATH, then /usr/sbin and /usr/local/sbin), or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in _MOSQUITTO_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsListener:
    """Certificate files for a Mosquitto TLS listener.

    With `client_certfile` (a key and certificate in one PEM the broker must accept) the
    listener is the fleet's: ``mosquitto-tls.conf`` (client certificates required, CN as
    username, no anonymous clients), ``mosquitto.acl`` and `crlfile`; readiness is probed
    with that certificate.
    """

    cafile: Path
    certfile: Path
    keyfile: Path
    crlfile: Path | None = None
    client_certfile: Path | None = None

    @property
    def mutual(self) -> bool:
        return self.client_certfile is not None

    def probe_context(self) -> ssl.SSLContext:
        """What `wait_for_broker` connects with: trusts `cafile`, shows `client_certfile`."""
        client = str(self.client_certfile) if self.client_certfile else None
        context = client_tls_context(str(self.cafile), client)
        context.check_hostname = False
        return context


class MosquittoProcess(Running):
    """A Mosquitto broker on loopback, configured by the repository's ``mosquitto.conf``."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        port: int | None = None,
        host: str = LOOPBACK,
        binary: str | None = None,
        base_conf: Path = MOSQUITTO_CONF,
        tls: TlsListener | None = None,
    ) -> None:
        found = binary or find_mosquitto()
        if found is None:
            raise BrokerError("mosquitto binary not found (apt-get install mosquitto)")
        self._binary = found
        self._data_dir = Path(data_dir)
        self._host = host
        self._port = port or free_port(host)
        self._port_is_ours = port is None
        self._base_conf = base_conf
        self._tls = tls
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"{'mqtts' if self._tls else 'mqtt'}://{self._host}:{self._port}"

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def conf_path(self) -> Path:
        return self._data_dir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self._data_dir / "mosquitto.log"

    @property
    def persistence_path(self) -> Path:
        return self._data_dir / "mosquitto.db"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _write_conf(self) -> None:
        try:
            base = self._base_conf.read_text(encoding="utf-8")
        except OSError as exc:
            raise BrokerError(f"cannot read {self._base_conf}: {exc.strerror}") from None
        tail = [
            "",
            "# generated by cloud_stub.broker.MosquittoProcess",
            f"listener {self._port} {self._host}",
            f"persistence_location {self._data_dir.resolve()}/",
            "persistence_file mosquitto.db",
        ]
        if self._tls is not None and self._tls.mutual:
            try:
                fleet = MOSQUITTO_TLS_CONF.read_text(encoding="utf-8")
            except OSError as exc:
                raise BrokerError(f"cannot read {MOSQUITTO_TLS_CONF}: {exc.strerror}") from None
            tail += ["", fleet.rstrip("\n"), "", "# generated: the fleet CA's files"]
            tail.append(f"acl_file {MOSQUITTO_ACL}")
            if self._tls.crlfile is not None:
                tail.append(f"crlfile {self._tls.crlfile.resolve()}")
        if self._tls is not None:
            tail += [
                f"cafile {self._tls.cafile.resolve()}",
                f"certfile {self._tls.certfile.resolve()}",
                f"keyfile {self._tls.keyfile.resolve()}",
            ]
        if os.geteuid() == 0:
            tail.append(f"user {getpass.getuser()}")
        self.conf_path.write_text(base.rstrip("\n") + "\n" + "\n".join(tail) + "\n", "utf-8")

    def start(self) -> None:
        """Start the broker and wait until it accepts connections.

        A port chosen here that someone else takes meanwhile is replaced, before the first
        start only: `restart` keeps the port.
        """
        if self.running:
            raise BrokerError(f"mosquitto already running on port {self._port}")
        self._data_dir.mkdir(parents=True, exist_ok=True)
        attempts = 3 if self._port_is_ours else 1
        for attempt in range(attempts):
            try:
                self._start_once()
            except BrokerError:
                if attempt + 1 == attempts:
                    raise
                self._port = free_port(self._host)
            else:
                break
        self._port_is_ours = False

    def _start_once(self) -> None:
        self._write_conf()
        with self.log_path.open("ab") as log:
            try:
                self._process = subprocess.Popen(
                    [self._binary, "-c", str(self.conf_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            except OSError as exc:
                raise BrokerError(f"cannot start {self._binary}: {exc.strerror}") from None
        try:
            wait_for_broker(
                self._host,
                self._port,
                timeout=_START_TIMEOUT,
                tls=self._tls is not None,
                alive=lambda: self.running,
                context=self._tls.probe_context() if self._tls and self._tls.mutual else None,
            )
        except BrokerError as exc:
            self.kill()
            raise BrokerError(f"{exc}; see {self.log_path}: {self._log_tail()}") from None

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            lines = self.log_path.read_text("utf-8", errors="replace").strip().splitlines()
            return " | ".join(lines[-3:])
        return ""

    def stop(self) -> None:
        """SIGTERM and wait: Mosquitto saves its persistence database on the way out."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: messages since the last autosave are lost."""
        self._end(signal.SIGKILL)

    def reload(self) -> None:
        """SIGHUP: Mosquitto reads its configuration, ACL, certificates and CRL again."""
        if self._process is None or not self.running:
            raise BrokerError("mosquitto is not running")
        self._process.send_signal(signal.SIGHUP)

    def restart(self) -> None:
        """Stop (if running) and start again on the same port and persistence file."""
        self.stop()
        self.start()

    def _end(self, how: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(how)
        try:
            process.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def client_tls_context(
    cafile: str | None, certfile: str | None = None, keyfile: str | None = None
) -> ssl.SSLContext:
    """A client TLS context trusting `cafile`, with an optional client certificate."""
    try:
        context = ssl.create_default_context(cafile=cafile)
        if certfile:
            context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise BrokerError(f"cannot set up TLS: {exc}") from None
    return context
