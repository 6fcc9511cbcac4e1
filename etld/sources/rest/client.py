"""A REST integration as its steps see it: parsed settings, the authenticated rate-limited
client, and the run checkpoint of a stream."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg

from etld.secrets import SecretError, integration_secret
from etld.sources.base import ExtractOutput, StepContext
from etld.sources.http import ApiClient, HeaderLimits, HttpOptions, open_session
from etld.sources.rest.model import RestSettings, Stream
from etld.sources.rest.settings import RestSettingsError, parse_settings
from etld.sources.urlpolicy import UrlPolicy, UrlPolicyError
from etld.store.queries import SQL
from etld.workers.errors import Reject

Json = dict[str, Any]


def settings_of(ctx: StepContext) -> RestSettings:
    try:
        return parse_settings(ctx.integration.settings)
    except RestSettingsError as exc:
        raise Reject(f"REST integration {ctx.integration.name!r}: {exc}") from None


def stream_of(ctx: StepContext, step_name: str) -> tuple[RestSettings, Stream]:
    """The stream a step stands for, from the integration's current settings."""
    settings = settings_of(ctx)
    stream = settings.stream(step_name.removeprefix("rest_"))
    if stream is None:
        known = ", ".join(s.name for s in settings.streams)
        raise Reject(
            f"REST integration {ctx.integration.name!r} has no stream for step {step_name!r} "
            f"(streams: {known})"
        )
    return settings, stream


def auth_headers(ctx: StepContext, settings: RestSettings) -> dict[str, str]:
    auth = settings.auth
    if auth.type == "none":
        return {}
    integration = ctx.integration
    try:
        secret = integration_secret(
            tenant_id=integration.tenant_id,
            integration_id=integration.id,
            settings=integration.settings,
            credentials=integration.credentials,
            secret_key=ctx.config.security.secret_key,
        )
    except SecretError as exc:
        raise Reject(f"REST integration {integration.name!r}: {exc}") from None
    if not secret:
        raise Reject(
            f"REST integration {integration.name!r} uses {auth.type} auth but has no secret "
            "(set token_env or store credentials)"
        )
    if auth.type == "bearer":
        return {"Authorization": f"Bearer {secret}"}
    if auth.type == "basic":
        username = auth.username or integration.username or ""
        if not username:
            raise Reject(f"REST integration {integration.name!r}: basic auth needs a username")
        return {
            "Authorization": "Basic " + base64.b64encode(f"{username}:{secret}".encode()).decode()
        }
    return {auth.header: auth.prefix + secret}


def rest_client(ctx: StepContext, settings: RestSettings) -> ApiClient:
    integration = ctx.integration
    if not integration.base_url:
        raise Reject(f"REST integration {integration.name!r} has no base URL")
    rate = settings.rate_limit
    hooks = HeaderLimits(
        f"REST {integration.name}",
        default_wait=rate.default_wait,
        remaining=rate.remaining_header,
        reset=rate.reset_header,
        reset_is_epoch=rate.reset == "epoch",
    )
    secret = auth_headers(ctx, settings)
    try:
        return ApiClient(
            integration.base_url,
            hooks=hooks,
            headers={**dict(settings.headers), **secret},
            policy=UrlPolicy(integration.allow_private_network),
            options=HttpOptions.from_settings(integration.settings),
            credential_headers=tuple(secret),
        )
    except UrlPolicyError as exc:
        raise Reject(str(exc)) from None


def rest_session(
    ctx: StepContext, settings: RestSettings, out: ExtractOutput
) -> AbstractAsyncContextManager[ApiClient]:
    """An open client whose errors become Reject/Retry and whose calls are reported."""
    return open_session(rest_client(ctx, settings), out)


# -- checkpoints and cursors ------------------------------------------------------------------


async def load_checkpoint(pool: asyncpg.Pool, run_id: int, key: str) -> Json | None:
    async with pool.acquire() as conn:
        value = await conn.fetchval(SQL["rest.get_checkpoint"], run_id, key)
    return value if isinstance(value, dict) else None


async def save_checkpoint(
    pool: asyncpg.Pool, run_id: int, key: str, value: Mapping[str, Any]
) -> None:
    async with pool.acquire() as conn:
        await conn.execute(SQL["rest.put_checkpoint"], run_id, key, dict(value))


async def last_state(ctx: StepContext, key: str) -> Json | None:
    """The stream's checkpoint in the newest successful polling run of the job."""
    run = ctx.run
    async with ctx.pool.acquire() as conn:
        value = await conn.fetchval(SQL["rest.last_cursor"], run.job_id, key, run.run_id)
    return value if isinstance(value, dict) else None
