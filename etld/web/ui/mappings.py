"""Custom fields (`/custom-fields`) and statuses & work item types (`/statuses`).

Custom fields: the fields discovered by the manual sync (the "Queue for Extraction &
Transform" button starts it), and the mapping form: team, code_changed and story_points
first, then the 20 slots. Saving can re-transform the stored pages so columns follow the
new mapping at once. Statuses: each status's flow category (which drives the workflow
metrics; a change recomputes the affected items from their changelogs) and the work item
types. Both go through `etld.mappings`, like the JSON API.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from etld import mappings as m
from etld.config import FLOW_CATEGORIES
from etld.jobs import control
from etld.store.queries import SQL
from etld.web.api_mappings import INLINE_RECOMPUTE_LIMIT, _start_background
from etld.web.ui.common import form_of, int_arg, pool_of, redirect, render, runs_of, tenant_of

CUSTOM_FIELDS_PROVIDERS = frozenset({"jira"})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/custom-fields", custom_fields_page)
    r.add_post("/custom-fields/sync", sync)
    r.add_post("/custom-fields/mapping", save_mapping)
    r.add_get("/statuses", statuses_page)
    r.add_post("/statuses", save_statuses)


async def _choose(
    request: web.Request, wanted: int | None
) -> tuple[list[dict[str, Any]], m.IntegrationRef | None]:
    """The tenant's integrations and the one the page is about (asked for, else the first)."""
    tenant_id = tenant_of(request)
    async with pool_of(request).acquire() as conn:
        rows = await conn.fetch(SQL["ui.integration_names"], tenant_id)
        choices = [dict(r) for r in rows]
        if wanted is None:
            jira = [c for c in choices if c["provider"] in CUSTOM_FIELDS_PROVIDERS]
            wanted = (jira or choices or [{"id": None}])[0]["id"]
        integ = await m.get_integration(conn, wanted) if wanted is not None else None
    if integ is None or integ.tenant_id != tenant_id:
        if wanted is not None and request.query.get("integration_id"):
            raise web.HTTPNotFound(text="no such integration")
        return choices, None
    return choices, integ


def _back(path: str, integ: m.IntegrationRef) -> str:
    return f"{path}?integration_id={integ.id}"


# -- custom fields -----------------------------------------------------------------------------


async def custom_fields_page(request: web.Request) -> web.Response:
    choices, integ = await _choose(request, int_arg(request.query.get("integration_id")))
    context: dict[str, Any] = {"choices": choices, "integ": integ, "slots": m.SLOTS}
    if integ is not None:
        async with pool_of(request).acquire() as conn:
            fields = await m.list_fields(conn, integ)
            stored = await m.read_mapping(conn, integ)
            job_id = await m.job_of(conn, integ)
            running = (
                await conn.fetchval(SQL["runs.running_run_of_job"], job_id) if job_id else None
            )
        slot_of = {fid: slot for slot, fid in stored.slots.items() if fid is not None}
        context |= {
            "fields": fields,
            "mapping": stored,
            "slot_of": slot_of,
            "job_id": job_id,
            "running": running is not None,
            "syncable": integ.provider in CUSTOM_FIELDS_PROVIDERS,
        }
    return await render(request, "custom_fields.html", context)


async def _integration_from_form(request: web.Request) -> tuple[Any, m.IntegrationRef]:
    form = await form_of(request)
    wanted = int_arg(form.get("integration_id"))
    if wanted is None:
        raise web.HTTPNotFound(text="no such integration")
    _, integ = await _choose(request, wanted)
    if integ is None:
        raise web.HTTPNotFound(text="no such integration")
    return form, integ


async def sync(request: web.Request) -> web.Response:
    _, integ = await _integration_from_form(request)
    back = _back("/custom-fields", integ)
    if integ.provider not in CUSTOM_FIELDS_PROVIDERS:
        return redirect(request, back, "error", f"{integ.name} has no custom fields to discover")
    job = await _job(request, integ)
    if job is None:
        return redirect(request, back, "error", f"{integ.name} has no job to run the sync")
    result = await control.start_job(
        runs_of(request), job, trigger="manual", config={"custom_fields_sync": True}
    )
    if result.outcome == "already_running":
        return redirect(request, back, "error", f"{job['name']} is running; try when it ends")
    if result.outcome != "started":
        return redirect(request, back, "error", f"the sync did not start ({result.outcome})")
    return redirect(
        request,
        back,
        "ok",
        f"Custom fields sync queued (run {result.run_id}); the list fills when it finishes.",
    )


async def save_mapping(request: web.Request) -> web.Response:
    form, integ = await _integration_from_form(request)
    back = _back("/custom-fields", integ)
    body: dict[str, Any] = {}
    for slot in m.SLOTS:
        value = int_arg(form.get(slot))
        body[slot] = value
    apply = form.get("apply") == "on"
    job = await _job(request, integ) if apply else None
    if apply and job is None:
        return redirect(request, back, "error", f"{integ.name} has no job to re-transform")
    async with pool_of(request).acquire() as conn:
        fields = await m.list_fields(conn, integ)
        try:
            resolved, warnings = m.resolve_mapping(body, fields, integ.name)
        except m.MappingError as exc:
            return redirect(request, back, "error", f"Mapping not saved: {exc}")
        if job is not None and await conn.fetchval(SQL["runs.running_run_of_job"], job["id"]):
            return redirect(
                request,
                back,
                "error",
                f"{job['name']} is running, so the mapping was not saved. Save it when the run "
                "has finished, or without re-transform.",
            )
        await m.save_mapping(conn, integ, resolved)
    text = "Mapping saved."
    if job is not None:
        result = await control.start_job(
            runs_of(request), job, trigger="retransform", config={"retransform": True}
        )
        text += (
            f" Re-transform started (run {result.run_id})."
            if result.outcome == "started"
            else f" The re-transform did not start ({result.outcome}); save again later."
        )
    if warnings:
        text += " Note: " + "; ".join(warnings)
    return redirect(request, back, "ok", text)


async def _job(request: web.Request, integ: m.IntegrationRef) -> dict[str, Any] | None:
    async with pool_of(request).acquire() as conn:
        job_id = await m.job_of(conn, integ)
    return await control.get_job(pool_of(request), job_id) if job_id is not None else None


# -- statuses and work item types --------------------------------------------------------------


async def statuses_page(request: web.Request) -> web.Response:
    choices, integ = await _choose(request, int_arg(request.query.get("integration_id")))
    context: dict[str, Any] = {
        "choices": choices,
        "integ": integ,
        "categories": FLOW_CATEGORIES,
    }
    if integ is not None:
        async with pool_of(request).acquire() as conn:
            context["statuses"] = await m.list_statuses(conn, integ)
            context["wits"] = [
                dict(r)
                for r in await conn.fetch(SQL["ui.wits_of_integration"], integ.tenant_id, integ.id)
            ]
    return await render(request, "statuses.html", context)


async def save_statuses(request: web.Request) -> web.Response:
    form, integ = await _integration_from_form(request)
    back = _back("/statuses", integ)
    pool = pool_of(request)
    async with pool.acquire() as conn:
        statuses = await m.list_statuses(conn, integ)
    entries: list[dict[str, Any]] = []
    for status in statuses:
        chosen = form.get(f"flow_{status.id}")
        if chosen is None:
            continue
        wanted = chosen or None  # "" hands the status back to its Jira category's default
        current = status.flow_category if status.source == "user" else None
        if wanted != current:
            entries.append({"status_id": status.id, "flow_category": wanted})
    if not entries:
        return redirect(request, back, "info", "Nothing changed.")
    async with pool.acquire() as conn:
        try:
            changes = await m.save_status_changes(conn, integ, entries)
        except m.MappingError as exc:
            return redirect(request, back, "error", f"Not saved: {exc}")
        moved = [c.status.id for c in changes if c.moves]
        items = await m.items_through(conn, integ, moved)
    if len(items) <= INLINE_RECOMPUTE_LIMIT:
        done = await m.recompute_metrics(pool, integ, items)
        text = f"{len(changes)} status(es) saved; metrics of {done.items_updated} item(s) updated."
    else:
        _start_background(request.app, pool, integ, items)
        text = f"{len(changes)} status(es) saved; {len(items)} items are being recomputed."
    return redirect(request, back, "ok", text)
