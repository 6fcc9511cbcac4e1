"""How a handler tells the runner what to do with its message: raise one of these.

Handlers never touch the channel. Returning normally acks the message; raising
`Retry` schedules another attempt through a delay queue; raising `Reject`
dead-letters it at once (the message can never succeed, retrying is pointless).
Any other exception is a failure: retried with backoff until the queue's
max_retries, then dead-lettered.
"""

from __future__ import annotations


class Retry(Exception):
    """Try the message again later.

    `delay` in seconds overrides the backoff schedule (for example a rate limit's
    `retry-after`). `count=False` does not use up an attempt: for waits that say
    nothing about the message itself, such as a source asking to slow down.
    """

    def __init__(self, delay: float | None = None, reason: str = "", *, count: bool = True) -> None:
        if delay is not None and delay < 0:
            raise ValueError("Retry delay must be >= 0")
        self.delay = delay
        self.reason = reason
        self.count = count
        super().__init__(reason or "retry requested")


class Reject(Exception):
    """Dead-letter the message now, with `reason`, without further attempts."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
