"""Queue health: depth, ready/unacked counts and consumers of every etld queue.

Without configuration the numbers come from AMQP passive declares, which report
ready messages and consumers but not unacked ones. With
`rabbitmq.management_url` set, the management HTTP API supplies all three in
one request (falling back to AMQP if it cannot be reached). Either way the
Prometheus queue gauges are refreshed as a side effect.
"""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import aiormq
import yarl

from etld.broker.connection import BrokerConnection
from etld.broker.topology import Topology
from etld.config import Config
from etld.logs import get_logger
from etld.telemetry import QUEUE_CONSUMERS, QUEUE_MESSAGES, QUEUE_UNACKED

log = get_logger(__name__)

MANAGEMENT_TIMEOUT = 5.0


@dataclass(frozen=True)
class QueueStats:
    name: str
    stage: str | None
    tier: str | None
    exists: bool
    ready: int | None = None
    unacked: int | None = None
    consumers: int | None = None
    source: str = "amqp"

    @property
    def depth(self) -> int | None:
        """Messages in the queue, delivered or not (ready alone when unacked is unknown)."""
        if self.ready is None:
            return None
        return self.ready + (self.unacked or 0)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "depth": self.depth}


async def passive_counts(
    connection: aiormq.abc.AbstractConnection, names: list[str]
) -> dict[str, tuple[int, int] | None]:
    """(ready, consumers) per queue via passive declares; None for a missing queue."""
    out: dict[str, tuple[int, int] | None] = {}
    channel: aiormq.abc.AbstractChannel | None = None
    try:
        for name in names:
            if channel is None or channel.is_closed:
                channel = await connection.channel(publisher_confirms=False)
            try:
                ok = await channel.queue_declare(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                out[name] = None  # the broker closed the channel; the next name reopens one
                continue
            out[name] = (int(ok.message_count or 0), int(ok.consumer_count or 0))
    finally:
        if channel is not None and not channel.is_closed:
            await channel.close()
    return out


def _management_target(management_url: str, amqp_url: str) -> tuple[str, str]:
    """The queues URL of the vhost etld uses, and its Authorization header value."""
    amqp = yarl.URL(amqp_url)
    api = yarl.URL(management_url)
    vhost = amqp.path[1:] if len(amqp.path) > 1 else "/"
    user = api.user or amqp.user or "guest"
    password = api.password or amqp.password or "guest"
    base = str(api.with_user(None).with_password(None)).rstrip("/")
    # Built by hand: aiohttp's BasicAuth helper is deprecated in newer releases.
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"{base}/api/queues/{quote(vhost, safe='')}", f"Basic {token}"


async def management_counts(management_url: str, amqp_url: str) -> dict[str, tuple[int, int, int]]:
    """(ready, unacked, consumers) per queue of the vhost, from the management API."""
    url, auth = _management_target(management_url, amqp_url)
    params = {"columns": "name,messages_ready,messages_unacknowledged,consumers"}
    timeout = aiohttp.ClientTimeout(total=MANAGEMENT_TIMEOUT)
    async with (
        aiohttp.ClientSession(timeout=timeout, headers={"Authorization": auth}) as session,
        session.get(url, params=params) as response,
    ):
        response.raise_for_status()
        rows = await response.json()
    return {
        row["name"]: (
            int(row.get("messages_ready") or 0),
            int(row.get("messages_unacknowledged") or 0),
            int(row.get("consumers") or 0),
        )
        for row in rows
    }


async def queue_health(broker: BrokerConnection, config: Config) -> list[QueueStats]:
    """Stats of every queue in the etld topology, in topology order."""
    specs = Topology(config).all_queues()
    names = [spec.name for spec in specs]
    stats: list[QueueStats] = []
    management: dict[str, tuple[int, int, int]] | None = None
    if config.rabbitmq.management_url:
        try:
            management = await management_counts(
                config.rabbitmq.management_url, config.rabbitmq.url
            )
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning(
                "management API unavailable, using AMQP", error=str(exc) or type(exc).__name__
            )
    if management is not None:
        for spec in specs:
            row = management.get(spec.name)
            ready, unacked, consumers = row if row else (None, None, None)
            stats.append(
                QueueStats(
                    spec.name,
                    spec.stage,
                    spec.tier,
                    row is not None,
                    ready,
                    unacked,
                    consumers,
                    source="management",
                )
            )
    else:
        counts = await passive_counts(broker.connection, names)
        for spec in specs:
            pair = counts.get(spec.name)
            ready, consumers = pair if pair else (None, None)
            stats.append(
                QueueStats(
                    spec.name, spec.stage, spec.tier, pair is not None, ready, None, consumers
                )
            )
    for item in stats:
        if item.ready is not None:
            QUEUE_MESSAGES.labels(item.name).set(item.ready)
            QUEUE_CONSUMERS.labels(item.name).set(item.consumers or 0)
        if item.unacked is not None:
            QUEUE_UNACKED.labels(item.name).set(item.unacked)
    return stats
