"""``cloud-stub serve --workers K``: K ingest processes behind one command.

Theory of operation: the parent process starts K workers (multiprocessing, ``spawn``), each
its own Python process with its own event loop, store connection and broker connection:

- on an MQTT 5 broker (Mosquitto), worker *i* is a `Backend` with client id
  ``cloud-stub-w{i}``, a persistent session, and shared subscriptions
  ``$share/cloud-stub/{prefix}/+/telemetry`` and ``.../status``: the broker hands each
  message to one worker;
- on RabbitMQ (``amqp://`` URLs, one or several nodes), worker *i* is an `AmqpWorker`, a
  competing consumer of one quorum queue bound to ``amq.topic``.

A worker's MQTT session outlives it, and the broker keeps handing it a share of the
messages while it is away (so a worker that restarts loses nothing). A pool that shrinks
would leave such sessions behind, swallowing their share for ever: the pool writes its size
to ``workers.json`` and, started with fewer workers than last time on the same broker,
ends the sessions of the workers that are gone (`end_sessions`). What those sessions held
is not lost: the vans resend whatever is not acknowledged.

A van's records may reach different workers; the store decides contiguity in one
transaction per group (see `cloud_stub.store`), so the acks stay exact. Each worker saves
its counters to ``stats.worker-{i}.json``; `merged_stats` adds them up. A worker that dies is
started again (counted in ``restarts``). The parent waits until every worker has connected,
and on SIGINT/SIGTERM stops them (SIGTERM, then SIGKILL after a grace period).

Once connected, a worker calls ``gc.freeze()``: the objects of start-up (modules, the
registry, keys) leave the collector's full passes, which otherwise walk them all now and
then and stall the worker for milliseconds.

`raise_fd_limit` lifts the soft limit on open files to the hard one: a busy broker
connection is one descriptor, but a worker, its store and a fleet of clients add up.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import multiprocessing
import multiprocessing.synchronize
import resource
import signal
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from cloud_stub.errors import BrokerError, CloudError

if TYPE_CHECKING:
    from cloud_stub.service import TlsFiles

__all__ = [
    "SHARED_GROUP",
    "WorkerConfig",
    "WorkerPool",
    "merged_stats",
    "parse_amqp_urls",
    "raise_fd_limit",
]

SHARED_GROUP: Final = "cloud-stub"
WORKER_STATS: Final = "stats.worker-{index}.json"
POOL_FILE: Final = "workers.json"
_GRACE_S: Final = 10.0

log = logging.getLogger("cloud_stub.workers")


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard one; returns (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerConfig:
    """What one worker process needs (picklable: it crosses to a spawned process)."""

    broker: str  # mqtt(s)://host:port, or amqp://... (comma-separated nodes)
    data_dir: str
    prefix: str
    store: str | None
    index: int
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None

    @property
    def amqp(self) -> bool:
        return self.broker.startswith("amqp://")


def parse_amqp_urls(text: str) -> list[str]:
    """``amqp://user:pass@host:port[/vhost]``, several separated by commas (cluster nodes)."""
    urls = [part.strip() for part in text.split(",")]
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme != "amqp" or not parts.hostname:
            raise BrokerError(f"broker URL {url!r} must be amqp://[user:pass@]host[:port][/vhost]")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise BrokerError(f"broker URL {url!r} has an invalid port") from None
    return urls


def _worker_main(config: WorkerConfig, ready: multiprocessing.synchronize.Event) -> None:
    logging.basicConfig(
        level=logging.WARNING, format=f"%(asctime)s w{config.index} %(name)s %(message)s"
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_worker(config, ready))


async def _worker(config: WorkerConfig, ready: multiprocessing.synchronize.Event) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    stats_file = WORKER_STATS.format(index=config.index)
    if config.amqp:
        from cloud_stub.amqp import AmqpWorker

        worker = AmqpWorker(
            parse_amqp_urls(config.broker),
            config.data_dir,
            prefix=config.prefix,
            store=config.store,
            stats_file=stats_file,
            first_node=config.index,
        )
        task = asyncio.create_task(worker.run())
        try:
            await _first(worker.connected.wait(), task)
            gc.freeze()
            ready.set()
            await _first(stop.wait(), task)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            worker.close()
        return
    from cloud_stub.service import Backend, TlsFiles

    tls = None
    if config.cafile or config.certfile or config.keyfile:
        tls = TlsFiles(cafile=config.cafile, certfile=config.certfile, keyfile=config.keyfile)
    backend = Backend(
        config.broker,
        config.data_dir,
        prefix=config.prefix,
        client_id=worker_client_id(config.index),
        tls=tls,
        store=config.store,
        shared_group=SHARED_GROUP,
        stats_file=stats_file,
    )
    task = asyncio.create_task(backend.run())
    try:
        await asyncio.wait_for(_first(backend.wait_connected(timeout=30), task), 30)
        gc.freeze()
        ready.set()
        await _first(stop.wait(), task)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await backend.stop()


async def _first(waiting: Coroutine[Any, Any, Any], task: asyncio.Task[None]) -> None:
    """Wait for `waiting`; if the worker's task ends first, raise what ended it.

    A worker whose ingest failed (its database went away, say) must not linger connected
    and idle: it exits, and the pool starts it again. What it had taken and not stored is
    not lost: the broker delivers it again (AMQP) or the vans resend it (MQTT).
    """
    waiter = asyncio.ensure_future(waiting)
    try:
        await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not waiter.done():
            waiter.cancel()
    if task.done():
        task.result()
        raise CloudError("worker stopped")
    waiter.result()


def worker_client_id(index: int) -> str:
    return f"{SHARED_GROUP}-w{index}"


def previous_pool(data_dir: Path) -> tuple[str, int] | None:
    """(broker, workers) of the last pool started on this data directory, if any."""
    try:
        content = json.loads((data_dir / POOL_FILE).read_text("utf-8"))
        return str(content["broker"]), int(content["workers"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CloudError(f"cannot read {data_dir / POOL_FILE}: {exc}") from None


async def end_sessions(
    broker_url: str, client_ids: list[str], *, tls: TlsFiles | None = None
) -> None:
    """Connect as each client id with a clean start and no session expiry, and leave."""
    import aiomqtt

    from cloud_stub.broker import parse_broker_url
    from cloud_stub.service import _client

    address = parse_broker_url(broker_url)
    for identifier in client_ids:
        try:
            async with _client(
                address, identifier=identifier, clean_session=True, tls=tls, mqtt5=True
            ):
                pass
        except aiomqtt.MqttError as exc:
            raise CloudError(f"cannot end the session of {identifier}: {exc}") from None


class WorkerPool:
    """K worker processes; restarted when one dies, stopped together."""

    def __init__(self, configs: list[WorkerConfig]) -> None:
        if not configs:
            raise CloudError("--workers must be at least 1")
        self._context = multiprocessing.get_context("spawn")
        self._configs = configs
        self._processes: list[BaseProcess | None] = [None] * len(configs)
        self._ready = [self._context.Event() for _ in configs]
        self.restarts = 0
        for config in configs:
            for stale in Path(config.data_dir).glob("stats.worker-*.json"):
                stale.unlink()

    def start(self) -> None:
        for index in range(len(self._configs)):
            self._start(index)

    def _start(self, index: int) -> None:
        process = self._context.Process(
            target=_worker_main,
            args=(self._configs[index], self._ready[index]),
            name=f"cloud-stub-w{index}",
            daemon=False,
        )
        process.start()
        self._processes[index] = process

    async def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all(event.is_set() for event in self._ready):
            if time.monotonic() > deadline:
                raise CloudError(f"workers not connected after {timeout:.0f}s")
            self.check()
            await asyncio.sleep(0.05)

    def check(self) -> None:
        """Start again any worker that has died."""
        for index, process in enumerate(self._processes):
            if process is not None and not process.is_alive():
                if not self._ready[index].is_set():
                    raise CloudError(
                        f"worker {index} exited with {process.exitcode} before it connected"
                    )
                log.warning("worker %d exited with %s; starting it again", index, process.exitcode)
                self.restarts += 1
                self._start(index)

    def stop(self) -> None:
        processes = [p for p in self._processes if p is not None]
        for process in processes:
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + _GRACE_S
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        self._processes = [None] * len(self._configs)


def merged_stats(data_dir: Path) -> dict[str, Any] | None:
    """The counters of every worker (``stats.worker-*.json``) added up; None without any."""
    files = sorted(data_dir.glob("stats.worker-*.json"))
    if not files:
        return None
    total: dict[str, Any] = {}
    for path in files:
        try:
            content = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise CloudError(f"cannot read {path}: {exc}") from None
        if not isinstance(content, dict):
            raise CloudError(f"{path} does not hold a JSON object")
        _add(total, content)
    total["workers"] = len(files)
    return total


def _add(total: dict[str, Any], more: dict[str, Any]) -> None:
    for key, value in more.items():
        if isinstance(value, dict):
            _add(total.setdefault(key, {}), value)
        elif isinstance(value, int) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value
