"""Dead-letter tools: list, show, requeue, purge (library and CLI), and broker dead letters."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any

import aiormq
import asyncpg
import orjson
import pytest

from etld import dlq
from etld.broker.publish import Publisher
from etld.commands import dlq as dlq_command
from etld.config import Config
from etld.workers import Delivery, HandlerContext
from tests.integration.test_broker_support import (
    amqp,
    extraction,
    queue_counts,
    quiet_logging,
    running_daemon,
    wait_until,
)

QUEUE = "extraction_queue_free"


async def cli(config: Config, *argv: str) -> int:
    """Run an `etld dlq ...` command as the CLI would (in a thread: it runs its own loop)."""
    parser = argparse.ArgumentParser(prog="etld")
    dlq_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["dlq", *argv])
    args.config_obj = config
    quiet_logging()
    code: int = await asyncio.to_thread(args.func, args)
    return code


async def dead(pool: asyncpg.Pool, count: int) -> None:
    async def enough() -> bool:
        return len(await dlq.list_dead_letters(pool)) == count

    await wait_until(enough, what=f"{count} dead letters")


async def test_list_show_requeue_purge(
    make_config: Callable[..., Config],
    pool: asyncpg.Pool,
    amqp_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = make_config(pipeline={"tiers": ["free"]}, rabbitmq={"max_retries": {"extraction": 1}})
    broken = True
    handled: list[tuple[int, Any]] = []

    async def handle(delivery: Delivery, ctx: HandlerContext) -> None:
        if broken:
            raise RuntimeError("mapping table missing")
        handled.append((delivery.raw["seq"], delivery.headers.get("x-etld-requeued-from")))

    async with running_daemon(config, {"extraction": handle}) as daemon:
        publisher: Publisher = daemon.services["publisher"]
        for n in range(3):
            await publisher.publish(QUEUE, extraction(n))
        await dead(pool, 3)
        first, second, third = sorted(letter.id for letter in await dlq.list_dead_letters(pool))

        capsys.readouterr()
        assert await cli(config, "list") == 0
        listing = capsys.readouterr().out
        assert "failed after 1 attempts: RuntimeError: mapping table missing" in listing
        assert listing.count(QUEUE) == 3
        assert await cli(config, "list", "--json", "--queue", QUEUE, "--limit", "2") == 0
        rows = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [row["id"] for row in rows] == [third, second]
        assert orjson.loads(rows[0]["body"])["seq"] == 2
        assert await cli(config, "show", str(first)) == 0
        shown = capsys.readouterr().out
        assert "RuntimeError: mapping table missing" in shown
        assert "Traceback" in shown

        broken = False
        assert await cli(config, "requeue", str(first)) == 0
        await wait_until(lambda: handled == [(0, first)], what="the requeued message")
        result = await dlq.requeue(pool, publisher, all_dead=True)
        assert sorted(result.requeued) == [second, third]
        await wait_until(lambda: len(handled) == 3, what="all requeued messages")

        # Requeuing again finds nothing dead with that id.
        assert await cli(config, "requeue", str(first)) == 1
        assert "skipped" in capsys.readouterr().out
        row = await dlq.get_dead_letter(pool, first)
        assert row is not None
        assert (row.status, row.requeue_count) == ("requeued", 1)
        assert row.requeued_at is not None

        broken = True
        await publisher.publish(QUEUE, extraction(9))
        await dead(pool, 1)
        assert (await queue_counts(amqp_url, "etl.failed"))["etl.failed"][0] == 4
        assert await cli(config, "purge") == 0
        out = capsys.readouterr().out
        assert "purged 1 dead letter(s)" in out
        assert "removed 4 message(s) from etl.failed" in out
        assert await dlq.list_dead_letters(pool) == []
        assert len(await dlq.list_dead_letters(pool, status="purged")) == 1


async def test_requeue_needs_ids_or_all(make_config: Callable[..., Config]) -> None:
    config = make_config()
    assert await cli(config, "requeue") == 2
    assert await cli(config, "requeue", "1", "--all") == 2


async def test_message_the_broker_dead_letters_is_recorded(
    make_config: Callable[..., Config], pool: asyncpg.Pool, amqp_url: str
) -> None:
    # No job workers: a job message waits in etl.jobs until its TTL sends it to etl.dlx.
    config = make_config(pipeline={"tiers": ["free"], "job_workers": 0})
    job = {"job_id": 4, "tenant_id": 1, "integration_id": 1, "job_type": "jira_sync"}
    async with running_daemon(config, {}):
        async with amqp(amqp_url) as channel:
            await channel.basic_publish(
                orjson.dumps(job),
                routing_key="etl.jobs",
                properties=aiormq.spec.Basic.Properties(delivery_mode=2, expiration="1"),
            )
        await dead(pool, 1)
    [row] = await dlq.list_dead_letters(pool)
    assert row.reason == "dead-lettered by the broker (expired) from etl.jobs"
    assert (row.queue, row.stage, row.job_id, row.message_type) == (
        "etl.jobs",
        "jobs",
        4,
        "jira_sync",
    )
    # Also in etl.failed, routed there by the broker itself, and recorded only once.
    counts = await queue_counts(amqp_url, "etl.failed", "etl.failed.record")
    assert counts["etl.failed"][0] == 1
    assert counts["etl.failed.record"][0] == 0
