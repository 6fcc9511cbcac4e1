"""Shared helpers for the embedding tests: the model (converted once), rows, an item corpus.

The model is converted into `ETLD_TEST_MODEL_CACHE` (default: the checkout's
`data/models`, the same cache `make` fills), so only the first run ever converts; the
loaded embedders are cached per process, so every test module shares them.
"""

from __future__ import annotations

import functools
import itertools
import os
from pathlib import Path
from typing import Any

import asyncpg

from etld.config import EmbeddingsConfig
from etld.store.queries import SQL
from etld.vectors.embedder import Embedder

ROOT = Path(__file__).resolve().parents[2]


def model_cache_dir() -> Path:
    return Path(os.environ.get("ETLD_TEST_MODEL_CACHE", ROOT / "data" / "models"))


@functools.cache
def load_embedder(variant: str = "fp32") -> Embedder:
    config = EmbeddingsConfig(variant=variant, cache_dir=str(model_cache_dir()), threads=2)
    return Embedder.from_config(config)


async def add_tenant(pool: asyncpg.Pool, name: str) -> int:
    async with pool.acquire() as conn:
        await conn.fetchval(SQL["seed.upsert_tenant"], name, "free", True)
        return int(await conn.fetchval(SQL["seed.tenant_id_by_name"], name))


async def add_integration(
    pool: asyncpg.Pool, tenant_id: int, name: str, provider: str = "jira"
) -> int:
    url = "https://jira.example.test" if provider == "jira" else "https://api.example.test"
    async with pool.acquire() as conn:
        return int(
            await conn.fetchval(
                SQL["seed.upsert_integration"],
                tenant_id,
                name,
                provider,
                url,
                None,
                {},
                False,
                True,
            )
        )


async def add_work_items(
    pool: asyncpg.Pool, tenant_id: int, integration_id: int, items: list[dict[str, Any]]
) -> dict[str, int]:
    """Insert work items (external_id, key, summary, description, labels, type, status)."""
    async with pool.acquire() as conn:
        wits = {
            name: await conn.fetchval(
                "INSERT INTO wits (tenant_id, integration_id, external_id, name) "
                "VALUES ($1, $2, $3, $3) ON CONFLICT (tenant_id, integration_id, external_id) "
                "DO UPDATE SET name = EXCLUDED.name RETURNING id",
                tenant_id,
                integration_id,
                name,
            )
            for name in {i.get("type", "Task") for i in items}
        }
        statuses = {
            name: await conn.fetchval(
                "INSERT INTO statuses (tenant_id, integration_id, external_id, name) "
                "VALUES ($1, $2, $3, $3) ON CONFLICT (tenant_id, integration_id, external_id) "
                "DO UPDATE SET name = EXCLUDED.name RETURNING id",
                tenant_id,
                integration_id,
                name,
            )
            for name in {i.get("status", "To Do") for i in items}
        }
        rows = await conn.fetch(
            "INSERT INTO work_items (tenant_id, integration_id, external_id, key, summary, "
            "description, labels, wit_id, status_id) "
            "SELECT $1, $2, r.external_id, r.key, r.summary, r.description, r.labels, "
            "r.wit_id, r.status_id FROM jsonb_to_recordset($3::jsonb) AS r (external_id text, "
            "key text, summary text, description text, labels text[], wit_id bigint, "
            "status_id bigint) RETURNING id, external_id",
            tenant_id,
            integration_id,
            [
                {
                    "external_id": i["external_id"],
                    "key": i["key"],
                    "summary": i["summary"],
                    "description": i.get("description"),
                    "labels": i.get("labels", []),
                    "wit_id": wits[i.get("type", "Task")],
                    "status_id": statuses[i.get("status", "To Do")],
                }
                for i in items
            ],
        )
    return {r["external_id"]: r["id"] for r in rows}


# Items a paraphrase must find, among many generated ones.
TARGETS: list[tuple[str, str, str]] = [
    # (summary, description, paraphrased query)
    (
        "Checkout page times out when paying with a credit card",
        "Customers see a spinner for a minute and then an error during card payment.",
        "purchases with cards hang and fail at the payment step",
    ),
    (
        "Password reset emails are never delivered",
        "Users who click 'forgot password' do not receive any message in their inbox.",
        "people don't get the mail to recover their login credentials",
    ),
    (
        "Dark mode makes chart labels unreadable",
        "With the dark theme enabled, axis labels on dashboards are black on black.",
        "graph text can't be read when the night theme is on",
    ),
    (
        "Upgrade the database driver to the latest major version",
        "The old driver is unsupported and blocks the move to the new server release.",
        "bump the DB client library to its newest release",
    ),
    (
        "Mobile app drains the battery in the background",
        "The Android app keeps the GPS on after it is closed.",
        "phone battery empties quickly because our app runs location tracking when closed",
    ),
    (
        "Add CSV export to the monthly sales report",
        "Finance wants to download the report as a spreadsheet.",
        "let accountants download sales figures as a spreadsheet file",
    ),
]

_AREAS = [
    "invoice generator", "user directory", "audit log", "search results page",
    "notification centre", "team calendar", "file uploader", "onboarding wizard",
    "permissions screen", "API rate limiter", "webhook dispatcher", "image thumbnails",
    "shipping estimator", "inventory sync", "feature flag service", "help centre widget",
    "session manager", "translation strings", "release pipeline", "metrics dashboard",
]  # fmt: skip
_PROBLEMS = [
    ("shows stale data after an update", "Bug"),
    ("needs keyboard shortcuts", "Story"),
    ("should be covered by integration tests", "Task"),
    ("logs too much at info level", "Bug"),
    ("needs a loading indicator", "Story"),
    ("has inconsistent spacing on small screens", "Bug"),
    ("should support bulk actions", "Story"),
    ("must be documented for administrators", "Task"),
    ("is missing German translations", "Bug"),
    ("needs pagination for large lists", "Story"),
    ("should retry failed requests", "Task"),
    ("has a memory leak after long use", "Bug"),
    ("needs an accessibility review", "Task"),
    ("should remember the last filter", "Story"),
    ("fails on leap days", "Bug"),
]  # fmt: skip
_STATUSES = ["To Do", "In Progress", "In Review", "Done"]


def corpus(count: int, prefix: str = "ITEM") -> list[dict[str, Any]]:
    """The targets first (external ids 1..), then generated items, `count` in all."""
    items: list[dict[str, Any]] = []
    for summary, description, _ in TARGETS:
        items.append({"summary": summary, "description": description, "type": "Bug"})
    for n, (area, (problem, kind)) in enumerate(itertools.product(_AREAS, _PROBLEMS)):
        if len(items) >= count:
            break
        items.append(
            {
                "summary": f"The {area} {problem}",
                "description": f"Reported by the {area} owners; see the linked ticket.",
                "type": kind,
                "status": _STATUSES[n % len(_STATUSES)],
                "labels": [area.split()[0]],
            }
        )
    for n, item in enumerate(items, start=1):
        item["external_id"] = str(10000 + n)
        item["key"] = f"{prefix}-{n}"
    return items
