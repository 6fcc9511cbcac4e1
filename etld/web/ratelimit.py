"""Login throttling: failed attempts per username and per client address, in memory.

After `limit` failures within `window` seconds a key is refused until its oldest failure
leaves the window; the login answers 429 with Retry-After, before any password is checked,
so a guessing client cannot even spend the server's scrypt time. A username is throttled
separately from an address: one address may serve many people (NAT), and one account may
be tried from many addresses. Each daemon counts its own attempts.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

USER_LIMIT = 5
ADDRESS_LIMIT = 20
WINDOW = 300.0
MAX_KEYS = 10_000  # bound memory under a flood of distinct names


class FailureLimiter:
    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def retry_after(self, key: str) -> float:
        """Seconds until `key` may try again; 0 when it may now."""
        now = self.clock()
        times = self._recent(key, now)
        if times is None or len(times) < self.limit:
            return 0.0
        return max(0.0, times[-self.limit] + self.window - now)

    def failed(self, key: str) -> None:
        now = self.clock()
        times = self._recent(key, now) or deque()
        times.append(now)
        self._failures[key] = times
        self._failures.move_to_end(key)
        while len(self._failures) > MAX_KEYS:
            self._failures.popitem(last=False)

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)


@dataclass
class LoginLimits:
    users: FailureLimiter
    addresses: FailureLimiter

    def retry_after(self, username: str, address: str) -> int:
        wait = max(self.users.retry_after(username.lower()), self.addresses.retry_after(address))
        return math.ceil(wait)

    def failed(self, username: str, address: str) -> None:
        self.users.failed(username.lower())
        self.addresses.failed(address)

    def succeeded(self, username: str) -> None:
        # The address keeps its failures: one good account must not unlock guessing others.
        self.users.clear(username.lower())


def default_limits() -> LoginLimits:
    return LoginLimits(FailureLimiter(USER_LIMIT, WINDOW), FailureLimiter(ADDRESS_LIMIT, WINDOW))


LOGIN_LIMITS: web.AppKey[LoginLimits] = web.AppKey("login_limits", LoginLimits)
