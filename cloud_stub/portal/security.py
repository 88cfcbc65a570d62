"""The web edge's guards: a login rate limit and a cap on request bodies and JSON nesting.

Theory of operation: `LoginLimiter` counts failed logins per key (the e-mail tried, and the
client's address) in a sliding window; past ``max_failures`` the key is refused until the
oldest failure leaves the window, and the refusal says when to retry. `BodyGuard` is plain
ASGI middleware in front of the app: a request body larger than ``max_body`` is answered 413
without the app seeing it (by Content-Length, or by counting as it streams; what is
still coming is read and dropped, up to 1 MiB, so the client gets the answer), and a JSON body
nested deeper than ``max_depth`` is answered 400 before any parser recurses into it.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

__all__ = ["BodyGuard", "LoginLimiter", "json_depth"]

MAX_BODY: Final = 64 * 1024
MAX_DEPTH: Final = 32
DRAIN: Final = 1024 * 1024


class LoginLimiter:
    """At most ``max_failures`` failed logins per key within ``window_s``."""

    def __init__(
        self,
        *,
        max_failures: int = 5,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        self._max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, *keys: str) -> float:
        """Seconds until every key may try again; 0 when none is blocked."""
        now = self._clock()
        wait = 0.0
        for key in keys:
            times = self._failures.get(key)
            if not times:
                continue
            while times and times[0] <= now - self.window_s:
                times.popleft()
            if len(times) >= self.max_failures:
                wait = max(wait, times[0] + self.window_s - now)
        return wait

    def failed(self, *keys: str) -> None:
        if len(self._failures) >= self._max_keys:
            self._failures.clear()  # bounded memory; a flood of keys resets the window
        now = self._clock()
        for key in keys:
            self._failures.setdefault(key, deque(maxlen=self.max_failures)).append(now)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)


def json_depth(data: bytes) -> int:
    """How deep the brackets of a JSON text nest, without parsing it (strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]


class BodyGuard:
    """ASGI middleware: refuse bodies over ``max_body`` bytes and JSON deeper than ``max_depth``."""

    def __init__(self, app: Any, *, max_body: int = MAX_BODY, max_depth: int = MAX_DEPTH) -> None:
        self.app = app
        self.max_body = max_body
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await self._too_large(receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await self._too_large(receive if message.get("more_body") else None, send)
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        if json_depth(body) > self.max_depth:
            await _refuse(send, 400, "too_deep", f"JSON nests at most {self.max_depth} levels.")
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            message: Message = await receive()
            return message

        await self.app(scope, replay, send)

    async def _too_large(self, receive: Receive | None, send: Send) -> None:
        """Refuse; first read and drop what the client is still sending, up to ``DRAIN``.

        A client that is still writing when the connection closes sees a reset, not the 413.
        """
        drained = 0
        while receive is not None and drained <= DRAIN:
            message = await receive()
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await _refuse(send, 413, "body_too_large", f"A body is at most {self.max_body} bytes.")


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
