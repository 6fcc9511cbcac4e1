"""The declarative REST source: any JSON API described in an integration's settings.

One step per configured stream, named `rest_<stream>`, in the order the streams are listed.
A step knows only its stream's name; it reads the stream's definition from the integration's
settings whenever it runs (see `settings.py` for the schema, docs/sources.md for a guide).
Registered as provider "rest" on import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from etld.sources.base import (
    ExtractOutput,
    InvalidSettings,
    RawPage,
    Source,
    Step,
    StepContext,
    TransformOutput,
    register_source,
)
from etld.sources.rest.client import stream_of
from etld.sources.rest.extract import StreamScan
from etld.sources.rest.model import STREAM_NAME
from etld.sources.rest.settings import RestSettingsError, parse_settings
from etld.sources.rest.transform import load_page


class StreamStep(Step):
    """Extracts and transforms one stream of the integration the run belongs to."""

    def __init__(self, stream: str) -> None:
        self.name = f"rest_{stream}"
        self.display_name = stream.replace("_", " ").title()

    async def extract(self, ctx: StepContext, message: dict[str, Any], out: ExtractOutput) -> None:
        settings, stream = stream_of(ctx, self.name)
        await StreamScan(ctx, settings, stream, out).run()

    async def transform(self, ctx: StepContext, page: RawPage, out: TransformOutput) -> int:
        _, stream = stream_of(ctx, self.name)
        return await load_page(ctx, stream, page, out)


class RestSource(Source):
    provider = "rest"

    def steps(self, job_config: dict[str, Any]) -> Sequence[Step]:
        # Without the integration's settings there are no streams to name.
        return []

    def run_steps(self, job_config: dict[str, Any], settings: Mapping[str, Any]) -> Sequence[Step]:
        try:
            parsed = parse_settings(settings)
        except RestSettingsError as exc:
            raise InvalidSettings(f"invalid REST settings: {exc}") from None
        return [StreamStep(stream.name) for stream in parsed.streams]

    def step(self, name: str) -> Step:
        stream = name.removeprefix("rest_")
        if name == stream or not STREAM_NAME.match(stream):
            raise KeyError(f"source 'rest' has no step {name!r}")
        return StreamStep(stream)


register_source("rest", RestSource)
