"""Integrations as the admin UI and the JSON API manage them: create, edit, test.

Credentials are write-only. A token given here is encrypted (`etld.secrets`, bound to the
tenant and integration ids) and only its last 4 characters are kept in the clear, as
`credentials_hint`; nothing here ever returns a token. Creating an integration also creates
its job (`seed.ensure_job`), so it shows on the dashboard at once.

Testing the connection is `etld.probe`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg

import etld.sources.builtin  # noqa: F401  (registers the built-in providers)
from etld.errors import EtldError
from etld.secrets import SecretError, encrypt_secret, hint
from etld.sources.base import known_providers
from etld.sources.urlpolicy import UrlPolicy, UrlPolicyError
from etld.store.queries import SQL

MAX_NAME = 100
MAX_TOKEN = 4096
MAX_LIST = 500
_FIELDS: Final = frozenset(
    {
        "name",
        "provider",
        "base_url",
        "username",
        "token",
        "projects",
        "repositories",
        "organization",
        "allow_private_network",
        "active",
    }
)
_LIST_SETTINGS: Final = ("projects", "repositories")


class IntegrationError(EtldError):
    """A request that cannot be applied; the message says why and is shown to the user."""


@dataclass(frozen=True)
class Changes:
    """Checked input; None means "not given" (keep the stored value)."""

    name: str | None = None
    provider: str | None = None
    base_url: str | None = None
    username: str | None = None
    token: str | None = None
    settings: dict[str, Any] | None = None  # projects / repositories / organization
    allow_private_network: bool | None = None
    active: bool | None = None


def providers() -> list[str]:
    return known_providers()


def parse_changes(data: Mapping[str, Any], *, creating: bool) -> Changes:
    """Check a JSON body or a form (already turned into a dict); every problem at once."""
    problems: list[str] = []
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        problems.append(f"unknown field(s): {', '.join(unknown)}")

    def text(key: str, limit: int = 2000) -> str | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or len(value) > limit:
            problems.append(f"{key} must be text of at most {limit} characters")
            return None
        return value.strip()

    def flag(key: str) -> bool | None:
        value = data.get(key)
        if value is None or isinstance(value, bool):
            return value
        problems.append(f"{key} must be true or false")
        return None

    name, provider = text("name", MAX_NAME), text("provider", 50)
    base_url, username = text("base_url"), text("username", 255)
    token = data.get("token")
    if token is not None and (not isinstance(token, str) or len(token) > MAX_TOKEN):
        problems.append(f"token must be text of at most {MAX_TOKEN} characters")
        token = None
    settings: dict[str, Any] = {}
    for key in _LIST_SETTINGS:
        if key in data and data[key] is not None:
            items = _as_list(data[key])
            if items is None:
                problems.append(f"{key} must be a list of names (or a comma separated text)")
            else:
                settings[key] = items
    organization = text("organization", 255)
    if organization is not None:
        settings["organization"] = organization
    if creating and not name:
        problems.append("name is required")
    elif name is not None and not name:
        problems.append("name must not be empty")
    if creating and not provider:
        problems.append("provider is required")
    elif provider is not None and provider not in providers():
        problems.append(f"provider must be one of {', '.join(providers())}")
    if problems:
        raise IntegrationError("; ".join(problems))
    return Changes(
        name=name,
        provider=provider,
        base_url=base_url,
        username=username,
        token=token.strip() if isinstance(token, str) and token.strip() else None,
        settings=settings or None,
        allow_private_network=flag("allow_private_network"),
        active=flag("active"),
    )


def _as_list(value: Any) -> list[str] | None:
    if isinstance(value, str):
        value = [p for p in value.replace("\n", ",").replace(" ", ",").split(",") if p]
    if not isinstance(value, list) or len(value) > MAX_LIST:
        return None
    if not all(isinstance(v, str) and 0 < len(v.strip()) <= 200 for v in value):
        return None
    return [v.strip() for v in value]


def _check_url(base_url: str | None, allow_private: bool) -> str | None:
    if not base_url:
        return None
    try:
        UrlPolicy(allow_private).check_url(base_url)
    except UrlPolicyError as exc:
        raise IntegrationError(f"base_url: {exc}") from None
    return base_url.rstrip("/")


def _encrypt(secret_key: str, tenant_id: int, integration_id: int, token: str) -> bytes:
    try:
        return encrypt_secret(secret_key, tenant_id, integration_id, token)
    except SecretError as exc:
        raise IntegrationError(str(exc)) from None


# -- reads -------------------------------------------------------------------------------------


def integration_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """An integration as clients see it: never the credentials, only their hint."""
    settings = dict(row["settings"] or {})
    return {
        "id": row["id"],
        "tenant_id": row["tenant_id"],
        "name": row["name"],
        "provider": row["provider"],
        "base_url": row["base_url"],
        "username": row["username"],
        "has_credentials": bool(row["has_credentials"]) or bool(settings.get("token_env")),
        "credentials_hint": row["credentials_hint"],
        "token_env": settings.get("token_env"),
        "projects": settings.get("projects", []),
        "repositories": settings.get("repositories", []),
        "organization": settings.get("organization"),
        "declared_in_config": bool(settings.get("declared_in_config")),
        "allow_private_network": row["allow_private_network"],
        "active": row["active"],
        "job_id": row["job_id"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


async def list_integrations(
    pool: asyncpg.Pool, tenant_id: int, limit: int = 200, offset: int = 0
) -> list[dict[str, Any]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(SQL["ui.integrations_of_tenant"], tenant_id, limit, offset)
    return [integration_json(r) for r in rows]


async def get_integration(
    pool: asyncpg.Pool, integration_id: int, tenant_id: int | None
) -> dict[str, Any] | None:
    """The integration if it exists within the tenant (None: the service, any tenant)."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(SQL["ui.integration_of_tenant"], integration_id, tenant_id)
    return integration_json(row) if row is not None else None


# -- writes ------------------------------------------------------------------------------------


async def create_integration(
    pool: asyncpg.Pool, tenant_id: int, changes: Changes, secret_key: str
) -> int:
    """Insert the integration, store its token encrypted, and create its job."""
    assert changes.name, "parse_changes(creating=True) checked it"
    assert changes.provider, "parse_changes(creating=True) checked it"
    allow_private = bool(changes.allow_private_network)
    base_url = _check_url(changes.base_url, allow_private)
    active = True if changes.active is None else changes.active
    async with pool.acquire() as conn, conn.transaction():
        try:
            integration_id = int(
                await conn.fetchval(
                    SQL["ui.insert_integration"],
                    tenant_id,
                    changes.name,
                    changes.provider,
                    base_url,
                    changes.username or None,
                    changes.settings or {},
                    allow_private,
                    active,
                )
            )
        except asyncpg.UniqueViolationError:
            raise IntegrationError(f"an integration named {changes.name!r} exists") from None
        if changes.token:
            blob = _encrypt(secret_key, tenant_id, integration_id, changes.token)
            await conn.execute(
                SQL["ui.set_credentials"], integration_id, tenant_id, blob, hint(changes.token)
            )
        job_name = changes.name
        if await conn.fetchval(SQL["ui.job_name_taken"], tenant_id, job_name):
            job_name = f"{changes.name} #{integration_id}"
        order = await conn.fetchval(SQL["ui.next_job_order"], tenant_id)
        await conn.fetchval(
            SQL["seed.ensure_job"],
            tenant_id,
            integration_id,
            job_name,
            f"{changes.provider}_sync",
            order,
        )
    return integration_id


async def update_integration(
    pool: asyncpg.Pool, tenant_id: int, integration_id: int, changes: Changes, secret_key: str
) -> bool:
    """Apply the given changes; False when the integration is not the tenant's."""
    if changes.provider is not None:
        current = await get_integration(pool, integration_id, tenant_id)
        if current is not None and current["provider"] != changes.provider:
            raise IntegrationError("provider cannot change; create another integration")
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(SQL["ui.integration_secret_row"], integration_id, tenant_id)
        if row is None:
            return False
        allow_private = (
            row["allow_private_network"]
            if changes.allow_private_network is None
            else changes.allow_private_network
        )
        base_url = row["base_url"] if changes.base_url is None else changes.base_url
        base_url = _check_url(base_url, allow_private)
        settings = {**dict(row["settings"] or {}), **(changes.settings or {})}
        try:
            await conn.fetchval(
                SQL["ui.update_integration"],
                integration_id,
                tenant_id,
                changes.name or row["name"],
                base_url,
                row["username"] if changes.username is None else (changes.username or None),
                settings,
                allow_private,
                row["active"] if changes.active is None else changes.active,
            )
        except asyncpg.UniqueViolationError:
            raise IntegrationError(f"an integration named {changes.name!r} exists") from None
        if changes.token:
            blob = _encrypt(secret_key, tenant_id, integration_id, changes.token)
            await conn.execute(
                SQL["ui.set_credentials"], integration_id, tenant_id, blob, hint(changes.token)
            )
    return True


async def set_active(pool: asyncpg.Pool, tenant_id: int, integration_id: int, active: bool) -> bool:
    async with pool.acquire() as conn:
        done = await conn.fetchval(
            SQL["ui.set_integration_active"], integration_id, tenant_id, active
        )
    return done is not None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
