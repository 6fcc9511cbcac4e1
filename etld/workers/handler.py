"""The handler API: what a stage handler receives, and its signature.

    async def handle(delivery: Delivery, ctx: HandlerContext) -> None

Return to ack; raise `Retry(delay)` or `Reject(reason)` (etld.workers.errors)
to retry later or dead-letter now; any other exception is a failed attempt.
Handlers never touch the channel, and must be idempotent: a message can come
again after a crash or a lost connection (`delivery.redelivered` is then true).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from etld.broker.publish import Publisher
from etld.config import Config
from etld.messages import Message


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message as a handler sees it."""

    message: Message
    raw: dict[str, Any]
    attempt: int  # 1-based; the runner's own count, carried in a header
    redelivered: bool  # the broker delivered it before (a crash or lost channel)
    queue: str
    stage: str
    tier: str | None
    headers: Mapping[str, Any]
    message_id: str | None
    max_retries: int


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """What a handler may use; one per queue, shared by its deliveries."""

    pool: asyncpg.Pool
    publisher: Publisher
    config: Config
    log: Any  # a structlog logger; per-message ids arrive through contextvars
    stage: str
    tier: str | None
    services: Mapping[str, Any]


Handler = Callable[[Delivery, HandlerContext], Awaitable[None]]
