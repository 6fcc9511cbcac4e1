"""The daemon: one asyncio process owning every part of etld.

Parts start in order (PostgreSQL pool → migrations → RabbitMQ → consumers →
scheduler → web) and stop in reverse. One stop event, set by SIGTERM/SIGINT or
by a dying part, drives a three-phase shutdown: every part stops taking work,
then in-flight work gets the grace period to finish, then what is left is
cancelled and logged. A part that dies stops the daemon with exit code 1 instead
of leaving it limping.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import time
from collections.abc import Coroutine
from typing import Any

import asyncpg

from etld.broker.connection import BrokerConnection
from etld.broker.publish import Publisher
from etld.broker.topology import Topology
from etld.component import CallbackComponent, Component
from etld.config import Config
from etld.errors import EtldError
from etld.jobs.runs import Runs
from etld.logs import get_logger
from etld.seed import seed_from_config
from etld.store.migrate import migrate
from etld.store.pool import create_pool

log = get_logger(__name__)

ALL_ROLES = frozenset({"scheduler", "workers", "web"})
# Decoded API pages are millions of small containers. At CPython's default first-generation
# threshold (700 allocations) the cycle collector runs every few hundred objects of a page
# and keeps rescanning the pages in flight: parsing a search page took twice as long with a
# few pages held as with none. Collections every 50,000 allocations cost next to nothing;
# etld's data holds no reference cycles, so memory is unaffected.
GC_THRESHOLDS = (50_000, 20, 20)


def tune_gc() -> None:
    """Raise the collector's thresholds, and leave everything alive at start-up (modules,
    configuration, pools) out of every later collection."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class Daemon:
    def __init__(self, config: Config, roles: frozenset[str] = ALL_ROLES) -> None:
        unknown = roles - ALL_ROLES
        if unknown:
            raise ValueError(f"unknown role(s): {', '.join(sorted(unknown))}")
        self.config = config
        self.roles = roles
        self.stop_event = asyncio.Event()
        self.started = asyncio.Event()
        self.pool: asyncpg.Pool | None = None
        self.broker: BrokerConnection | None = None
        self.failure: str | None = None
        self._components: list[Component] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        # Shared state other parts hang off the daemon (publisher, consumer pool, ...).
        self.services: dict[str, Any] = {}

    # -- lifecycle ----------------------------------------------------------------------

    async def run(self, install_signals: bool = True) -> int:
        """Start, wait for the stop event, stop. Returns the process exit code."""
        if install_signals:
            self._install_signal_handlers()
        try:
            await self.start()
        except EtldError as exc:
            log.error("startup failed", error=str(exc))
            await self.shutdown()
            raise
        self.started.set()
        log.info("etld started", roles=sorted(self.roles))
        await self.stop_event.wait()
        await self.shutdown()
        return 1 if self.failure else 0

    async def start(self) -> None:
        cfg = self.config
        await migrate(cfg.database.url, timeout=cfg.daemon.connect_timeout)
        self.pool = await create_pool(
            cfg.database.url,
            min_size=cfg.database.min_connections,
            max_size=cfg.database.max_connections,
            timeout=cfg.daemon.connect_timeout,
            command_timeout=cfg.database.command_timeout,
        )
        self._components.append(CallbackComponent("postgres", close=self._close_pool))
        seeded = await seed_from_config(self.pool, cfg)
        log.info("configuration seeded", **seeded)
        self.broker = BrokerConnection(
            cfg.rabbitmq.url,
            heartbeat=cfg.rabbitmq.heartbeat,
            connect_timeout=cfg.daemon.connect_timeout,
        )
        # Registered before the first connect so the topology is declared on it and on
        # every reconnect, ahead of the publisher and consumer callbacks.
        self.broker.on_connect(Topology(cfg).declare)
        await self.broker.start()
        self._components.append(CallbackComponent("rabbitmq", close=self.broker.close))
        publisher = Publisher(self.broker, cfg)
        await publisher.start()
        self.services["publisher"] = publisher
        runs = Runs(self.pool, publisher, cfg)
        self.services["runs"] = runs
        self.services.setdefault("on_dead_letter", self._settle_dead_letter)
        for component in self._role_components():
            try:
                await component.start()
            except BaseException:
                # A part that failed half-way may hold resources (sockets, listeners).
                await self._guard(component, "close", component.close())
                raise
            self._components.append(component)
            log.debug("component started", component=component.name)
        tune_gc()

    def _role_components(self) -> list[Component]:
        """The parts each role adds, in start order (imported lazily: roles are optional)."""
        parts: list[Component] = []
        vectors = None
        if self.config.embeddings.enabled and self.roles & {"workers", "web"}:
            from etld.vectors.service import VectorServices

            assert self.pool is not None
            # Before the consumers: the model is loaded and checked before work arrives.
            vectors = VectorServices(self.config, self.pool, store_required="workers" in self.roles)
            self.services["vectors"] = vectors
            parts.append(vectors)
        if "workers" in self.roles:
            from etld.workers import default_handlers
            from etld.workers.pool import ConsumerPool
            from etld.workers.stages import StageServices

            assert self.pool is not None
            if "handlers" in self.services:  # given by an embedding program or a test
                handlers = self.services["handlers"]
            else:
                stages = StageServices(
                    self.pool,
                    self.services["runs"],
                    self.config,
                    embeddings_enabled=vectors is not None,
                )
                self.services["stages"] = stages
                handlers = default_handlers(stages)
                if vectors is not None:
                    handlers["embedding"] = vectors.embedding_handler(stages)
            parts.append(ConsumerPool(self, handlers=handlers))
        if "scheduler" in self.roles:
            from etld.jobs.notify import NotificationDelivery
            from etld.scheduler import Scheduler

            assert self.pool is not None
            parts.append(Scheduler(self.services["runs"], self.config, self.config.database.url))
            parts.append(NotificationDelivery(self.pool, self.config.notifications))
        if "web" in self.roles:
            from etld.web.app import WebComponent

            parts.append(WebComponent(self))
        return parts

    async def _settle_dead_letter(self, letter: Any, message: dict[str, Any]) -> None:
        """A run's message failed for good: its item fails, and with it the run."""
        run_id, item_key = message.get("run_id"), message.get("work_id")
        runs: Runs = self.services["runs"]
        if isinstance(run_id, int) and item_key is not None:
            await runs.fail_item(run_id, str(item_key), letter.reason)
        elif isinstance(run_id, int):
            await runs.fail_run(run_id, f"{letter.stage} message failed: {letter.reason}")

    async def _close_pool(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def shutdown(self) -> None:
        grace = self.config.daemon.grace_period
        parts = list(reversed(self._components))
        self._components.clear()
        for part in parts:
            await self._guard(part, "stop_taking_work", part.stop_taking_work())
        deadline = time.monotonic() + grace
        for part in parts:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                await asyncio.wait_for(part.drain(), remaining)
            except TimeoutError:
                log.warning("grace period over, cancelling in-flight work", component=part.name)
            except Exception as exc:
                log.error("drain failed", component=part.name, error=repr(exc))
        for part in parts:
            await self._guard(part, "close", part.close())
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        log.info("etld stopped", failure=self.failure)

    async def _guard(self, part: Component, phase: str, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except Exception as exc:
            log.error(
                "component stop phase failed", component=part.name, phase=phase, error=repr(exc)
            )

    def request_stop(self, reason: str = "requested") -> None:
        if not self.stop_event.is_set():
            log.info("stopping", reason=reason)
            self.stop_event.set()

    def fail(self, component: str, error: BaseException | str) -> None:
        """A part died: record why and stop the whole daemon (exit code 1)."""
        if self.failure is None:
            self.failure = f"{component}: {error}"
            log.error("component died, stopping daemon", component=component, error=str(error))
        self.request_stop("component failure")

    def spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """A supervised background task: if it raises, the daemon stops."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if t.cancelled():
                return
            exc = t.exception()
            if exc is not None:
                self.fail(name, exc)

        task.add_done_callback(done)
        return task

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
