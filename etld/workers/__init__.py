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
from etld.workers.stages import StageHandlers, StageServices

__all__ = ["Delivery", "Handler", "HandlerContext", "Reject", "Retry", "default_handlers"]


def default_handlers(services: StageServices) -> dict[str, Handler]:
    """Stage name → handler for the built-in stages, generic over the registered sources.

    A stage missing here (embedding, when embeddings are off) dead-letters its messages.
    """
    import etld.sources.builtin  # noqa: F401  (registers the built-in sources)

    return StageHandlers(services).mapping()
