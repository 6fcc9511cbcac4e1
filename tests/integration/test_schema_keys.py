"""What the dropped per-row foreign keys of work_items and changelogs did is still done.

Migrations 0011 and 0012 replaced the keys checked on every loaded row with statement
triggers on the parent tables; deleting a parent must still clear or remove its references,
and deleting a tenant must still remove everything it had.
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

AT = datetime(2025, 1, 1, tzinfo=UTC)


async def _site(conn: asyncpg.Connection) -> dict[str, int]:
    ids: dict[str, int] = {}
    ids["tenant"] = await conn.fetchval("INSERT INTO tenants (name) VALUES ('keys') RETURNING id")
    ids["integration"] = await conn.fetchval(
        "INSERT INTO integrations (tenant_id, name, provider) VALUES ($1, 'j', 'jira') "
        "RETURNING id",
        ids["tenant"],
    )
    scope = (ids["tenant"], ids["integration"])
    ids["project"] = await conn.fetchval(
        "INSERT INTO projects (tenant_id, integration_id, external_id, key, name) "
        "VALUES ($1, $2, '1', 'P', 'P') RETURNING id",
        *scope,
    )
    ids["wit"] = await conn.fetchval(
        "INSERT INTO wits (tenant_id, integration_id, external_id, name) "
        "VALUES ($1, $2, '1', 'Bug') RETURNING id",
        *scope,
    )
    for name in ("todo", "doing"):
        ids[name] = await conn.fetchval(
            "INSERT INTO statuses (tenant_id, integration_id, external_id, name) "
            "VALUES ($1, $2, $3, $3) RETURNING id",
            *scope,
            name,
        )
    for n in (1, 2):
        ids[f"item{n}"] = await conn.fetchval(
            "INSERT INTO work_items (tenant_id, integration_id, external_id, key, project_id, "
            "wit_id, status_id) VALUES ($1, $2, $3, 'P-' || $3, $4, $5, $6) RETURNING id",
            *scope,
            str(n),
            ids["project"],
            ids["wit"],
            ids["doing"],
        )
        await conn.execute(
            "INSERT INTO changelogs (tenant_id, integration_id, work_item_id, external_id, "
            "from_status_id, to_status_id, transition_start_date, transition_change_date, "
            "time_in_status_seconds) VALUES ($1, $2, $3, 'h1', $4, $5, $6, $6, 0)",
            *scope,
            ids[f"item{n}"],
            ids["todo"],
            ids["doing"],
            AT,
        )
    return ids


async def test_deleted_parents_are_cleared_from_items_and_histories(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        ids = await _site(conn)
        await conn.execute("DELETE FROM statuses WHERE id = $1", ids["doing"])
        await conn.execute("DELETE FROM projects WHERE id = $1", ids["project"])
        await conn.execute("DELETE FROM wits WHERE id = $1", ids["wit"])
        items = await conn.fetch(
            "SELECT project_id, wit_id, status_id FROM work_items WHERE tenant_id = $1",
            ids["tenant"],
        )
        assert [tuple(r) for r in items] == [(None, None, None)] * 2
        moves = await conn.fetch(
            "SELECT from_status_id, to_status_id FROM changelogs WHERE tenant_id = $1",
            ids["tenant"],
        )
        assert [tuple(r) for r in moves] == [(ids["todo"], None)] * 2


async def test_a_deleted_item_takes_its_history_along(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        ids = await _site(conn)
        await conn.execute("DELETE FROM work_items WHERE id = $1", ids["item1"])
        left = await conn.fetch(
            "SELECT work_item_id FROM changelogs WHERE tenant_id = $1", ids["tenant"]
        )
        assert [r["work_item_id"] for r in left] == [ids["item2"]]


async def test_a_deleted_tenant_leaves_nothing(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        ids = await _site(conn)
        await conn.execute("DELETE FROM tenants WHERE id = $1", ids["tenant"])
        for table in ("work_items", "changelogs", "statuses", "projects", "wits"):
            count = await conn.fetchval(
                f"SELECT count(*) FROM {table} WHERE tenant_id = $1", ids["tenant"]
            )
            assert count == 0, table
