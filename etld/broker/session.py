"""A short-lived broker session for tools (CLI, scripts): connect, declare, publish, close."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from etld.broker.connection import BrokerConnection
from etld.broker.publish import Publisher
from etld.broker.topology import Topology
from etld.config import Config


@contextlib.asynccontextmanager
async def broker_session(
    config: Config, name: str = "etld-cli"
) -> AsyncIterator[tuple[BrokerConnection, Publisher]]:
    """The connection (topology declared, as the daemon does) and a confirmed publisher."""
    broker = BrokerConnection(
        config.rabbitmq.url,
        heartbeat=config.rabbitmq.heartbeat,
        connect_timeout=config.rabbitmq.connect_timeout,
        name=name,
    )
    broker.on_connect(Topology(config).declare)
    await broker.start()
    publisher = Publisher(broker, config)
    try:
        await publisher.start()
        yield broker, publisher
    finally:
        await publisher.close()
        await broker.close()
