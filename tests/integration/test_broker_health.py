"""Queue health, worker status and restart through etl.control, and Prometheus metrics."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Callable

import orjson
import prometheus_client
import pytest
import structlog

from etld.broker.control import NoDaemons, restart_workers
from etld.broker.health import queue_health
from etld.broker.publish import Publisher
from etld.broker.session import broker_session
from etld.broker.topology import Topology
from etld.commands import workers as workers_command
from etld.config import Config
from etld.daemon import Daemon
from etld.workers import Delivery, HandlerContext
from etld.workers.pool import ConsumerPool
from tests.integration.test_broker_support import (
    extraction,
    quiet_logging,
    running_daemon,
    wait_until,
)

QUEUE = "extraction_queue_free"


async def cli(config: Config, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="etld")
    workers_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["workers", *argv])
    args.config_obj = config
    quiet_logging()
    code: int = await asyncio.to_thread(args.func, args)
    return code


def sample(name: str, **labels: str) -> float:
    return prometheus_client.REGISTRY.get_sample_value(name, labels) or 0.0


async def test_queue_health_and_worker_status(
    make_config: Callable[..., Config], capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(
        pipeline={"tiers": ["free", "premium"]},
        workers={"premium": {"extraction": 3, "transform": 0}},
    )
    async with running_daemon(config, {}) as daemon:
        publisher: Publisher = daemon.services["publisher"]
        # transform_queue_premium has no consumer here, so its messages wait.
        for _ in range(2):
            await publisher.publish("transform_queue_premium", {"not": "checked until consumed"})
        assert daemon.broker is not None
        stats = {item.name: item for item in await queue_health(daemon.broker, config)}
        assert set(stats) == {spec.name for spec in Topology(config).all_queues()}
        assert all(item.exists for item in stats.values())
        waiting = stats["transform_queue_premium"]
        assert (waiting.ready, waiting.consumers) == (2, 0)
        assert stats["extraction_queue_premium"].consumers == 1
        assert stats["etl.delay.50ms"].consumers == 0
        assert sample("etld_queue_messages", queue="transform_queue_premium") == 2

        capsys.readouterr()
        assert await cli(config, "status", "--json", "--timeout", "2") == 0
        report = orjson.loads(capsys.readouterr().out)
        queues = {q["name"]: q for q in report["queues"]}
        assert queues["transform_queue_premium"]["depth"] == 2
        [me] = report["daemons"]
        workers = {(w["stage"], w["tier"]): w for w in me["workers"]}
        assert workers["extraction", "premium"]["concurrency"] == 3
        assert workers["extraction", "premium"]["state"] == "consuming"
        assert workers["extraction", "premium"]["processed"] == 0
        assert ("transform", "premium") not in workers
        assert workers["jobs", None]["handler"] is False

        assert await cli(config, "status", "--timeout", "2") == 0
        text = capsys.readouterr().out
        assert "transform_queue_premium" in text
        assert f"daemon {me['daemon']}" in text


async def test_restart_waits_for_in_flight_handlers_and_resumes(
    make_config: Callable[..., Config], capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(pipeline={"tiers": ["free"]})
    release = asyncio.Event()
    started: list[int] = []
    finished: list[int] = []

    async def handle(delivery: Delivery, ctx: HandlerContext) -> None:
        started.append(delivery.raw["seq"])
        if delivery.raw["seq"] == 0:
            await release.wait()
        finished.append(delivery.raw["seq"])

    before = sample("etld_worker_restarts_total", stage="extraction", tier="free")
    async with running_daemon(config, {"extraction": handle}) as daemon:
        publisher: Publisher = daemon.services["publisher"]
        await publisher.publish(QUEUE, extraction(0))
        await wait_until(lambda: started == [0], what="the slow handler")
        async with broker_session(config) as (broker, client):
            restart = asyncio.create_task(
                restart_workers(broker, client, stage="extraction", timeout=10)
            )
            consumer = _pool(daemon).select("extraction")[0]
            await wait_until(lambda: consumer.state == "restarting", what="the restart to begin")
            assert not restart.done()
            release.set()
            [result] = await restart
        assert result["ok"] is True
        assert result["restarted"] == [QUEUE]
        assert (consumer.restarts, consumer.state) == (1, "consuming")
        assert _pool(daemon).select("transform")[0].restarts == 0
        # Consuming again, and the slow message was acked once, not redelivered.
        await publisher.publish(QUEUE, extraction(1))
        await wait_until(lambda: finished == [0, 1], what="a message after the restart")
        assert started == [0, 1]

        assert await cli(config, "restart", "--timeout", "10") == 0
        assert "restarted 4 consumer(s)" in capsys.readouterr().out
    assert sample("etld_worker_restarts_total", stage="extraction", tier="free") == before + 2


async def test_restart_without_daemons_says_so(make_config: Callable[..., Config]) -> None:
    config = make_config()
    async with broker_session(config) as (broker, client):
        with pytest.raises(NoDaemons):
            await restart_workers(broker, client, timeout=1)
    assert await cli(config, "restart", "--timeout", "1") == 1


async def test_handled_messages_and_latency_are_counted(make_config: Callable[..., Config]) -> None:
    config = make_config(pipeline={"tiers": ["free"]})
    labels = {"stage": "extraction", "tier": "free"}
    handled_before = sample("etld_messages_handled_total", **labels)
    timed_before = sample("etld_handler_seconds_count", **labels)
    done: list[int] = []
    contexts: list[dict[str, object]] = []

    async def handle(delivery: Delivery, ctx: HandlerContext) -> None:
        # The runner binds the message's identity for every log line the handler writes.
        contexts.append(structlog.contextvars.get_contextvars())
        assert await ctx.pool.fetchval("SELECT 1") == 1
        assert (ctx.stage, ctx.tier, ctx.config) == ("extraction", "free", config)
        done.append(delivery.raw["seq"])

    async with running_daemon(config, {"extraction": handle}) as daemon:
        ids = [await daemon.services["publisher"].publish(QUEUE, extraction(n)) for n in range(5)]
        await wait_until(lambda: len(done) == 5, what="five messages")
        # The consumer counts what it settled: its daemon's share in `etld workers status`.
        [consumer] = _pool(daemon).select("extraction")
        await wait_until(lambda: consumer.status()["processed"] == 5, what="five settled")
    assert contexts[0] == {
        "stage": "extraction",
        "tier": "free",
        "tenant_id": 1,
        "job_id": 1,
        "message_id": ids[0],
    }
    assert sample("etld_messages_handled_total", **labels) == handled_before + 5
    assert sample("etld_handler_seconds_count", **labels) == timed_before + 5
    text = prometheus_client.generate_latest().decode()
    assert "etld_messages_dead_lettered_total" in text
    assert 'etld_published_total{exchange="default"}' in text


@pytest.mark.skipif(
    not os.environ.get("ETLD_TEST_MANAGEMENT_URL"),
    reason="set ETLD_TEST_MANAGEMENT_URL (rabbitmq_management enabled) to test the HTTP API path",
)
async def test_queue_health_from_management_api(make_config: Callable[..., Config]) -> None:
    config = make_config(
        pipeline={"tiers": ["free"]},
        rabbitmq={"management_url": os.environ["ETLD_TEST_MANAGEMENT_URL"]},
    )
    release = asyncio.Event()

    async def handle(delivery: Delivery, ctx: HandlerContext) -> None:
        await release.wait()

    async with running_daemon(config, {"extraction": handle}) as daemon:
        await daemon.services["publisher"].publish(QUEUE, extraction(0))
        assert daemon.broker is not None

        async def unacked_seen() -> bool:
            # The management API refreshes its numbers every few seconds.
            assert daemon.broker is not None
            stats = {s.name: s for s in await queue_health(daemon.broker, config)}
            return stats[QUEUE].unacked == 1

        try:
            await wait_until(unacked_seen, timeout=20, what="unacked count from the API")
        finally:
            release.set()


def _pool(daemon: Daemon) -> ConsumerPool:
    pool: ConsumerPool = daemon.services["consumer_pool"]
    return pool
