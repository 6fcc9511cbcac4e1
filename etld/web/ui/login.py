"""Signing in and out: `/login` (form and POST) and `POST /logout`.

The login form carries the CSRF token of an anonymous session. Failed attempts are
throttled per username and per client address (`etld.web.ratelimit`) before any password
is checked. An unknown username costs the same scrypt work as a wrong password, so the
answer time does not tell which usernames exist.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from etld.passwords import hash_password, verify_password
from etld.store.queries import SQL
from etld.web.ratelimit import LOGIN_LIMITS
from etld.web.sessions import (
    SESSION_KEY,
    anonymous_session,
    clear_session_cookie,
    csrf_ok,
    new_session,
    password_fingerprint,
    read_session,
    session_user,
    set_session_cookie,
)
from etld.web.ui.common import form_of, pool_of, redirect, render, safe_next

# Compared against when the username is unknown; computed once, on first use.
_DUMMY_HASH: list[str] = []


def add_routes(app: web.Application) -> None:
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)


async def login_page(request: web.Request) -> web.StreamResponse:
    if await session_user(request) is not None:
        return redirect(request, safe_next(request.query.get("next")))
    return await _form(request, status=200)


async def _form(
    request: web.Request,
    *,
    status: int,
    error: str | None = None,
    username: str = "",
    next_path: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    session = anonymous_session(request)
    target = safe_next(next_path if next_path is not None else request.query.get("next"))
    response = await render(
        request,
        "login.html",
        {"error": error, "username": username, "next": target},
        status=status,
        headers=headers,
    )
    set_session_cookie(request, response, session)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    form = await form_of(request)
    username = form.get("username", "").strip()[:200]
    password = form.get("password", "")[:1024]
    current = read_session(request)
    if current is None or not await csrf_ok(request, current):
        # No (or an expired) form session: show a fresh form rather than a bare error.
        return await _form(
            request,
            status=403,
            error="The login form expired. Please sign in again.",
            username=username,
            next_path=form.get("next"),
        )
    limits = request.app[LOGIN_LIMITS]
    address = request.remote or "unknown"
    wait = limits.retry_after(username, address)
    if wait > 0:
        return await _form(
            request,
            status=429,
            error=f"Too many failed sign-ins. Try again in {wait} seconds.",
            username=username,
            next_path=form.get("next"),
            headers={"Retry-After": str(wait)},
        )
    pool = pool_of(request)
    async with pool.acquire() as conn:
        row = await conn.fetchrow(SQL["ui.login_user"], username) if username else None
    stored = row["password_hash"] if row is not None else await _dummy_hash()
    good = await asyncio.to_thread(verify_password, password, stored)
    if not (good and row is not None and row["active"] and row["tenant_active"]):
        limits.failed(username or "-", address)
        return await _form(
            request,
            status=401,
            error="Wrong username or password.",
            username=username,
            next_path=form.get("next"),
        )
    limits.succeeded(username)
    async with pool.acquire() as conn:
        await conn.execute(SQL["ui.touch_login"], row["id"])
    fingerprint = password_fingerprint(request.app[SESSION_KEY], row["password_hash"])
    session = new_session(request, user_id=row["id"], pw=fingerprint)
    response = redirect(request, safe_next(form.get("next")))
    set_session_cookie(request, response, session)
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    """Reached only with a valid session and its CSRF token (the UI middleware checks)."""
    response = redirect(request, "/login", "info", "You are signed out.")
    clear_session_cookie(request, response)
    return response


async def _dummy_hash() -> str:
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(await asyncio.to_thread(hash_password, "not a real password"))
    return _DUMMY_HASH[0]
