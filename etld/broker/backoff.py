"""Retry delays: the configured schedule, capped at its last step, with jitter.

`rabbitmq.retry_delays` (default 1 s, 5 s, 30 s, 2 min, 10 min) grows roughly
exponentially; attempts past its end keep the last delay. Jitter only ever
shortens a delay (by up to `retry_jitter`), so the message still fits the delay
queue of its step: queue TTLs are fixed, and a per-message expiration can only
make a message leave earlier.
"""

from __future__ import annotations

import random
from collections.abc import Sequence


def retry_delay(
    failed_attempt: int, delays: Sequence[float], jitter: float, rand: random.Random | None = None
) -> float:
    """Seconds to wait after attempt number `failed_attempt` (1-based) failed."""
    if not delays:
        raise ValueError("retry_delays is empty")
    base = delays[min(max(failed_attempt, 1), len(delays)) - 1]
    fraction = (rand or random).random() * min(max(jitter, 0.0), 1.0)
    return base * (1.0 - fraction)
