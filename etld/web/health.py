"""Liveness, readiness and Prometheus metrics endpoints."""

from __future__ import annotations

import asyncio

import prometheus_client
from aiohttp import web

from etld.store.migrate import schema_is_current
from etld.web.keys import DAEMON

READY_CHECK_TIMEOUT = 3.0


async def health(request: web.Request) -> web.Response:
    """The process is alive and its loop answers."""
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    """PostgreSQL and RabbitMQ reachable and the schema current: 200, else 503 with reasons."""
    daemon = request.app[DAEMON]
    checks: dict[str, str] = {}
    pool = daemon.pool
    if pool is None:
        checks["postgres"] = "not started"
        checks["migrations"] = "unknown"
    else:
        try:
            async with asyncio.timeout(READY_CHECK_TIMEOUT):
                async with pool.acquire() as conn:
                    await conn.fetchval("SELECT 1")
                    current = await schema_is_current(conn)
            checks["postgres"] = "ok"
            checks["migrations"] = "ok" if current else "pending or unknown migrations"
        except Exception as exc:
            checks["postgres"] = f"unreachable: {type(exc).__name__}"
            checks["migrations"] = "unknown"
    broker = daemon.broker
    checks["rabbitmq"] = "ok" if broker is not None and broker.connected else "disconnected"
    ok = all(value == "ok" for value in checks.values())
    return web.json_response(
        {"status": "ready" if ok else "unavailable", "checks": checks}, status=200 if ok else 503
    )


async def metrics(request: web.Request) -> web.Response:
    body = prometheus_client.generate_latest()
    return web.Response(body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
