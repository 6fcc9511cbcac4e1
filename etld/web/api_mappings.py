"""The mappings JSON API under /app/etl/: discovered custom fields, the custom field
mapping, the manual custom fields sync, and status → flow category mappings.

Every route names an integration (`integration_id`); one of another tenant answers 404
like one that does not exist. Refused mappings answer 422 with every problem in the
message. A saved custom field mapping starts a re-transform run (unless `"apply": false`)
so columns follow it from the stored pages; a saved status mapping recomputes the metrics
of the affected work items from their changelogs, in the request when they are few, else
in a background task. Neither calls the source.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Final

import asyncpg
import orjson
from aiohttp import web

from etld import mappings as m
from etld.jobs import control
from etld.jobs.runs import Runs
from etld.logs import get_logger
from etld.store.queries import SQL
from etld.web.auth import PRINCIPAL
from etld.web.errors import bad_request, conflict, invalid, not_found
from etld.web.keys import DAEMON

log = get_logger(__name__)

# Up to this many affected work items a status remap is recomputed within the request.
INLINE_RECOMPUTE_LIMIT: Final = 5_000
REMAP_TASKS: web.AppKey[set[asyncio.Task[None]]] = web.AppKey("remap_tasks", set)
_CUSTOM_FIELDS_PROVIDERS: Final = frozenset({"jira"})


def add_routes(app: web.Application) -> None:
    app[REMAP_TASKS] = set()
    app.on_cleanup.append(_stop_remaps)
    r = app.router
    r.add_get("/app/etl/custom-fields", list_custom_fields)
    r.add_post("/app/etl/custom-fields/sync", sync_custom_fields)
    r.add_get("/app/etl/custom-fields/mapping", get_mapping)
    r.add_put("/app/etl/custom-fields/mapping", put_mapping)
    r.add_get("/app/etl/status-mappings", list_status_mappings)
    r.add_put("/app/etl/status-mappings", put_status_mappings)


# -- custom fields -----------------------------------------------------------------------


async def list_custom_fields(request: web.Request) -> web.Response:
    integ = await _integration(request, _query_id(request))
    async with _pool(request).acquire() as conn:
        fields = await m.list_fields(conn, integ)
        stored = await m.read_mapping(conn, integ)
    slot_of = {fid: slot for slot, fid in stored.slots.items() if fid is not None}
    items = [
        {
            **f.brief(),
            "operations": f.operations,
            "active": f.active,
            "slot": slot_of.get(f.id),
            "last_updated_at": f.last_updated_at.isoformat(),
        }
        for f in fields
    ]
    return _json({**_integration_json(integ), "fields": items})


async def sync_custom_fields(request: web.Request) -> web.Response:
    body = await _json_body(request)
    integ = await _integration(request, _body_id(body))
    _no_unknown(body, {"integration_id"})
    if integ.provider not in _CUSTOM_FIELDS_PROVIDERS:
        raise invalid(f"integration {integ.name} ({integ.provider}) has no custom fields to sync")
    job = await _job(request, integ)
    result = await control.start_job(
        _runs(request), job, trigger="manual", config={"custom_fields_sync": True}
    )
    return _started(integ, job, result, "custom fields sync")


async def get_mapping(request: web.Request) -> web.Response:
    integ = await _integration(request, _query_id(request))
    async with _pool(request).acquire() as conn:
        return _json(await _mapping_view(conn, integ))


async def put_mapping(request: web.Request) -> web.Response:
    body = await _json_body(request)
    integ = await _integration(request, _body_id(body))
    extra = m.unknown_keys(body, {"integration_id", "apply"})
    if extra:
        raise invalid(
            f"unknown slot(s): {', '.join(extra)}; slots are team, code_changed, story_points "
            "and custom_field_01 to custom_field_20"
        )
    apply = body.get("apply", True)
    if not isinstance(apply, bool):
        raise invalid("apply must be true or false")
    job = await _job(request, integ) if apply else None
    async with _pool(request).acquire() as conn:
        fields = await m.list_fields(conn, integ)
        try:
            resolved, warnings = m.resolve_mapping(body, fields, integ.name)
        except m.MappingError as exc:
            raise invalid(str(exc)) from exc
        if job is not None and await conn.fetchval(SQL["runs.running_run_of_job"], job["id"]):
            # Checked before saving: the running sync would load part of its pages under
            # the old mapping and part under the new one.
            raise conflict(
                f"job {job['name']} is running; the mapping was not changed. Save it again "
                "when the run has finished, or with apply=false"
            )
        await m.save_mapping(conn, integ, resolved)
        view = await _mapping_view(conn, integ)
    view["warnings"] = warnings
    if job is None:
        return _json({**view, "retransform": None})
    result = await control.start_job(
        _runs(request), job, trigger="retransform", config={"retransform": True}
    )
    if result.outcome == "already_running":
        raise conflict(
            f"the mapping was saved, but job {job['name']} started meanwhile; its pages "
            "may follow either mapping, so save the mapping again when it has finished"
        )
    view["retransform"] = {"job_id": job["id"], "run_id": result.run_id, "outcome": result.outcome}
    return _json(view, 202)


async def _mapping_view(conn: asyncpg.Connection, integ: m.IntegrationRef) -> dict[str, Any]:
    stored = await m.read_mapping(conn, integ)
    fields = {f.id: f for f in await m.list_fields(conn, integ)}
    slots: dict[str, Any] = {}
    for slot, fid in stored.slots.items():
        field = fields.get(fid) if fid is not None else None
        slots[slot] = field.brief() if field is not None else None
    return {
        **_integration_json(integ),
        "configured": stored.configured,
        "active": stored.active,
        "last_updated_at": _iso(stored.updated_at),
        "mapping": slots,
    }


# -- status mappings -----------------------------------------------------------------------


async def list_status_mappings(request: web.Request) -> web.Response:
    integ = await _integration(request, _query_id(request))
    async with _pool(request).acquire() as conn:
        statuses = await m.list_statuses(conn, integ)
    return _json({**_integration_json(integ), "statuses": [_status_json(s) for s in statuses]})


async def put_status_mappings(request: web.Request) -> web.Response:
    body = await _json_body(request)
    integ = await _integration(request, _body_id(body))
    _no_unknown(body, {"integration_id", "mappings"})
    pool = _pool(request)
    async with pool.acquire() as conn:
        try:
            changes = await m.save_status_changes(conn, integ, body.get("mappings"))
        except m.MappingError as exc:
            raise invalid(str(exc)) from exc
        moved = [c.status.id for c in changes if c.moves]
        items = await m.items_through(conn, integ, moved)
        statuses = await m.list_statuses(conn, integ)
    summary: dict[str, Any] = {
        "statuses_changed": len(changes),
        "statuses_moved": len(moved),
        "items_to_recompute": len(items),
    }
    status = 200
    if len(items) <= INLINE_RECOMPUTE_LIMIT:
        done = await m.recompute_metrics(pool, integ, items)
        summary |= {
            "mode": "inline",
            "items_recomputed": done.items_recomputed,
            "items_updated": done.items_updated,
        }
    else:
        _start_background(request.app, pool, integ, items)
        summary["mode"] = "background"
        status = 202
    return _json(
        {
            **_integration_json(integ),
            "recompute": summary,
            "statuses": [_status_json(s) for s in statuses],
        },
        status,
    )


def _start_background(
    app: web.Application, pool: asyncpg.Pool, integ: m.IntegrationRef, items: list[int]
) -> None:
    async def work() -> None:
        try:
            await m.recompute_metrics(pool, integ, items)
        except asyncio.CancelledError:
            log.warning(
                "status remap interrupted; save the status mapping again to finish it",
                integration_id=integ.id,
            )
            raise
        except Exception:
            log.exception("status remap failed", integration_id=integ.id)

    task = asyncio.create_task(work(), name=f"status-remap-{integ.id}")
    tasks = app[REMAP_TASKS]
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def _stop_remaps(app: web.Application) -> None:
    """On shutdown: let running recomputes finish within the grace period, then cancel."""
    running = app[REMAP_TASKS]
    tasks = set(running)
    if not tasks:
        return
    grace = app[DAEMON].config.daemon.grace_period
    _, pending = await asyncio.wait(tasks, timeout=grace)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def _status_json(s: m.StatusRow) -> dict[str, Any]:
    return {
        "status_id": s.id,
        "external_id": s.external_id,
        "name": s.name,
        "jira_category": s.category,
        "flow_category": s.flow_category,
        "source": s.source,
        "updated_at": _iso(s.updated_at),
    }


# -- helpers ---------------------------------------------------------------------------------


def _pool(request: web.Request) -> asyncpg.Pool:
    pool = request.app[DAEMON].pool
    assert pool is not None, "the web app runs only after the pool is up"
    return pool


def _runs(request: web.Request) -> Runs:
    runs: Runs = request.app[DAEMON].services["runs"]
    return runs


def _valid_id(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 2**63 - 1:
        return value
    return None


def _query_id(request: web.Request) -> int:
    text = request.query.get("integration_id")
    if not text:
        raise bad_request("integration_id is required")
    try:
        value = int(text)
    except ValueError:
        raise bad_request("integration_id must be an integer") from None
    checked = _valid_id(value)
    if checked is None:
        raise not_found("no such integration")
    return checked


def _body_id(body: dict[str, Any]) -> int:
    if "integration_id" not in body:
        raise invalid("integration_id is required")
    checked = _valid_id(body["integration_id"])
    if checked is None:
        raise invalid("integration_id must be a positive integer")
    return checked


async def _integration(request: web.Request, integration_id: int) -> m.IntegrationRef:
    async with _pool(request).acquire() as conn:
        integ = await m.get_integration(conn, integration_id)
    if integ is None:
        raise not_found("no such integration")
    request[PRINCIPAL].require_owner(integ.tenant_id, "no such integration")
    return integ


async def _job(request: web.Request, integ: m.IntegrationRef) -> dict[str, Any]:
    pool = _pool(request)
    async with pool.acquire() as conn:
        job_id = await m.job_of(conn, integ)
    job = await control.get_job(pool, job_id) if job_id is not None else None
    if job is None:
        raise invalid(f"integration {integ.name} has no job to run (or re-transform)")
    return job


def _started(
    integ: m.IntegrationRef, job: dict[str, Any], result: control.StartResult, what: str
) -> web.Response:
    if result.outcome == "already_running":
        raise conflict(f"job {job['name']} is already running; start the {what} when it ends")
    if result.outcome == "failed":
        raise invalid("the job could not start; its last run says why")
    data = {
        **_integration_json(integ),
        "job_id": job["id"],
        "run_id": result.run_id,
        "outcome": result.outcome,
    }
    return _json(data, 202)


def _integration_json(integ: m.IntegrationRef) -> dict[str, Any]:
    return {"integration_id": integ.id, "integration": integ.name}


def _no_unknown(body: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise invalid(f"unknown field(s): {', '.join(extra)}")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()  # over web.max_body_bytes aiohttp raises 413 here
    if not raw.strip():
        raise bad_request("a JSON body is required")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    return body
