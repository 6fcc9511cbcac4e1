"""Stage workers: the handler API and the consumer pool that runs handlers.

A handler is `async def handle(delivery: Delivery, ctx: HandlerContext) -> None`.
It returns to ack, raises `Retry(delay)` to try again later, `Reject(reason)` to
dead-letter at once; any other exception is retried with backoff up to the
queue's max_retries, then dead-lettered. `default_handlers()` is the registry
the daemon uses unless `daemon.services["handlers"]` provides one.
"""

from __future__ import annotations

from etld.workers.errors import Reject, Retry
from etld.workers.handler import Delivery, Handler, HandlerContext

__all__ = ["Delivery", "Handler", "HandlerContext", "Reject", "Retry", "default_handlers"]


def default_handlers() -> dict[str, Handler]:
    """Stage name → handler for the stages implemented so far ("jobs", "extraction",
    "transform", "embedding"). A stage missing here dead-letters its messages."""
    return {}
