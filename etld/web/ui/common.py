"""What every page shares: rendering with the layout's context, redirects with a message,
form and paging helpers, and the service banner (PostgreSQL or RabbitMQ down)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

import aiohttp_jinja2
import asyncpg
from aiohttp import web
from multidict import MultiDict

from etld.daemon import Daemon
from etld.jobs.runs import Runs
from etld.store.queries import SQL
from etld.web.auth import PRINCIPAL
from etld.web.keys import DAEMON
from etld.web.sessions import SESSION, SESSION_USER, set_flash, take_flash

PACKAGE = Path(__file__).resolve().parents[2]
TEMPLATES: Final = PACKAGE / "templates"
STATIC: Final = PACKAGE / "static"
PING_TIMEOUT = 1.0
PAGE_SIZES: Final = (25, 50, 100)

NAV: Final = (
    ("/", "Jobs"),
    ("/integrations", "Integrations"),
    ("/custom-fields", "Custom fields"),
    ("/statuses", "Statuses & types"),
    ("/queues", "Queues"),
    ("/work-items", "Work items"),
)


async def service_problems(daemon: Daemon) -> list[str]:
    """What /ready would report as down, in words for the banner."""
    problems: list[str] = []
    pool = daemon.pool
    if pool is None:
        problems.append("PostgreSQL is not connected.")
    else:
        try:
            async with asyncio.timeout(PING_TIMEOUT), pool.acquire() as conn:
                await conn.fetchval(SQL["ui.ping"])
        except asyncio.CancelledError:
            raise
        except Exception:
            problems.append("PostgreSQL is unreachable: pages cannot show current data.")
    broker = daemon.broker
    if broker is None or not broker.connected:
        problems.append("RabbitMQ is unreachable: jobs cannot start and queued work waits.")
    return problems


async def render(
    request: web.Request,
    template: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    user = request.get(SESSION_USER)
    session = request.get(SESSION)
    flash_sink = web.Response()
    ctx = {
        "user": user,
        "can_act": user is not None and user.role == "admin",
        "csrf": session.csrf if session is not None else "",
        "nav": NAV if user is not None else (),
        "path": request.path,
        "problems": await service_problems(request.app[DAEMON]),
        "flash": take_flash(request, flash_sink),
        **context,
    }
    response = aiohttp_jinja2.render_template(template, request, ctx, status=status)
    for name, morsel in flash_sink.cookies.items():
        response.cookies[name] = morsel
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def redirect(
    request: web.Request, location: str, kind: str | None = None, text: str | None = None
) -> web.Response:
    """303 to `location`, with a message shown once on the next page."""
    response = web.Response(status=303, headers={"Location": location})
    if kind is not None and text is not None:
        set_flash(request, response, kind, text)
    return response


def safe_next(target: str | None) -> str:
    """A local path to go back to; anything else (other hosts, schemes) becomes /."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def pool_of(request: web.Request) -> asyncpg.Pool:
    pool = request.app[DAEMON].pool
    assert pool is not None, "the web app runs only after the pool is up"
    return pool


def runs_of(request: web.Request) -> Runs:
    runs: Runs = request.app[DAEMON].services["runs"]
    return runs


def tenant_of(request: web.Request) -> int:
    """The page's tenant: the session user's (pages are reached through sessions only)."""
    tenant_id = request[PRINCIPAL].tenant_id
    assert tenant_id is not None, "pages are for session users, who belong to a tenant"
    return tenant_id


async def form_of(request: web.Request) -> MultiDict[str]:
    """The posted form's text fields (uploads are ignored)."""
    form = await request.post()  # over web.max_body_bytes aiohttp raises 413 here
    out: MultiDict[str] = MultiDict()
    for key, value in form.items():
        if isinstance(value, str):
            out.add(key, value)
    return out


def int_arg(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit() or len(value.strip()) > 18:
        return None
    return int(value.strip())


def paging(request: web.Request, default: int = 50) -> tuple[int, int]:
    limit = int_arg(request.query.get("limit")) or default
    limit = limit if limit in PAGE_SIZES else default
    offset = min(int_arg(request.query.get("offset")) or 0, 2**31 - 1)
    return limit, offset


def page_links(
    request: web.Request, limit: int, offset: int, shown: int, total: int | None = None
) -> dict[str, str | None]:
    """Query strings of the previous and next pages (None where there is none)."""
    base = {k: v for k, v in request.query.items() if k not in ("offset", "limit")}

    def link(new_offset: int) -> str:
        return "?" + urlencode({**base, "limit": limit, "offset": new_offset})

    more = shown >= limit if total is None else offset + shown < total
    return {
        "prev": link(max(0, offset - limit)) if offset > 0 else None,
        "next": link(offset + limit) if more else None,
    }


# -- template filters ------------------------------------------------------------------------


def when(value: Any) -> str:
    """A timestamp as `2025-01-15 10:00 UTC` (ISO text or datetime); empty for None."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return str(value.strftime("%Y-%m-%d %H:%M UTC"))
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def duration(seconds: Any) -> str:
    """Seconds as `2d 3h`, `4h 05m`, `12m 30s` or `8.2s`."""
    if seconds is None:
        return ""
    s = float(seconds)
    if s < 60:
        return f"{s:.1f}s"
    minutes, sec = divmod(int(s), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {sec:02d}s"


def http_url(value: Any) -> str:
    """A link target only when it is http(s); source data must not smuggle `javascript:`."""
    text = str(value or "")
    return str(text) if text.lower().startswith(("https://", "http://")) else ""


FILTERS: Final = {"when": when, "duration": duration, "http_url": http_url}
