"""Shared fixtures: real PostgreSQL and RabbitMQ, isolated per test.

PostgreSQL: one migrated template database per test session, copied per test
(`CREATE DATABASE ... TEMPLATE`), which is much faster than migrating each time.
RabbitMQ: one virtual host per test, so queue names stay exactly as in
production (`extraction_queue_premium`, ...) without tests seeing each other.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import asyncpg
import pytest

from etld.config import Config, parse_config
from etld.store.migrate import migrate
from etld.store.pool import create_pool

PG_SERVER = os.environ.get("ETLD_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
AMQP_SERVER = os.environ.get("ETLD_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672")


def _pg(name: str) -> str:
    return f"{PG_SERVER}/{name}"


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(_pg("postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template_db() -> Iterator[str]:
    name = f"etld_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    async def setup() -> None:
        await _admin(f'CREATE DATABASE "{name}"')
        await migrate(_pg(name))

    asyncio.run(setup())
    yield name
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def db_url(template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    name = f"etld_t_{uuid.uuid4().hex[:10]}"
    await _admin(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield _pg(name)
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def empty_db_url() -> AsyncIterator[str]:
    """A database with no schema at all."""
    name = f"etld_e_{uuid.uuid4().hex[:10]}"
    await _admin(f'CREATE DATABASE "{name}"')
    yield _pg(name)
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(db_url, min_size=1, max_size=5, timeout=10, command_timeout=60)
    yield p
    await p.close()


def rabbitmqctl(*args: str, attempts: int = 5) -> None:
    """Run rabbitmqctl, retrying: the CLI fails now and then when the node is busy."""
    for attempt in range(1, attempts + 1):
        result = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, timeout=60)
        if result.returncode == 0:
            return
        if attempt == attempts:
            raise RuntimeError(
                f"rabbitmqctl {' '.join(args)} failed ({result.returncode}): "
                f"{result.stderr.decode(errors='replace').strip()}"
            )
        time.sleep(0.5 * attempt)


@pytest.fixture
def amqp_url() -> Iterator[str]:
    """A private RabbitMQ virtual host for one test."""
    vhost = f"etld_t_{uuid.uuid4().hex[:10]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    yield f"{AMQP_SERVER}/{vhost}"
    try:
        rabbitmqctl("delete_vhost", vhost)
    except RuntimeError as exc:
        # A vhost left behind costs nothing to the next test; failing this one would hide
        # its real result.
        print(f"could not delete test vhost {vhost}: {exc}", file=sys.stderr)


@pytest.fixture
def make_config(db_url: str, amqp_url: str) -> Callable[..., Config]:
    """Build a Config on the test's database and vhost; keyword sections override."""

    def build(**sections: dict[str, Any]) -> Config:
        raw: dict[str, Any] = {
            "database": {"url": db_url, "min_connections": 1, "max_connections": 5},
            "rabbitmq": {"url": amqp_url, "retry_delays": [0.05, 0.1, 0.2]},
            "web": {"port": 0},
            "daemon": {"grace_period": 5.0, "connect_timeout": 5.0},
            "logging": {"level": "warning", "format": "console"},
            "embeddings": {"enabled": False},
        }
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(raw.get(key), dict):
                raw[key] = {**raw[key], **value}
            else:
                raw[key] = value
        return parse_config(raw)

    return build
