"""`GET /app/etl/openapi.json`: an OpenAPI 3.1 document of every /app/etl route.

The document is built from the app's router when asked, so it lists exactly the routes
the app serves; the text of each operation comes from `DESCRIPTIONS`, else from the
handler's docstring. Paginated lists take `limit` (1-200, default 50) and `offset`.
"""

from __future__ import annotations

import re
from typing import Any, Final

from aiohttp import web

from etld.web.api_jobs import _json

PREFIX = "/app/etl/"
_PARAM = re.compile(r"{([a-z_]+)}")

# (method, path) -> summary. Routes missing here fall back to the handler's docstring.
DESCRIPTIONS: Final[dict[tuple[str, str], str]] = {
    ("GET", "/app/etl/openapi.json"): "This document.",
    ("GET", "/app/etl/jobs"): "The tenant's jobs with their status JSON and last run.",
    ("GET", "/app/etl/jobs/{job_id}"): "One job with its status JSON and last run.",
    ("PATCH", "/app/etl/jobs/{job_id}"): 'Pause or resume a job: {"active": bool}.',
    ("POST", "/app/etl/jobs/{job_id}/run"): 'Run the job now ({"full_sync": bool}).',
    ("PUT", "/app/etl/jobs/{job_id}/status"): "Reset a job to READY or NOT_STARTED.",
    ("GET", "/app/etl/jobs/{job_id}/runs"): "The job's run history, newest first.",
    ("GET", "/app/etl/notifications"): "The tenant's notifications, newest first.",
    ("GET", "/app/etl/custom-fields"): "Custom fields discovered for an integration.",
    ("POST", "/app/etl/custom-fields/sync"): "Queue the manual custom fields sync.",
    ("GET", "/app/etl/custom-fields/mapping"): "The custom field mapping of an integration.",
    ("PUT", "/app/etl/custom-fields/mapping"): "Save the custom field mapping and re-transform.",
    ("GET", "/app/etl/status-mappings"): "Statuses of an integration with their flow category.",
    ("PUT", "/app/etl/status-mappings"): "Map statuses to flow categories; recomputes metrics.",
    ("GET", "/app/etl/queues"): "Queue depth and consumers per queue, and this daemon's workers.",
    ("GET", "/app/etl/dead-letters"): "Dead letters of the tenant.",
    ("POST", "/app/etl/dead-letters/requeue"): "Requeue dead letters by id, or all of them.",
    ("POST", "/app/etl/dead-letters/purge"): "Purge dead letters by id, or all of them.",
    ("GET", "/app/etl/dead-letters/{dead_id}"): "One dead letter with its message body.",
    ("POST", "/app/etl/dead-letters/{dead_id}/requeue"): "Requeue one dead letter.",
    ("POST", "/app/etl/workers/restart"): "Restart consumers in every daemon.",
    ("GET", "/app/etl/search"): "Semantic search over the tenant's work items and PRs.",
    ("GET", "/app/etl/integrations"): "The tenant's integrations (credentials never shown).",
    ("POST", "/app/etl/integrations"): "Create an integration and its job.",
    ("GET", "/app/etl/integrations/{integration_id}"): "One integration.",
    ("PATCH", "/app/etl/integrations/{integration_id}"): "Change an integration.",
    ("POST", "/app/etl/integrations/{integration_id}/test"): "Test the connection.",
    ("GET", "/app/etl/work-items"): "Work items, filtered and paginated.",
    ("GET", "/app/etl/work-items/{item_id}"): "One work item with transitions, metrics, PRs.",
}
_LIMIT: Final = {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}
PAGINATED: Final = frozenset(
    {
        "/app/etl/jobs/{job_id}/runs",
        "/app/etl/notifications",
        "/app/etl/dead-letters",
        "/app/etl/integrations",
        "/app/etl/work-items",
    }
)
_ERRORS: Final = {
    "400": "The request is malformed.",
    "401": "No valid credential.",
    "403": "Not allowed (a viewer acting, or a missing CSRF token with the session cookie).",
    "404": "Not found, or another tenant's.",
    "413": "The body is larger than web.max_body_bytes.",
}


def add_routes(app: web.Application) -> None:
    app.router.add_get("/app/etl/openapi.json", openapi)


async def openapi(request: web.Request) -> web.Response:
    """This document."""
    return _json(build_document(request.app))


def api_routes(app: web.Application) -> list[tuple[str, str, Any]]:
    """(method, path, handler) of every /app/etl route, HEAD twins left out."""
    out = []
    for route in app.router.routes():
        resource = route.resource
        if resource is None or route.method in ("HEAD", "*"):
            continue
        path = resource.canonical
        if path.startswith(PREFIX):
            out.append((route.method, path, route.handler))
    return out


def build_document(app: web.Application) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path, handler in sorted(api_routes(app), key=lambda r: (r[1], r[0])):
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, handler)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "etld API",
            "version": "1",
            "description": (
                "JSON API of the etld daemon. Authenticate with X-Internal-Auth (service key), "
                "Authorization: Bearer <API token>, or the admin UI's session cookie (which "
                "needs the X-CSRF-Token header on POST, PUT, PATCH and DELETE)."
            ),
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "internal": {"type": "apiKey", "in": "header", "name": "X-Internal-Auth"},
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "etld_session"},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        }
                    },
                }
            },
        },
        "security": [{"internal": []}, {"bearer": []}, {"session": []}],
    }


def _summary(method: str, path: str, handler: Any) -> str:
    text = DESCRIPTIONS.get((method, path))
    if text:
        return text
    doc = (getattr(handler, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else f"{method} {path}"


def _operation(method: str, path: str, handler: Any) -> dict[str, Any]:
    slug = re.sub(r"[^a-z0-9]+", "_", path[len(PREFIX) :].lower()).strip("_")
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "integer"}}
        for name in _PARAM.findall(path)
    ]
    if method == "GET" and path in PAGINATED:
        params += [
            {"name": "limit", "in": "query", "schema": _LIMIT},
            {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
        ]
    ok = "201" if (method, path) == ("POST", "/app/etl/integrations") else "200"
    responses: dict[str, Any] = {ok: {"description": "Success (JSON)."}}
    for status, text in _ERRORS.items():
        responses[status] = {
            "description": text,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    op: dict[str, Any] = {
        "operationId": f"{method.lower()}_{slug}",
        "summary": _summary(method, path, handler),
        "parameters": params,
        "responses": responses,
    }
    if method in ("POST", "PUT", "PATCH"):
        op["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    return op
