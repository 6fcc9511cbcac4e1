"""A trivial source whose steps a test controls: pages, fan-out, delays and failures.

Transform effects go to a table the test creates (`scripted_effects`, idempotent by raw
page) and every transform call is logged in `scripted_calls`, so a test can tell
"handled twice" (calls) from "counted twice" (effects, ledger).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from etld.sources.base import ExtractOutput, RawPage, Source, Step, StepContext, TransformOutput
from etld.workers.errors import Reject

SETUP_SQL = """
CREATE TABLE IF NOT EXISTS scripted_effects (
    run_id bigint NOT NULL, raw_id bigint NOT NULL, items int NOT NULL,
    PRIMARY KEY (run_id, raw_id));
CREATE TABLE IF NOT EXISTS scripted_calls (
    id bigint GENERATED ALWAYS AS IDENTITY, run_id bigint, raw_id bigint, stage text);
"""


@dataclass
class ScriptedStep(Step):
    name: str
    display_name: str = ""
    parts: int = 1  # root extraction fans out into this many follow-up items
    pages: int = 2  # pages stored per part
    items: int = 5  # records per page
    max_delay: float = 0.01  # random handler delay, to shuffle processing order
    fail_page: str | None = None  # page key whose transform is rejected
    seen_keys: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.display_name = self.display_name or self.name.title()

    async def _pause(self) -> None:
        await asyncio.sleep(random.uniform(0, self.max_delay))

    async def extract(self, ctx: StepContext, message: dict[str, Any], out: ExtractOutput) -> None:
        await self._pause()
        part = message.get("part")
        if part is None and self.parts > 1:
            for index in range(self.parts):
                await out.follow_up(f"p{index}", {"part": index})
            return
        for page in range(self.pages):
            key = f"{part or 0}-{page}"
            out.count_api_calls(1)
            await out.store_page(
                self.name, {"key": key, "items": self.items}, key, item_count=self.items
            )

    async def transform(self, ctx: StepContext, page: RawPage, out: TransformOutput) -> int:
        await self._pause()
        async with ctx.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO scripted_calls (run_id, raw_id, stage) VALUES ($1, $2, 'transform')",
                ctx.run.run_id,
                page.id,
            )
            if page.payload["key"] == self.fail_page:
                raise Reject(f"page {self.fail_page} of {self.name} is malformed")
            await conn.execute(
                "INSERT INTO scripted_effects (run_id, raw_id, items) VALUES ($1, $2, $3) "
                "ON CONFLICT DO NOTHING",
                ctx.run.run_id,
                page.id,
                page.payload["items"],
            )
        return int(page.payload["items"])


class ScriptedSource(Source):
    def __init__(self, provider: str, steps: Sequence[ScriptedStep]) -> None:
        self.provider = provider
        self._steps = list(steps)

    def steps(self, job_config: dict[str, Any]) -> Sequence[Step]:
        return self._steps


async def setup_tables(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute(SETUP_SQL)


class RecordingPublisher:
    """Stands in for the broker where a test is about scheduling, not delivery."""

    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any]]] = []

    async def publish(
        self, queue: str, message: dict[str, Any], *, headers: dict[str, Any] | None = None
    ) -> str:
        self.published.append((queue, message))
        return str(len(self.published))
