"""Who is calling: principals, credential resolvers and the auth middleware.

A request under `/app/etl/` or `/ws/` must carry a credential. Resolvers are tried
in order (the list in `app[RESOLVERS]`); each returns a Principal when its credential
is present and valid, None when its credential is absent, and raises 401 when it is
present but wrong, so a bad credential never falls through to a weaker one:

1. `X-Internal-Auth` — the shared service key (`security.internal_auth_key`), compared
   in constant time; an empty configured key disables it. Its principal has no
   tenant: routes take the tenant from the `tenant_id` parameter or the row.
2. `Authorization: Bearer <token>` — a per-tenant API token, stored as a sha256 hash.
3. `?token=<token>` — the same tokens, for WebSocket handshakes only (browsers cannot
   set headers on a WebSocket); query strings end up in logs, so nowhere else.
4. The session cookie resolver of the web UI is appended to the same list.

Viewers may read; only admins and the service act (POST/PUT/PATCH/DELETE → 403).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Handler

from etld.store.queries import SQL
from etld.web.errors import forbidden, not_found, unauthorized
from etld.web.keys import DAEMON

Role = Literal["admin", "viewer", "service"]

PROTECTED_PREFIXES = ("/app/etl/", "/ws/")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Makes leaked tokens recognisable to secret scanners; not a secret itself.
TOKEN_PREFIX = "etld_"  # noqa: S105


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. `tenant_id` is None only for the internal service key."""

    tenant_id: int | None
    role: Role
    name: str
    via: str  # internal | token | session

    @property
    def can_act(self) -> bool:
        return self.role != "viewer"

    def owns(self, tenant_id: int) -> bool:
        return self.tenant_id is None or self.tenant_id == tenant_id

    def require_owner(self, tenant_id: int, what: str = "not found") -> None:
        """A row of another tenant answers 404, so its existence is not revealed."""
        if not self.owns(tenant_id):
            raise not_found(what)


Resolver = Callable[[web.Request], Awaitable[Principal | None]]

RESOLVERS: web.AppKey[list[Resolver]] = web.AppKey("auth_resolvers", list)
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)


# -- tokens ------------------------------------------------------------------------------


def new_token() -> str:
    """A fresh API token; shown once, only its hash is stored."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _principal_for_token(request: web.Request, token: str) -> Principal:
    pool = request.app[DAEMON].pool
    assert pool is not None, "the web app runs only after the pool is up"
    # Looked up by hash: timing reveals at most a prefix of a hash, never of a token.
    async with pool.acquire() as conn:
        row = await conn.fetchrow(SQL["auth.token_principal"], token_hash(token))
    if row is None:
        raise unauthorized("invalid or revoked token")
    return Principal(tenant_id=row["tenant_id"], role=row["role"], name=row["name"], via="token")


# -- resolvers -----------------------------------------------------------------------------


async def internal_key(request: web.Request) -> Principal | None:
    provided = request.headers.get("X-Internal-Auth")
    if provided is None:
        return None
    expected = request.app[DAEMON].config.security.internal_auth_key
    if not expected or not hmac.compare_digest(provided.encode(), expected.encode()):
        raise unauthorized("invalid internal auth key")
    return Principal(tenant_id=None, role="service", name="internal", via="internal")


async def bearer_token(request: web.Request) -> Principal | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("expected Authorization: Bearer <token>")
    return await _principal_for_token(request, token.strip())


async def query_token(request: web.Request) -> Principal | None:
    token = request.query.get("token")
    if token is None or not request.path.startswith("/ws/"):
        return None
    return await _principal_for_token(request, token)


DEFAULT_RESOLVERS: tuple[Resolver, ...] = (internal_key, bearer_token, query_token)


def setup_auth(app: web.Application) -> None:
    """Install the resolver list; later resolvers (the session cookie) append to it."""
    app[RESOLVERS] = list(DEFAULT_RESOLVERS)


async def resolve(request: web.Request) -> Principal | None:
    for resolver in request.app[RESOLVERS]:
        principal = await resolver(request)
        if principal is not None:
            return principal
    return None


@web.middleware
async def require_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(PROTECTED_PREFIXES):
        return await handler(request)
    principal = await resolve(request)
    if principal is None:
        raise unauthorized()
    if request.method not in READ_METHODS and not principal.can_act:
        raise forbidden("viewers may not change jobs")
    request[PRINCIPAL] = principal
    return await handler(request)
