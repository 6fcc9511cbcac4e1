"""Test an integration's connection: one authenticated GET to the provider's cheapest
endpoint that needs the credentials (Jira `/rest/api/3/myself`; GitHub `/rate_limit`,
which GitHub does not count against the limit; the base URL for other providers), through
the same rate-limited client and outbound URL policy as a sync. The answer says what
happened in words for the user; it never contains the credentials.
"""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import asyncpg

from etld.secrets import SecretError, integration_secret
from etld.sources.http import (
    GITHUB_LIMITS,
    JIRA_LIMITS,
    ApiClient,
    ApiError,
    AuthError,
    HeaderLimits,
    HttpOptions,
    RateLimited,
)
from etld.sources.urlpolicy import UrlPolicy, UrlPolicyError
from etld.store.queries import SQL

PROBE_TIMEOUT: Final = 20.0
_PROBE_OPTIONS: Final = HttpOptions(
    timeout=10.0, connect_timeout=5.0, max_retries=0, max_inline_wait=0.0, max_response_bytes=2**20
)


@dataclass(frozen=True)
class ConnectionResult:
    ok: bool
    message: str
    elapsed_ms: int

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "message": self.message, "elapsed_ms": self.elapsed_ms}


@dataclass(frozen=True)
class _Probe:
    path: str
    hooks: HeaderLimits
    basic_auth: bool


_PROBES: Final = {
    "jira": _Probe("/rest/api/3/myself", JIRA_LIMITS, True),
    "github": _Probe("/rate_limit", GITHUB_LIMITS, False),
}
_GENERIC: Final = _Probe("/", HeaderLimits("API", default_wait=5.0), False)


async def test_connection(
    pool: asyncpg.Pool, tenant_id: int, integration_id: int, secret_key: str
) -> ConnectionResult | None:
    """One authenticated GET to the provider; None when the integration is not the tenant's."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(SQL["ui.integration_secret_row"], integration_id, tenant_id)
    if row is None:
        return None
    started = time.monotonic()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            ok, message = await _probe(row, secret_key)
    except TimeoutError:
        ok, message = False, f"no answer within {PROBE_TIMEOUT:.0f} s"
    return ConnectionResult(ok, message, int((time.monotonic() - started) * 1000))


async def _probe(row: asyncpg.Record, secret_key: str) -> tuple[bool, str]:
    provider = row["provider"]
    probe = _PROBES.get(provider, _GENERIC)
    if not row["base_url"]:
        return False, "the integration has no base URL"
    try:
        token = integration_secret(
            tenant_id=row["tenant_id"],
            integration_id=row["id"],
            settings=dict(row["settings"] or {}),
            credentials=row["credentials"],
            secret_key=secret_key,
        )
    except SecretError as exc:
        return False, str(exc)
    headers: dict[str, str] = {}
    if probe.basic_auth:
        if not row["username"] or not token:
            return False, "a username and an API token are needed"
        basic = base64.b64encode(f"{row['username']}:{token}".encode()).decode()
        headers["Authorization"] = f"Basic {basic}"
    elif token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        client = ApiClient(
            row["base_url"],
            hooks=probe.hooks,
            headers=headers,
            policy=UrlPolicy(row["allow_private_network"]),
            options=_PROBE_OPTIONS,
        )
        async with client:
            answer = await client.get(probe.path)
    except UrlPolicyError as exc:
        return False, f"refused by the outbound URL policy: {exc}"
    except AuthError:
        return False, "the provider refused the credentials"
    except RateLimited as exc:
        return False, f"rate limited by the provider; try again in {exc.delay:.0f} s"
    except ApiError as exc:
        return False, str(exc)
    except (aiohttp.ClientError, OSError) as exc:
        return False, f"cannot connect: {type(exc).__name__}"
    return True, _success(provider, answer)


def _success(provider: str, answer: Any) -> str:
    if provider == "jira" and isinstance(answer, dict):
        who = answer.get("displayName") or answer.get("emailAddress") or answer.get("accountId")
        return f"connected to Jira as {who}" if who else "connected to Jira"
    if provider == "github" and isinstance(answer, dict):
        core = (answer.get("resources") or {}).get("core") or answer.get("rate") or {}
        if "remaining" in core and "limit" in core:
            return f"connected to GitHub; {core['remaining']} of {core['limit']} calls left"
        return "connected to GitHub"
    return "connected; the API answered"
