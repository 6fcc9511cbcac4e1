"""Extraction checkpoints: the cursor an extraction item saves so a redelivery resumes there.

One row per (run, key) in `etl_run_checkpoints`. A step saves one on its own with
`save_checkpoint`, or hands it to `ExtractOutput.store_page` to commit it with the page it
follows, so the cursor can never be ahead of, or behind, the pages stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from etld.store.queries import SQL


async def load_checkpoint(pool: asyncpg.Pool, run_id: int, key: str) -> dict[str, Any] | None:
    async with pool.acquire() as conn:
        value = await conn.fetchval(SQL["runs.get_checkpoint"], run_id, key)
    return value if isinstance(value, dict) else None


async def save_checkpoint(
    pool: asyncpg.Pool, run_id: int, key: str, value: Mapping[str, Any]
) -> None:
    async with pool.acquire() as conn:
        await conn.execute(SQL["runs.put_checkpoint"], run_id, key, dict(value))
