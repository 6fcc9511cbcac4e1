"""The source plug-in contract, and the registry of providers.

A source is a provider name and ordered steps. A step extracts API pages into
`raw_extraction_data` (through `ExtractOutput`) and transforms one stored page into
table rows (reporting embeddings to make through `TransformOutput`). Steps know
nothing about AMQP or the run ledger; the stage handlers in `etld.workers.stages` do.

Providers are registered in code (`register_source`) or by installed packages through
the `etld.sources` entry point group, each entry point naming a zero-argument callable
that returns a Source.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol

import asyncpg

from etld.config import Config
from etld.jobs.runs import RunContext
from etld.jobs.status import StepDef


@dataclass(frozen=True)
class Integration:
    id: int
    tenant_id: int
    name: str
    provider: str
    base_url: str | None
    username: str | None
    credentials: bytes | None
    settings: dict[str, Any]
    allow_private_network: bool
    active: bool

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Integration:
        return cls(
            id=row["id"],
            tenant_id=row["tenant_id"],
            name=row["name"],
            provider=row["provider"],
            base_url=row["base_url"],
            username=row["username"],
            credentials=row["credentials"],
            settings=dict(row["settings"]),
            allow_private_network=row["allow_private_network"],
            active=row["active"],
        )


@dataclass(frozen=True)
class StepContext:
    """What a step may use: the run, its integration, the pool and the configuration."""

    run: RunContext
    integration: Integration
    pool: asyncpg.Pool
    config: Config


@dataclass(frozen=True)
class RawPage:
    id: int
    type: str
    payload: Any


class ExtractOutput(Protocol):
    async def store_page(
        self,
        type_: str,
        payload: Any,
        page_key: str,
        *,
        item_count: int | None = None,
        verbatim: Mapping[str, bytes] | None = None,
        checkpoint: tuple[str, Mapping[str, Any]] | None = None,
    ) -> int:
        """Store one page and queue its transform; returns the raw id.

        `verbatim` gives top-level values of `payload` as the exact bytes the API sent, so
        they are stored as received. `checkpoint` (key, value) is saved in the same commit
        as the page."""
        ...

    async def follow_up(self, key: str, payload: dict[str, Any]) -> None:
        """Queue another extraction item of the same step (fan-out)."""
        ...

    def count_api_calls(self, calls: int) -> None: ...


class TransformOutput(Protocol):
    def embed(
        self, table_name: str, external_ids: Sequence[str], operation: str = "upsert"
    ) -> None:
        """Ask for embeddings of loaded rows (made only when embeddings are enabled)."""
        ...


class Step(ABC):
    name: str
    display_name: str

    def definition(self) -> StepDef:
        return StepDef(self.name, self.display_name)

    @abstractmethod
    async def extract(self, ctx: StepContext, message: dict[str, Any], out: ExtractOutput) -> None:
        """Fetch this step's pages (or the page the message names) and store them."""

    @abstractmethod
    async def transform(self, ctx: StepContext, page: RawPage, out: TransformOutput) -> int:
        """Load one stored page into tables, idempotently; returns records loaded."""


class Source(ABC):
    provider: str

    @abstractmethod
    def steps(self, job_config: dict[str, Any]) -> Sequence[Step]:
        """The ordered steps of a run with this job configuration."""

    def run_steps(self, job_config: dict[str, Any], settings: Mapping[str, Any]) -> Sequence[Step]:
        """The steps of a run of an integration with these settings. Sources whose steps
        depend on the integration (the REST source: one per stream) override this; raise
        InvalidSettings when the settings cannot make a run."""
        return self.steps(job_config)

    def supports_targets(self) -> bool:
        """Whether `steps({"targets": [...]})` makes a targeted run that fetches only the
        items webhook events named (its steps read `ctx.run.config["targets"]`)."""
        return False

    def step(self, name: str) -> Step:
        for candidate in self.all_steps():
            if candidate.name == name:
                return candidate
        raise KeyError(f"source {self.provider!r} has no step {name!r}")

    def all_steps(self) -> Sequence[Step]:
        """Every step this source knows, including ones only run on demand."""
        return self.steps({})


SourceFactory = Callable[[], Source]
_REGISTRY: dict[str, SourceFactory] = {}
_ENTRY_POINTS_LOADED = False


class UnknownProvider(KeyError):
    pass


class InvalidSettings(ValueError):
    """An integration's settings cannot make a run (the message names the key path)."""


def register_source(provider: str, factory: SourceFactory) -> None:
    _REGISTRY[provider] = factory


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for entry in entry_points(group="etld.sources"):
        if entry.name not in _REGISTRY:
            _REGISTRY[entry.name] = entry.load()


def get_source(provider: str) -> Source:
    if provider not in _REGISTRY:
        _load_entry_points()
    try:
        factory = _REGISTRY[provider]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise UnknownProvider(f"no source for provider {provider!r} (known: {known})") from None
    return factory()


def known_providers() -> list[str]:
    _load_entry_points()
    return sorted(_REGISTRY)
