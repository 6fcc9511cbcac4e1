"""A minimal etld source plug-in: one step, no network.

`ExampleSource` is what the `etld.sources` entry point names: etld calls it with no
arguments and gets a Source whose one step stores the integration's greetings as a page
(extraction) and counts them (transform). A real step would fetch pages from an API and
upsert rows; the contract is the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from etld.sources.base import ExtractOutput, RawPage, Source, Step, StepContext, TransformOutput
from etld.workers.errors import Reject

PAGE_TYPE = "example_greetings"


class GreetingsStep(Step):
    name = "example_greetings"
    display_name = "Greetings"

    async def extract(self, ctx: StepContext, message: dict[str, Any], out: ExtractOutput) -> None:
        greetings = ctx.integration.settings.get("greetings") or ["hello"]
        out.count_api_calls(1)
        # The page key makes a redelivered extraction store the page once.
        await out.store_page(PAGE_TYPE, {"greetings": greetings}, "all", item_count=len(greetings))

    async def transform(self, ctx: StepContext, page: RawPage, out: TransformOutput) -> int:
        greetings = page.payload.get("greetings") if isinstance(page.payload, dict) else None
        if not isinstance(greetings, list):
            raise Reject(f"raw page {page.id}: no list of greetings")
        return len(greetings)


class ExampleSource(Source):
    provider = "example"

    def steps(self, job_config: dict[str, Any]) -> Sequence[Step]:
        return [GreetingsStep()]
