"""Exponential backoff between retries: MQTT reconnects, reopening a CAN adapter."""

from __future__ import annotations

import random

from tcu.errors import ConfigError


class Backoff:
    """``delay(attempt)``: uniform(0, min(cap, base * 2**attempt)) with full jitter, or the
    ceiling itself without. ``next_delay``/``reset`` count the attempts for a retry loop.
    """

    def __init__(
        self,
        base: float = 0.5,
        cap: float = 30.0,
        rng: random.Random | None = None,
        *,
        jitter: bool = True,
    ) -> None:
        if not 0 < base <= cap:
            raise ConfigError(f"backoff needs 0 < base <= cap, got base {base}, cap {cap}")
        self.base = base
        self.cap = cap
        self.jitter = jitter
        self.rng = rng if rng is not None else random.Random()
        self.attempt = 0

    def ceiling(self, attempt: int) -> float:
        return min(self.cap, self.base * 2.0 ** min(attempt, 62))

    def delay(self, attempt: int) -> float:
        ceiling = self.ceiling(attempt)
        return self.rng.uniform(0.0, ceiling) if self.jitter else ceiling

    def next_delay(self) -> float:
        delay = self.delay(self.attempt)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0
