"""The consumer pool: every stage queue's consumer, as one daemon component.

Stages and their concurrency come from the config: `jobs` on `etl.jobs` with
`pipeline.job_workers`, and extraction/transform/embedding on each tier's
queues with `workers.<tier>.<stage>` (0 means this daemon does not consume that
queue). A stage without a handler still consumes, and dead-letters what it gets
with "no handler for stage X", so misrouted work is visible rather than stuck.

Shutdown follows the daemon's phases: stop_taking_work cancels every consumer,
drain waits for in-flight handlers (which ack as they finish), close cancels
whatever outlived the grace period; its messages were never acked, so the
broker redelivers them.

The pool also answers `etld workers status|restart` through `etl.control`, and
samples queue depths for Prometheus.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiormq

from etld.broker.control import ControlListener
from etld.broker.health import queue_health
from etld.broker.publish import Publisher
from etld.broker.topology import ALL_STAGES, FAILED_RECORD_QUEUE, Topology
from etld.component import Component
from etld.logs import get_logger
from etld.telemetry import WORKER_RESTARTS, tier_label
from etld.workers.consumer import Process, StageConsumer
from etld.workers.handler import Handler, HandlerContext
from etld.workers.recorder import BrokerDeadLetterRecorder
from etld.workers.runner import Runner

if TYPE_CHECKING:
    from etld.daemon import Daemon

log = get_logger(__name__)

QUEUE_SAMPLE_INTERVAL = 15.0
RECORDER_STAGE = "dead_letters"


class ConsumerPool(Component):
    name = "workers"

    def __init__(self, daemon: Daemon, handlers: Mapping[str, Handler] | None = None) -> None:
        if daemon.broker is None or daemon.pool is None:
            raise RuntimeError("the consumer pool needs the daemon's broker and database pool")
        self.daemon = daemon
        self.config = daemon.config
        self.broker = daemon.broker
        self.publisher: Publisher = daemon.services["publisher"]
        self.handlers = dict(handlers or {})
        unknown = sorted(set(self.handlers) - set(ALL_STAGES))
        if unknown:
            # A typo here would silently dead-letter a whole stage.
            raise ValueError(f"handlers for unknown stage(s) {unknown}; stages are {ALL_STAGES}")
        self.topology = Topology(self.config)
        self.consumers = self._build()
        self.control = ControlListener(self.broker, self.publisher, self._on_command)
        self._sampler: asyncio.Task[None] | None = None
        # For other parts (web API, tests) that show worker status or restart consumers.
        daemon.services["consumer_pool"] = self

    def _build(self) -> list[StageConsumer]:
        assert self.daemon.pool is not None
        consumers: list[StageConsumer] = []
        for spec in self.topology.stage_queues():
            stage, tier = spec.stage, spec.tier
            assert stage is not None
            if stage == "jobs":
                concurrency = self.config.pipeline.job_workers
            else:
                assert tier is not None
                concurrency = self.config.workers_for(tier).for_stage(stage)
            if concurrency <= 0:
                continue
            context = HandlerContext(
                pool=self.daemon.pool,
                publisher=self.publisher,
                config=self.config,
                log=get_logger(f"etld.workers.{stage}"),
                stage=stage,
                tier=tier,
                services=self.daemon.services,
            )
            runner = Runner(
                stage=stage,
                tier=tier,
                queue=spec.name,
                handler=self.handlers.get(stage),
                context=context,
                topology=self.topology,
            )
            consumers.append(self._consumer(spec.name, stage, tier, concurrency, runner.process))
        recorder = BrokerDeadLetterRecorder(self.daemon.pool)
        consumers.append(
            self._consumer(
                # Stage queues take their prefetch from [workers.<tier>]; etld's own
                # bookkeeping consumer takes rabbitmq.prefetch.
                FAILED_RECORD_QUEUE,
                RECORDER_STAGE,
                None,
                self.config.rabbitmq.prefetch,
                recorder.process,
            )
        )
        return consumers

    def _consumer(
        self, queue: str, stage: str, tier: str | None, concurrency: int, process: Process
    ) -> StageConsumer:
        return StageConsumer(
            broker=self.broker,
            queue=queue,
            stage=stage,
            tier=tier,
            concurrency=concurrency,
            process=process,
            prepare=self.topology.declare,
        )

    # -- component phases ---------------------------------------------------------------

    async def start(self) -> None:
        connection = self.broker.connection
        for consumer in self.consumers:
            await consumer.attach(connection)
        self.broker.on_connect(self._on_connect)
        await self.control.start()
        self._sampler = asyncio.create_task(self._sample_queues(), name="queue-sampler")
        log.info(
            "consumers started",
            queues=len(self.consumers),
            handlers=sorted(self.handlers),
        )

    async def _on_connect(self, connection: aiormq.abc.AbstractConnection) -> None:
        for consumer in self.consumers:
            await consumer.attach(connection)
        log.info("consumers resumed", queues=len(self.consumers))

    async def stop_taking_work(self) -> None:
        self.broker.remove_callback(self._on_connect)
        await self.control.close()
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        await asyncio.gather(*(consumer.stop() for consumer in self.consumers))

    async def drain(self) -> None:
        in_flight = sum(len(consumer.inflight) for consumer in self.consumers)
        if in_flight:
            log.info("waiting for in-flight handlers", count=in_flight)
        # Each wait_idle uses asyncio.wait, so the daemon cancelling this drain at the
        # grace deadline does not cancel the handlers themselves; close() does that.
        await asyncio.gather(*(consumer.wait_idle() for consumer in self.consumers))

    async def close(self) -> None:
        left = sum(len(consumer.inflight) for consumer in self.consumers)
        if left:
            log.warning(
                "cancelling handlers past the grace period; their messages return", count=left
            )
        await asyncio.gather(*(consumer.close() for consumer in self.consumers))

    # -- control ------------------------------------------------------------------------

    def select(self, stage: str | None = None, tier: str | None = None) -> list[StageConsumer]:
        return [
            consumer
            for consumer in self.consumers
            if consumer.stage != RECORDER_STAGE
            and (stage is None or consumer.stage == stage)
            and (tier is None or consumer.tier == tier)
        ]

    async def restart(
        self, stage: str | None = None, tier: str | None = None
    ) -> list[StageConsumer]:
        """Restart the consumers of a stage (and tier), or all: each lets its in-flight
        handlers finish, then consumes on a fresh channel. The daemon keeps running."""
        selected = self.select(stage, tier)
        log.info("restarting consumers", stage=stage, tier=tier, count=len(selected))
        await asyncio.gather(*(consumer.restart() for consumer in selected))
        for consumer in selected:
            WORKER_RESTARTS.labels(consumer.stage, tier_label(consumer.tier)).inc()
        return selected

    async def restart_all_workers(self) -> list[StageConsumer]:
        return await self.restart()

    def status(self) -> list[dict[str, Any]]:
        """Worker status per stage and tier in this daemon."""
        return [
            {**consumer.status(), "handler": consumer.stage in self.handlers}
            for consumer in self.consumers
        ]

    async def _on_command(self, command: dict[str, Any]) -> dict[str, Any]:
        name = command.get("command")
        if name == "status":
            return {"ok": True, "workers": self.status()}
        if name == "restart":
            stage, tier = command.get("stage"), command.get("tier")
            restarted = await self.restart(
                stage if isinstance(stage, str) else None, tier if isinstance(tier, str) else None
            )
            return {"ok": True, "restarted": [consumer.queue for consumer in restarted]}
        return {"ok": False, "error": f"unknown command {name!r}"}

    async def _sample_queues(self) -> None:
        while True:
            for consumer in self.consumers:
                consumer.sample()
            if self.broker.connected:
                try:
                    await queue_health(self.broker, self.config)
                except Exception as exc:
                    log.debug("queue sampling failed", error=repr(exc))
            await asyncio.sleep(QUEUE_SAMPLE_INTERVAL)
