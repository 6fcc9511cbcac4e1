"""Notifications: stored per tenant, optionally POSTed to a Slack-compatible webhook.

A notification is written in the same transaction as the event it reports (a run
failing, a job skipped, a run stuck), so it cannot be lost; delivery to the webhook
happens afterwards from the table, with retries, by whichever daemon gets there first.
The payload carries names and reasons only, never credentials.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg

from etld.component import Component
from etld.config import NotificationsConfig
from etld.logs import get_logger
from etld.store.queries import SQL

log = get_logger(__name__)


async def notify(
    conn: asyncpg.Connection,
    *,
    tenant_id: int,
    kind: str,
    message: str,
    severity: str = "warning",
    job_id: int | None = None,
    run_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> int:
    notification_id: int = await conn.fetchval(
        SQL["notifications.insert"],
        tenant_id,
        job_id,
        run_id,
        kind,
        severity,
        message,
        details or {},
    )
    log.info("notification", kind=kind, severity=severity, job_id=job_id, run_id=run_id)
    return notification_id


def webhook_payload(row: dict[str, Any]) -> dict[str, Any]:
    """Slack-compatible body: a `text` field, plus structured fields for other receivers."""
    job = f" job {row['job_name']}" if row.get("job_name") else ""
    text = f"[etld] {row['severity'].upper()} {row['tenant']}{job}: {row['message']}"
    return {
        "text": text,
        "kind": row["kind"],
        "severity": row["severity"],
        "tenant": row["tenant"],
        "job": row.get("job_name"),
        "run_id": row.get("run_id"),
    }


async def deliver_pending(
    pool: asyncpg.Pool, config: NotificationsConfig, session: aiohttp.ClientSession
) -> int:
    """Deliver what is due; returns how many were delivered."""
    if not config.webhook_url:
        return 0
    delivered = 0
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(SQL["notifications.undelivered"], config.max_attempts)
        for row in rows:
            payload = webhook_payload(dict(row))
            try:
                async with session.post(
                    config.webhook_url,
                    json=payload,
                    timeout=aiohttp.ClientTimeout(total=config.timeout),
                ) as resp:
                    if resp.status >= 300:
                        raise aiohttp.ClientResponseError(
                            resp.request_info, (), status=resp.status, message=resp.reason or ""
                        )
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
                await conn.execute(SQL["notifications.delivery_failed"], row["id"], error)
                log.warning("notification delivery failed", notification=row["id"], error=error)
                continue
            await conn.execute(SQL["notifications.delivered"], row["id"])
            delivered += 1
    return delivered


async def delivery_loop(
    pool: asyncpg.Pool, config: NotificationsConfig, interval: float = 5.0
) -> None:
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                await deliver_pending(pool, config, session)
            except (asyncpg.PostgresError, OSError) as exc:
                log.warning("notification delivery pass failed", error=repr(exc))
            await asyncio.sleep(interval)


class NotificationDelivery(Component):
    """Delivers stored notifications to the configured webhook (scheduler role)."""

    name = "notifications"

    def __init__(self, pool: asyncpg.Pool, config: NotificationsConfig) -> None:
        self.pool = pool
        self.config = config
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.config.webhook_url:
            self._task = asyncio.create_task(delivery_loop(self.pool, self.config))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
