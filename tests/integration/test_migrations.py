"""Migrations against a real PostgreSQL: fresh apply, no-op, newer schema, concurrency."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from etld.errors import MigrationError
from etld.store.migrate import load_migrations, migrate, schema_is_current

EXPECTED_TABLES = {
    "tenants", "users", "api_tokens", "integrations", "etl_jobs", "etl_job_runs",
    "raw_extraction_data", "projects", "wits", "projects_wits", "statuses",
    "projects_statuses", "status_mappings", "work_items", "changelogs", "custom_fields",
    "custom_fields_mapping", "repositories", "pull_requests", "pr_commits", "pr_reviews",
    "pr_comments", "work_items_prs_links", "qdrant_vectors", "dead_letters", "notifications",
    "schema_migrations",
}  # fmt: skip

METRIC_COLUMNS = {
    "work_first_committed_at", "work_first_started_at", "work_last_started_at",
    "work_first_completed_at", "work_last_completed_at", "total_work_starts",
    "total_completions", "total_backlog_returns", "total_work_time_seconds",
    "total_review_time_seconds", "total_cycle_time_seconds", "total_lead_time_seconds",
    "workflow_complexity_score", "rework_indicator", "direct_completion",
}  # fmt: skip


async def test_fresh_apply_then_noop(empty_db_url: str) -> None:
    applied = await migrate(empty_db_url)
    assert applied == [m.label for m in load_migrations()]
    assert await migrate(empty_db_url) == []
    conn = await asyncpg.connect(empty_db_url)
    try:
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
        assert EXPECTED_TABLES.issubset(tables), EXPECTED_TABLES - tables
        columns = {
            r["column_name"]
            for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name='work_items'"
            )
        }
        assert METRIC_COLUMNS.issubset(columns)
        assert {f"custom_field_{i:02d}" for i in range(1, 21)} <= columns
        assert "custom_fields_overflow" in columns
        assert await schema_is_current(conn)
    finally:
        await conn.close()


async def test_raw_pages_are_text_with_fast_compression(empty_db_url: str) -> None:
    """Pages are kept as the text received, and a column type change must not have left
    them on pglz, which costs the server several times lz4's CPU per page."""
    await migrate(empty_db_url)
    conn = await asyncpg.connect(empty_db_url)
    try:
        column = await conn.fetchrow(
            "SELECT format_type(atttypid, atttypmod) AS type, attcompression::text AS method"
            "  FROM pg_attribute"
            " WHERE attrelid = 'raw_extraction_data'::regclass AND attname = 'raw_payload'"
        )
        lz4 = await conn.fetchval(
            "SELECT EXISTS (SELECT FROM pg_settings"
            " WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals))"
        )
    finally:
        await conn.close()
    assert column["type"] == "text"
    if lz4:  # servers built without lz4 keep the default
        assert column["method"] == "l"


async def test_database_newer_than_code_is_refused(db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, 'future', 'x')"
        )
        assert not await schema_is_current(conn)
    finally:
        await conn.close()
    with pytest.raises(MigrationError, match=r"at migration 9999_future, newer than this etld"):
        await migrate(db_url)


async def test_edited_migration_is_refused(db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    finally:
        await conn.close()
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(db_url)


async def test_concurrent_migrations_do_not_collide(empty_db_url: str) -> None:
    results = await asyncio.gather(*(migrate(empty_db_url) for _ in range(4)))
    applied = [labels for labels in results if labels]
    assert len(applied) == 1, results  # exactly one run did the work, the others waited
    assert applied[0] == [m.label for m in load_migrations()]


async def test_pending_file_applied_later(db_url: str, tmp_path: Path) -> None:
    for migration in load_migrations():
        (tmp_path / f"{migration.label}.sql").write_text(migration.sql)
    (tmp_path / "9000_extra.sql").write_text("CREATE TABLE extra_thing (id int);")
    assert await migrate(db_url, directory=tmp_path) == ["9000_extra"]
    assert await migrate(db_url, directory=tmp_path) == []


def test_badly_named_file_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "init.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNNN_name\.sql"):
        load_migrations(tmp_path)
