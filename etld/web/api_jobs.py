"""The jobs JSON API under /app/etl/: list, inspect, run now, reset, pause/resume, history.

Every route is tenant-scoped. A tenant principal sees only its own rows, and a job
of another tenant answers 404 exactly like a job that does not exist. The internal
service principal acts for any tenant: list routes name it with `?tenant_id=`,
job routes take it from the job row.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from etld.jobs import control
from etld.jobs.runs import Runs
from etld.store.queries import SQL
from etld.web.auth import PRINCIPAL
from etld.web.errors import bad_request, conflict, invalid, not_found
from etld.web.keys import DAEMON

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
_JOB_ID = r"{job_id:\d{1,18}}"


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/app/etl/jobs", list_jobs)
    r.add_get(f"/app/etl/jobs/{_JOB_ID}", get_job)
    r.add_patch(f"/app/etl/jobs/{_JOB_ID}", patch_job)
    r.add_post(f"/app/etl/jobs/{_JOB_ID}/run", run_job)
    r.add_put(f"/app/etl/jobs/{_JOB_ID}/status", put_status)
    r.add_get(f"/app/etl/jobs/{_JOB_ID}/runs", list_runs)
    r.add_get("/app/etl/notifications", list_notifications)


# -- handlers ----------------------------------------------------------------------------


async def list_jobs(request: web.Request) -> web.Response:
    tenant_id = await _listing_tenant(request)
    async with _pool(request).acquire() as conn:
        rows = await conn.fetch(SQL["api.jobs_of_tenant"], tenant_id)
    return _json({"tenant_id": tenant_id, "jobs": [job_json(r) for r in rows]})


async def get_job(request: web.Request) -> web.Response:
    async with _pool(request).acquire() as conn:
        row = await conn.fetchrow(SQL["api.job"], int(request.match_info["job_id"]))
    if row is None:
        raise not_found("no such job")
    request[PRINCIPAL].require_owner(row["tenant_id"], "no such job")
    return _json(job_json(row))


async def run_job(request: web.Request) -> web.Response:
    job = await _owned_job(request)
    body = await _json_body(request, required=False)
    full_sync = body.get("full_sync", False)
    if not isinstance(full_sync, bool):
        raise invalid("full_sync must be true or false")
    try:
        result = await control.run_now(_runs(request), job, full_sync=full_sync)
    except control.JobConflict as exc:
        raise conflict(str(exc)) from exc
    if result.outcome == "failed":
        raise invalid("the job could not start; its last run says why")
    return _json({"job_id": job["id"], "run_id": result.run_id, "outcome": result.outcome}, 202)


async def put_status(request: web.Request) -> web.Response:
    job = await _owned_job(request)
    body = await _json_body(request)
    status = body.get("status")
    if status not in control.RESETTABLE:
        raise invalid(f"status must be one of {', '.join(control.RESETTABLE)}")
    try:
        await control.reset_status(_runs(request), job, status)
    except control.JobConflict as exc:
        raise conflict(str(exc)) from exc
    return _json(await _job_view(request, job["id"]))


async def patch_job(request: web.Request) -> web.Response:
    job = await _owned_job(request)
    body = await _json_body(request)
    unknown = set(body) - {"active"}
    if unknown:
        raise invalid(f"unknown field(s): {', '.join(sorted(unknown))}")
    active = body.get("active")
    if not isinstance(active, bool):
        raise invalid("active must be true or false")
    await control.set_active(_pool(request), job["id"], active)
    return _json(await _job_view(request, job["id"]))


async def list_runs(request: web.Request) -> web.Response:
    job_id = await _owned_job_id(request)
    limit, offset = _page(request)
    async with _pool(request).acquire() as conn:
        rows = await conn.fetch(SQL["jobs.runs_of_job"], job_id, limit, offset)
    runs = [run_json(r) for r in rows]
    return _json({"job_id": job_id, "runs": runs, "limit": limit, "offset": offset})


async def list_notifications(request: web.Request) -> web.Response:
    tenant_id = await _listing_tenant(request)
    limit, offset = _page(request)
    async with _pool(request).acquire() as conn:
        rows = await conn.fetch(SQL["notifications.list_for_tenant"], tenant_id, limit, offset)
    items = [_plain(dict(r)) for r in rows]
    return _json({"tenant_id": tenant_id, "notifications": items, "limit": limit, "offset": offset})


# -- shapes ------------------------------------------------------------------------------


def job_json(row: asyncpg.Record) -> dict[str, Any]:
    last_run = None
    if row["last_run_id"] is not None:
        last_run = {
            "id": row["last_run_id"],
            "trigger": row["last_run_trigger"],
            "outcome": row["last_run_outcome"],
            "started_at": _iso(row["last_run_started_at"]),
            "finished_at": _iso(row["last_run_finished_at"]),
            "error": row["last_run_error"],
            "alert": row["last_run_alert"],
        }
    return {
        "id": row["id"],
        "tenant_id": row["tenant_id"],
        "name": row["name"],
        "job_type": row["job_type"],
        "integration": {
            "id": row["integration_id"],
            "name": row["integration_name"],
            "provider": row["provider"],
            "active": row["integration_active"],
        },
        "status": row["status"],
        "active": row["active"],
        "next_run": _iso(row["next_run"]),
        "last_sync_date": _iso(row["last_sync_date"]),
        "job_order": row["job_order"],
        "last_run": last_run,
    }


def run_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "trigger": row["trigger"],
        "full_sync": row["full_sync"],
        "outcome": row["outcome"],
        "started_at": _iso(row["started_at"]),
        "finished_at": _iso(row["finished_at"]),
        "duration_seconds": round(float(row["duration_seconds"]), 3),
        "records": row["records"],
        "api_calls": row["api_calls"],
        "dead_letters": row["dead_letters"],
        "errors": row["errors"],
        "peak_memory_bytes": row["peak_memory_bytes"],
        "error": row["error"],
        "alert": row["alert"],
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _iso(v) if isinstance(v, datetime) else v for k, v in row.items()}


def _json(data: Any, status: int = 200) -> web.Response:
    body = orjson.dumps(data, default=_default)
    return web.Response(body=body, status=status, content_type="application/json")


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


# -- request helpers ---------------------------------------------------------------------


def _pool(request: web.Request) -> asyncpg.Pool:
    pool = request.app[DAEMON].pool
    assert pool is not None, "the web app runs only after the pool is up"
    return pool


def _runs(request: web.Request) -> Runs:
    runs: Runs = request.app[DAEMON].services["runs"]
    return runs


def _int_query(request: web.Request, name: str) -> int | None:
    text = request.query.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise bad_request(f"{name} must be an integer") from None


def _page(request: web.Request) -> tuple[int, int]:
    limit = _int_query(request, "limit")
    limit = DEFAULT_LIMIT if limit is None else limit
    offset = _int_query(request, "offset") or 0
    if not 1 <= limit <= MAX_LIMIT:
        raise bad_request(f"limit must be between 1 and {MAX_LIMIT}")
    if not 0 <= offset <= 2**31 - 1:
        raise bad_request("offset must be a non-negative integer")
    return limit, offset


async def _listing_tenant(request: web.Request) -> int:
    """The tenant a list route is about: the caller's own, or `tenant_id` for the service."""
    principal = request[PRINCIPAL]
    asked = _int_query(request, "tenant_id")
    if principal.tenant_id is not None:
        if asked is not None and asked != principal.tenant_id:
            raise not_found("no such tenant")
        return principal.tenant_id
    if asked is None:
        raise bad_request("tenant_id is required")
    if not 1 <= asked <= 2**63 - 1:
        raise not_found("no such tenant")
    async with _pool(request).acquire() as conn:
        if not await conn.fetchval(SQL["api.tenant_exists"], asked):
            raise not_found("no such tenant")
    return asked


async def _owned_job(request: web.Request) -> dict[str, Any]:
    """The job row (as `control` expects it) if the caller may see it, else 404."""
    job = await control.get_job(_pool(request), int(request.match_info["job_id"]))
    if job is None:
        raise not_found("no such job")
    request[PRINCIPAL].require_owner(job["tenant_id"], "no such job")
    return job


async def _owned_job_id(request: web.Request) -> int:
    job = await _owned_job(request)
    return int(job["id"])


async def _job_view(request: web.Request, job_id: int) -> dict[str, Any]:
    async with _pool(request).acquire() as conn:
        row = await conn.fetchrow(SQL["api.job"], job_id)
    if row is None:
        raise not_found("no such job")
    return job_json(row)


async def _json_body(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    raw = await request.read()  # over web.max_body_bytes aiohttp raises 413 here
    if not raw.strip():
        if required:
            raise bad_request("a JSON body is required")
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    return body
