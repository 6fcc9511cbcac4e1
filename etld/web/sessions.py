"""Browser sessions of the admin UI: signed cookies, CSRF tokens and the session resolver.

The cookie holds its whole state, signed: `base64url(JSON) "." base64url(HMAC-SHA256)`.
The signing key is derived from `security.secret_key` (with its own label, so it differs
from the key that encrypts credentials); without a configured key each process draws a
random one, and every session ends when the process restarts.

A session names its user, a CSRF token and an expiry (`web.session_max_age`). The login
form gets an anonymous session first, so its POST carries a CSRF token too; logging in
replaces it with a fresh session (a fixated cookie is worth nothing). On every request the
user row is read again: a deactivated user, a deactivated tenant or a changed password
(the cookie carries a fingerprint of the password hash) ends the session at once, and the
role in effect is always the one stored now.

CSRF: any POST/PUT/PATCH/DELETE that authenticates with the session cookie must carry the
session's token, in the `csrf_token` form field or the `X-CSRF-Token` header. API calls
authenticated by `X-Internal-Auth` or a bearer token never get here (their resolvers come
first) and need none: a cross-site form cannot send those headers. The cookie is also
SameSite=Lax, HttpOnly, and Secure when `web.public_url` is https.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from aiohttp import web

from etld.logs import get_logger
from etld.store.queries import SQL
from etld.web.auth import READ_METHODS, RESOLVERS, Principal, Role
from etld.web.errors import forbidden
from etld.web.keys import DAEMON

log = get_logger(__name__)

COOKIE = "etld_session"
FLASH_COOKIE = "etld_flash"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
ANONYMOUS_MAX_AGE = 3600  # a login form stays usable for an hour
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

SESSION_KEY: web.AppKey[bytes] = web.AppKey("session_key", bytes)


@dataclass(frozen=True)
class Session:
    csrf: str
    expires: int  # unix seconds
    user_id: int | None = None
    pw: str = ""  # fingerprint of the password hash the session was opened with


@dataclass(frozen=True)
class SessionUser:
    """The logged-in user as the pages show it."""

    id: int
    tenant_id: int
    tenant: str
    username: str
    display_name: str
    role: str


SESSION: web.RequestKey[Session] = web.RequestKey("session", Session)
SESSION_USER: web.RequestKey[SessionUser] = web.RequestKey("session_user", SessionUser)


# -- keys and signing ----------------------------------------------------------------------


def derive_key(secret_key: str) -> bytes:
    """The cookie signing key; a random one (with a warning) when none is configured."""
    if not secret_key:
        log.warning(
            "security.secret_key is not set: sessions are signed with a random key and "
            "end when the daemon restarts (set ETLD_SECRET_KEY to keep them)"
        )
        return secrets.token_bytes(32)
    return hmac.new(b"etld-session-cookie", secret_key.encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: bytes, payload: dict[str, Any]) -> str:
    body = _b64(orjson.dumps(payload))
    mac = hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def unsign(key: bytes, value: str) -> dict[str, Any] | None:
    """The payload of a value signed with `key`, or None when it was not (or is garbled)."""
    body, sep, mac = value.partition(".")
    if not sep:
        return None
    try:
        expected = hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(mac)):
            return None
        data = orjson.loads(_unb64(body))
    except (UnicodeEncodeError, binascii.Error, ValueError):
        return None
    return data if isinstance(data, dict) else None


def password_fingerprint(key: bytes, password_hash: str) -> str:
    return _b64(hmac.new(key, password_hash.encode(), hashlib.sha256).digest()[:12])


# -- the cookie ------------------------------------------------------------------------------


def read_session(request: web.Request) -> Session | None:
    """The request's valid (signed, unexpired) session, anonymous or not; cached."""
    cached: Session | None = request.get(SESSION)
    if cached is not None:
        return cached
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    data = unsign(request.app[SESSION_KEY], raw)
    if data is None:
        return None
    try:
        session = Session(
            csrf=str(data["csrf"]),
            expires=int(data["expires"]),
            user_id=int(data["user_id"]) if data.get("user_id") is not None else None,
            pw=str(data.get("pw", "")),
        )
    except (KeyError, TypeError, ValueError):
        return None
    if session.expires <= time.time() or not session.csrf:
        return None
    request[SESSION] = session
    return session


def new_session(request: web.Request, user_id: int | None = None, pw: str = "") -> Session:
    max_age = _max_age(request, user_id)
    session = Session(
        csrf=secrets.token_urlsafe(32), expires=int(time.time()) + max_age, user_id=user_id, pw=pw
    )
    request[SESSION] = session
    return session


def anonymous_session(request: web.Request) -> Session:
    """The visitor's current session for a login form: kept when valid, else a new one."""
    current = read_session(request)
    if current is not None and current.user_id is None:
        return current
    return new_session(request)


def _max_age(request: web.Request, user_id: int | None) -> int:
    return request.app[DAEMON].config.web.session_max_age if user_id else ANONYMOUS_MAX_AGE


def _secure(request: web.Request) -> bool:
    return request.app[DAEMON].config.web.public_url.lower().startswith("https://")


def set_session_cookie(request: web.Request, response: web.StreamResponse, s: Session) -> None:
    response.set_cookie(
        COOKIE,
        sign(request.app[SESSION_KEY], asdict(s)),
        max_age=max(1, s.expires - int(time.time())),
        path="/",
        httponly=True,
        samesite="Lax",
        secure=_secure(request),
    )


def clear_session_cookie(request: web.Request, response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/", secure=_secure(request), samesite="Lax")


def set_flash(request: web.Request, response: web.StreamResponse, kind: str, text: str) -> None:
    """A one-shot message for the next page (e.g. after a form's redirect)."""
    value = sign(request.app[SESSION_KEY], {"kind": kind, "text": text[:500]})
    response.set_cookie(
        FLASH_COOKIE, value, max_age=60, path="/", httponly=True, samesite="Lax",
        secure=_secure(request),
    )  # fmt: skip


def take_flash(request: web.Request, response: web.StreamResponse) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    response.del_cookie(FLASH_COOKIE, path="/")
    data = unsign(request.app[SESSION_KEY], raw)
    if data is None or not isinstance(data.get("text"), str):
        return None
    kind = data.get("kind")
    return {"kind": kind if kind in ("ok", "error", "info") else "info", "text": data["text"]}


# -- CSRF ------------------------------------------------------------------------------------


async def csrf_ok(request: web.Request, session: Session) -> bool:
    """Whether the request carries the session's CSRF token (header or form field).

    Reading the form here is safe for the handler: aiohttp keeps the parsed form, and a body
    over `client_max_size` raises 413 here as it would in the handler.
    """
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.content_type in _FORM_TYPES:
        form = await request.post()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    return sent is not None and hmac.compare_digest(sent.encode(), session.csrf.encode())


# -- the resolver ----------------------------------------------------------------------------


async def session_user(request: web.Request) -> SessionUser | None:
    """The user of the request's session when it is still valid; cached on the request."""
    cached: SessionUser | None = request.get(SESSION_USER)
    if cached is not None:
        return cached
    session = read_session(request)
    if session is None or session.user_id is None:
        return None
    pool = request.app[DAEMON].pool
    assert pool is not None, "the web app runs only after the pool is up"
    async with pool.acquire() as conn:
        row = await conn.fetchrow(SQL["ui.session_user"], session.user_id)
    if row is None or not row["active"] or not row["tenant_active"]:
        return None
    key = request.app[SESSION_KEY]
    if not hmac.compare_digest(password_fingerprint(key, row["password_hash"]), session.pw):
        return None  # the password changed since this session began
    user = SessionUser(
        id=row["id"],
        tenant_id=row["tenant_id"],
        tenant=row["tenant"],
        username=row["username"],
        display_name=row["display_name"] or row["username"],
        role=row["role"],
    )
    request[SESSION_USER] = user
    return user


async def session_cookie(request: web.Request) -> Principal | None:
    """Resolver: the session cookie's user, with the CSRF check for changing methods."""
    user = await session_user(request)
    if user is None:
        return None
    session = request[SESSION]
    if request.method not in READ_METHODS and not await csrf_ok(request, session):
        raise forbidden("missing or invalid CSRF token; reload the page and try again")
    role: Role = "admin" if user.role == "admin" else "viewer"
    return Principal(tenant_id=user.tenant_id, role=role, name=user.username, via="session")


def setup_sessions(app: web.Application) -> None:
    """Derive the signing key and add the session resolver after the others."""
    app[SESSION_KEY] = derive_key(app[DAEMON].config.security.secret_key)
    app[RESOLVERS].append(session_cookie)
