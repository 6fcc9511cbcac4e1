"""The admin web UI: server-rendered pages (aiohttp-jinja2) over the same data as the API.

`setup_ui(app)` installs the templates, `/static/`, the session cookie resolver and the
pages. Three middlewares (added by `create_app`) frame every request:

- `limit_body`: a declared body over `web.max_body_bytes` answers 413 before anything
  reads it (routes that never read their body would otherwise ignore the limit).
- `html_errors`: errors of page routes become pages in the app's layout (404, 413, 500,
  503 when PostgreSQL is unreachable); /app/etl/* and /ws/* keep their JSON errors.
- `ui_auth`: page routes need a session; without one a GET goes to /login (and back after
  signing in), and changing methods need the session's CSRF token (checked by the session
  resolver) and an admin.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import quote

import aiohttp_jinja2
import asyncpg
import jinja2
from aiohttp import web
from aiohttp.typedefs import Handler

from etld.logs import get_logger
from etld.web.auth import PRINCIPAL, READ_METHODS
from etld.web.errors import JSON_PREFIXES, ApiError, forbidden
from etld.web.keys import DAEMON
from etld.web.ratelimit import LOGIN_LIMITS, default_limits
from etld.web.sessions import SESSION_USER, session_cookie, session_user, setup_sessions
from etld.web.ui import integrations, jobs, login, mappings, queues, work_items
from etld.web.ui.common import FILTERS, STATIC, TEMPLATES, redirect, render

log = get_logger(__name__)

OPEN_PATHS = frozenset({"/login", "/health", "/ready", "/metrics"})
STATIC_PREFIX = "/static/"
_TITLES = {
    400: "Bad request",
    401: "Sign-in needed",
    403: "Not allowed",
    404: "Page not found",
    405: "Not allowed here",
    413: "Too much data",
    429: "Slow down",
    500: "Something broke",
    503: "Service unavailable",
}


def setup_ui(app: web.Application) -> None:
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(FILTERS)
    setup_sessions(app)
    app[LOGIN_LIMITS] = default_limits()
    app.router.add_static("/static", STATIC, name="static")
    for module in (login, jobs, integrations, mappings, queues, work_items):
        module.add_routes(app)


def _is_page(path: str) -> bool:
    return not path.startswith(JSON_PREFIXES) and path not in ("/health", "/ready", "/metrics")


@web.middleware
async def limit_body(request: web.Request, handler: Handler) -> web.StreamResponse:
    limit = request.app[DAEMON].config.web.max_body_bytes
    length = request.content_length
    if length is not None and length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=length)
    return await handler(request)


async def error_page(
    request: web.Request, status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    context = {"status": status, "title": _TITLES.get(status, "Error"), "message": message}
    try:
        if request.get(SESSION_USER) is None:
            # Unknown pages skip ui_auth; a signed-in visitor still gets the layout's nav.
            with contextlib.suppress(Exception):
                await session_user(request)
        return await render(request, "error.html", context, status=status, headers=headers)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("error page failed to render", status=status)
        return web.Response(status=status, text=f"{status}: {message}")


@web.middleware
async def html_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not _is_page(request.path):
        return await handler(request)
    try:
        return await handler(request)
    except ApiError as exc:
        return await error_page(request, exc.status, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        text = exc.text or ""
        message = exc.reason if not text or text.startswith(f"{exc.status}: ") else text
        if exc.status == 413:
            message = "The form sent more data than the server accepts."
        kept = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return await error_page(request, exc.status, message, kept)
    except asyncio.CancelledError:
        raise
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
        log.warning("page failed: a service is unreachable", path=request.path, error=repr(exc))
        return await error_page(
            request, 503, "A service this page needs is unreachable. Try again shortly."
        )
    except Exception:
        log.exception("unhandled error in page", method=request.method, path=request.path)
        return await error_page(request, 500, "The error was logged. Try again, or go back.")


@web.middleware
async def ui_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if (
        not _is_page(path)
        or path in OPEN_PATHS
        or path.startswith(STATIC_PREFIX)
        or request.match_info.http_exception is not None  # unknown page: a plain 404
    ):
        return await handler(request)
    principal = await session_cookie(request)  # 403 here when the CSRF token is missing
    if principal is None:
        target = request.path_qs if request.method in READ_METHODS else "/"
        if target == "/":
            return redirect(request, "/login")
        return redirect(request, f"/login?next={quote(target, safe='/')}")
    if request.method not in READ_METHODS and not principal.can_act and path != "/logout":
        raise forbidden("Viewers can look but not change anything; ask an admin.")
    request[PRINCIPAL] = principal
    return await handler(request)


__all__ = ["html_errors", "limit_body", "setup_ui", "ui_auth"]
