"""Plumbing shared by the simulated Jira's handlers: app keys, JSON answers, parameters."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from etld.simulator.faults import ApiCallCounter, FaultPlan
from etld.simulator.jira_data import JiraSite
from etld.simulator.jira_issue import Renderer
from etld.simulator.jira_render import error_json
from etld.simulator.jira_search import SearchEngine

SITE = web.AppKey("jira_site", JiraSite)
SEARCH = web.AppKey("jira_search", SearchEngine)
CALLS = web.AppKey("jira_calls", ApiCallCounter)
FAULTS = web.AppKey("jira_faults", FaultPlan)
RENDERERS = web.AppKey("jira_renderers", dict[str, Renderer])
USER = web.RequestKey("jira_user", str)  # the Basic-auth user of the request
ACCOUNT = web.RequestKey("jira_account", str)  # and the account id answering for it
JSON_TYPE = "application/json;charset=UTF-8"


class JiraError(Exception):
    """Raised by handlers; answered with `status` and Jira's `errorMessages` body."""

    status = 500

    def __init__(self, *messages: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(*messages)
        self.messages = messages
        self.extra = extra or {}  # further top-level keys some endpoints add to the body


class BadRequest(JiraError):
    status = 400


class NotFound(JiraError):
    status = 404


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, headers={"Content-Type": JSON_TYPE})


def error_response(
    status: int, *messages: str, errors: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    return json_response({**error_json(*messages, errors=errors), **extra}, status)


def site_of(request: web.Request) -> JiraSite:
    return request.app[SITE]


def base_of(request: web.Request) -> str:
    site = request.app[SITE]
    return site.base_url or f"{request.scheme}://{request.host}"


def renderer(request: web.Request) -> Renderer:
    base = base_of(request)
    cache = request.app[RENDERERS]
    if base not in cache:
        cache[base] = Renderer(request.app[SITE], base)
    return cache[base]


def int_param(request: web.Request, name: str, default: int, *, minimum: int = 0) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"The '{name}' parameter must be an integer, got '{raw}'.") from None
    if value < minimum:
        raise BadRequest(f"The '{name}' parameter must be at least {minimum}.")
    return value


def list_param(request: web.Request, name: str) -> list[str]:
    """A list parameter given repeated (`a=1&a=2`), comma-separated, or both."""
    return [
        v.strip() for raw in request.query.getall(name, []) for v in raw.split(",") if v.strip()
    ]


def paged(
    request: web.Request, items: list[Any], *, default_max: int, cap: int, path: str
) -> dict[str, Any]:
    """Jira's offset page: `startAt`/`maxResults`/`total`/`isLast`/`values` (+ `nextPage`)."""
    start = int_param(request, "startAt", 0)
    size = min(int_param(request, "maxResults", default_max, minimum=1), cap)
    values = items[start : start + size]
    last = start + size >= len(items)
    base = base_of(request)
    out: dict[str, Any] = {
        "self": f"{base}{path}?startAt={start}&maxResults={size}",
        "maxResults": size,
        "startAt": start,
        "total": len(items),
        "isLast": last,
        "values": values,
    }
    if not last:
        out["nextPage"] = f"{base}{path}?startAt={start + size}&maxResults={size}"
    return out
