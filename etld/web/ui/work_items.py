"""Work items: search and filter (`/work-items`) and one item (`/work-items/{id}`) with its
transitions, the 15 workflow metrics and linked pull requests.

The semantic search box is driven by `static/work_items.js`, which asks
`GET /app/etl/search` and shows its results, or says semantic search is not enabled.
"""

from __future__ import annotations

from aiohttp import web

from etld import work_items as wi
from etld.web.errors import not_found
from etld.web.ui.common import page_links, paging, pool_of, render, tenant_of

_ITEM = r"{item_id:\d{1,18}}"


def add_routes(app: web.Application) -> None:
    app.router.add_get("/work-items", list_page)
    app.router.add_get(f"/work-items/{_ITEM}", item_page)


async def list_page(request: web.Request) -> web.Response:
    tenant_id = tenant_of(request)
    limit, offset = paging(request)
    error = None
    try:
        filters = wi.Filters.from_query(request.query)
    except wi.FilterError as exc:
        error, filters = str(exc), wi.Filters()
    items, total = await wi.search_page(pool_of(request), tenant_id, filters, limit, offset)
    choices = await wi.filter_choices(pool_of(request), tenant_id)
    return await render(
        request,
        "work_items.html",
        {
            "items": items,
            "total": total,
            "offset": offset,
            "filters": filters,
            "choices": choices,
            "error": error,
            "pages": page_links(request, limit, offset, len(items), total),
        },
    )


async def item_page(request: web.Request) -> web.Response:
    item = await wi.item_detail(
        pool_of(request), int(request.match_info["item_id"]), tenant_of(request)
    )
    if item is None:
        raise not_found("no such work item")
    return await render(request, "work_item.html", {"item": item, "metrics": wi.METRICS})
