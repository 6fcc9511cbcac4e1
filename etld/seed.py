"""Declarative seeding: `[[tenants]]` and `[[integrations]]` of etld.toml into the database.

Run at every start, so editing the file and restarting is how a tenant or an
integration is added. Secrets never land here: a file-declared integration
names the environment variable its token is read from (`token_env`).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from etld.config import Config, IntegrationConfig
from etld.store.queries import SQL


def integration_settings(integration: IntegrationConfig) -> dict[str, Any]:
    settings: dict[str, Any] = dict(integration.settings)
    if integration.token_env:
        settings["token_env"] = integration.token_env
    if integration.projects:
        settings["projects"] = list(integration.projects)
    if integration.repositories:
        settings["repositories"] = list(integration.repositories)
    if integration.organization:
        settings["organization"] = integration.organization
    settings["declared_in_config"] = True
    return settings


async def seed_from_config(pool: asyncpg.Pool, config: Config) -> dict[str, int]:
    """Upsert tenants, integrations and their jobs; returns counts for logging."""
    tenant_ids: dict[str, int] = {}
    async with pool.acquire() as conn, conn.transaction():
        for tenant in config.tenants:
            tenant_id = await conn.fetchval(
                SQL["seed.upsert_tenant"], tenant.name, tenant.tier, tenant.active
            )
            if tenant_id is None:  # unchanged row: the WHERE skipped the update
                tenant_id = await conn.fetchval(SQL["seed.tenant_id_by_name"], tenant.name)
            tenant_ids[tenant.name] = tenant_id
        order: dict[str, int] = {}
        for integration in config.integrations:
            tenant_id = tenant_ids[integration.tenant]
            integration_id = await conn.fetchval(
                SQL["seed.upsert_integration"],
                tenant_id,
                integration.name,
                integration.provider,
                integration.base_url or None,
                integration.username or None,
                integration_settings(integration),
                integration.allow_private_network,
                integration.active,
            )
            position = order.get(integration.tenant, 0) + 1
            order[integration.tenant] = position
            await conn.fetchval(
                SQL["seed.ensure_job"],
                tenant_id,
                integration_id,
                integration.name,
                f"{integration.provider}_sync",
                position,
            )
    return {"tenants": len(config.tenants), "integrations": len(config.integrations)}
