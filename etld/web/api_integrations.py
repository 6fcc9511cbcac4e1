"""The integrations and work items JSON API under /app/etl/.

Integrations: list, create (with its job), read, change, test the connection. Credentials
are write-only: a body may carry `token`, an answer never does (only `credentials_hint`,
the last 4 characters). Work items: filtered pages and one item with its transitions,
metrics and pull requests.

Tenant-scoped like the other routes: a tenant's caller reaches its own rows only (another
tenant's id answers 404), and the internal service principal names the tenant with
`?tenant_id=` on lists and `"tenant_id"` when creating.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from etld import integrations as integ
from etld import probe
from etld import work_items as wi
from etld.store.queries import SQL
from etld.web.api_jobs import _json, _json_body, _listing_tenant, _page, _pool
from etld.web.auth import PRINCIPAL
from etld.web.errors import bad_request, invalid, not_found
from etld.web.keys import DAEMON

_ID = r"{integration_id:\d{1,18}}"
_ITEM = r"{item_id:\d{1,18}}"


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/app/etl/integrations", list_integrations)
    r.add_post("/app/etl/integrations", create_integration)
    r.add_get(f"/app/etl/integrations/{_ID}", get_integration)
    r.add_patch(f"/app/etl/integrations/{_ID}", patch_integration)
    r.add_post(f"/app/etl/integrations/{_ID}/test", test_integration)
    r.add_get("/app/etl/work-items", list_work_items)
    r.add_get(f"/app/etl/work-items/{_ITEM}", get_work_item)


# -- integrations ------------------------------------------------------------------------------


async def list_integrations(request: web.Request) -> web.Response:
    """The tenant's integrations (credentials never included), paginated."""
    tenant_id = await _listing_tenant(request)
    limit, offset = _page(request)
    items = await integ.list_integrations(_pool(request), tenant_id, limit, offset)
    return _json({"tenant_id": tenant_id, "integrations": items, "limit": limit, "offset": offset})


async def create_integration(request: web.Request) -> web.Response:
    """Create an integration and its job; `token` is stored encrypted, never returned."""
    body = await _json_body(request)
    tenant_id = await _creating_tenant(request, body)
    try:
        changes = integ.parse_changes(body, creating=True)
        new_id = await integ.create_integration(
            _pool(request), tenant_id, changes, _secret_key(request)
        )
    except integ.IntegrationError as exc:
        raise invalid(str(exc)) from None
    created = await integ.get_integration(_pool(request), new_id, tenant_id)
    return _json(created, 201)


async def get_integration(request: web.Request) -> web.Response:
    return _json(await _owned(request))


async def patch_integration(request: web.Request) -> web.Response:
    current = await _owned(request)
    body = await _json_body(request)
    try:
        changes = integ.parse_changes(body, creating=False)
        await integ.update_integration(
            _pool(request), current["tenant_id"], current["id"], changes, _secret_key(request)
        )
    except integ.IntegrationError as exc:
        raise invalid(str(exc)) from None
    return _json(await integ.get_integration(_pool(request), current["id"], None))


async def test_integration(request: web.Request) -> web.Response:
    """One authenticated GET to the provider's cheapest endpoint; `ok` says how it went."""
    current = await _owned(request)
    result = await probe.test_connection(
        _pool(request), current["tenant_id"], current["id"], _secret_key(request)
    )
    if result is None:
        raise not_found("no such integration")
    return _json({"integration_id": current["id"], **result.as_json()})


async def _owned(request: web.Request) -> dict[str, Any]:
    integration_id = int(request.match_info["integration_id"])
    found = await integ.get_integration(
        _pool(request), integration_id, request[PRINCIPAL].tenant_id
    )
    if found is None:
        raise not_found("no such integration")
    return found


async def _creating_tenant(request: web.Request, body: dict[str, Any]) -> int:
    """The caller's tenant, or for the service principal the body's `tenant_id`."""
    principal = request[PRINCIPAL]
    asked = body.pop("tenant_id", None)
    if principal.tenant_id is not None:
        if asked is not None and asked != principal.tenant_id:
            raise not_found("no such tenant")
        return principal.tenant_id
    if type(asked) is not int or not 1 <= asked <= 2**63 - 1:
        raise invalid("tenant_id is required")
    async with _pool(request).acquire() as conn:
        if not await conn.fetchval(SQL["api.tenant_exists"], asked):
            raise not_found("no such tenant")
    return asked


def _secret_key(request: web.Request) -> str:
    return request.app[DAEMON].config.security.secret_key


# -- work items --------------------------------------------------------------------------------


async def list_work_items(request: web.Request) -> web.Response:
    """Work items filtered by project_id, type_id, status_id, q, field + value; paginated."""
    tenant_id = await _listing_tenant(request)
    limit, offset = _page(request)
    try:
        filters = wi.Filters.from_query(request.query)
    except wi.FilterError as exc:
        raise bad_request(str(exc)) from None
    items, total = await wi.search_page(_pool(request), tenant_id, filters, limit, offset)
    return _json(
        {
            "tenant_id": tenant_id,
            "filters": filters.as_json(),
            "work_items": items,
            "total": total,
            "limit": limit,
            "offset": offset,
        }
    )


async def get_work_item(request: web.Request) -> web.Response:
    """One work item with its transitions, the 15 metrics and linked pull requests."""
    item = await wi.item_detail(
        _pool(request), int(request.match_info["item_id"]), request[PRINCIPAL].tenant_id
    )
    if item is None:
        raise not_found("no such work item")
    return _json(item)
