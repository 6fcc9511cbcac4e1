"""Queue throughput: etld's publisher and consumer pool against raw aiormq, same run.

    python -m bench.queue [--messages 20000] [--concurrency 32] [--rounds 3]

Both sides move the same messages (valid extraction messages, with the AMQP
properties etld sets: persistent, content type, type, id, timestamp, mandatory)
through one durable queue on a private RabbitMQ vhost, with publisher confirms,
manual acks and the same prefetch:

- raw: aiormq publish with confirms, basic_consume with a callback that acks;
- etld: `Publisher.publish` and a real `Daemon` (workers role) whose pool runs
  the full runner (decode, validate, no-op handler, ack, metrics, log context).

Throughput is end to end: from the first publish to the last ack, with the
consumer already running. Rounds alternate raw/etld and the best of each is
reported, which evens out noise from other work on the machine. The result is
printed and written to bench/results/queue.json. Needs the local RabbitMQ
(rabbitmqctl, to make a vhost) and PostgreSQL (the daemon's database).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiormq
import asyncpg
import orjson

from etld.config import Config, parse_config
from etld.daemon import Daemon
from etld.logs import configure_logging
from etld.workers import Delivery, HandlerContext

AMQP_SERVER = os.environ.get("ETLD_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672")
PG_SERVER = os.environ.get("ETLD_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
TIER = "bench"
QUEUE = f"extraction_queue_{TIER}"
RAW_QUEUE = "bench.raw"
PUBLISH_WINDOW = 200  # publishes in flight at once, on both sides
RESULTS = Path(__file__).resolve().parent / "results" / "queue.json"


def message(n: int) -> dict[str, Any]:
    return {
        "tenant_id": 1,
        "integration_id": 1,
        "job_id": 1,
        "type": "jira_issues",
        "provider": "jira",
        "last_sync_date": "2025-10-21T14:00:00",
        "first_item": n == 0,
        "last_item": False,
        "last_job_item": False,
        "issue_key": f"BENCH-{n}",
    }


async def publish_all(publish: Any, count: int) -> None:
    for start in range(0, count, PUBLISH_WINDOW):
        await asyncio.gather(
            *(publish(n) for n in range(start, min(start + PUBLISH_WINDOW, count)))
        )


async def run_raw(url: str, count: int, prefetch: int) -> float:
    connection = await aiormq.connect(url)
    try:
        consume = await connection.channel()
        await consume.queue_declare(RAW_QUEUE, durable=True)
        await consume.basic_qos(prefetch_count=prefetch)
        publish = await connection.channel(publisher_confirms=True)
        received = 0
        finished = asyncio.Event()

        async def on_message(msg: aiormq.abc.DeliveredMessage) -> None:
            nonlocal received
            await consume.basic_ack(msg.delivery_tag or 0)
            received += 1
            if received == count:
                finished.set()

        await consume.basic_consume(RAW_QUEUE, on_message)

        async def send(n: int) -> None:
            properties = aiormq.spec.Basic.Properties(
                content_type="application/json",
                delivery_mode=2,
                message_id=os.urandom(16).hex(),
                message_type="extraction",
                timestamp=datetime.now(UTC),
            )
            await publish.basic_publish(
                orjson.dumps(message(n)),
                routing_key=RAW_QUEUE,
                properties=properties,
                mandatory=True,
            )

        started = time.perf_counter()
        await publish_all(send, count)
        await finished.wait()
        return count / (time.perf_counter() - started)
    finally:
        await connection.close()


async def run_etld(config: Config, count: int) -> float:
    received = 0
    finished = asyncio.Event()

    async def noop(delivery: Delivery, ctx: HandlerContext) -> None:
        nonlocal received
        received += 1
        if received == count:
            finished.set()

    daemon = Daemon(config, roles=frozenset({"workers"}))
    daemon.services["handlers"] = {"extraction": noop}
    await daemon.start()
    try:
        publisher = daemon.services["publisher"]

        async def send(n: int) -> None:
            await publisher.publish(QUEUE, message(n))

        started = time.perf_counter()
        await publish_all(send, count)
        await finished.wait()
        return count / (time.perf_counter() - started)
    finally:
        await daemon.shutdown()


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


async def pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(f"{PG_SERVER}/postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:8]
    vhost, database = f"etld_bench_{suffix}", f"etld_bench_{suffix}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    await pg_admin(f'CREATE DATABASE "{database}"')
    url = f"{AMQP_SERVER}/{vhost}"
    config = parse_config(
        {
            "database": {"url": f"{PG_SERVER}/{database}", "max_connections": 2},
            "rabbitmq": {"url": url},
            "pipeline": {"tiers": [TIER], "job_workers": 0},
            "workers": {TIER: {"extraction": args.concurrency, "transform": 0, "embedding": 0}},
        }
    )
    raw: list[float] = []
    etld: list[float] = []
    try:
        for _ in range(args.rounds):
            raw.append(await run_raw(url, args.messages, args.concurrency))
            etld.append(await run_etld(config, args.messages))
    finally:
        rabbitmqctl("delete_vhost", vhost)
        await pg_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    best_raw, best_etld = max(raw), max(etld)
    return {
        "messages": args.messages,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "raw_msgs_per_s": round(best_raw),
        "etld_msgs_per_s": round(best_etld),
        "ratio": round(best_etld / best_raw, 3),
        "raw_rounds": [round(x) for x in raw],
        "etld_rounds": [round(x) for x in etld],
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32, help="prefetch on both sides")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    configure_logging("error", "console")
    result = asyncio.run(main(args))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"raw aiormq: {result['raw_msgs_per_s']} msg/s   etld: {result['etld_msgs_per_s']} msg/s   "
        f"ratio: {result['ratio']:.0%}   ({args.messages} messages, prefetch {args.concurrency})"
    )


if __name__ == "__main__":
    cli()
