"""The jobs dashboard (`/`), a job's run history (`/jobs/{id}`) and the job buttons.

The dashboard shows one card per job with its step x stage grid drawn from the status
JSON; `static/dashboard.js` keeps it live from the tenant's WebSocket feed. The buttons
are plain forms (run now, pause/resume, reset), so they work without scripts too.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from etld.broker.publish import PublishError
from etld.jobs import control
from etld.jobs.status import STAGES
from etld.store.queries import SQL
from etld.web.api_jobs import job_json, run_json
from etld.web.auth import PRINCIPAL
from etld.web.errors import not_found
from etld.web.ui.common import (
    form_of,
    page_links,
    paging,
    pool_of,
    redirect,
    render,
    runs_of,
    safe_next,
    tenant_of,
)

_JOB = r"{job_id:\d{1,18}}"


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/", dashboard)
    r.add_get(f"/jobs/{_JOB}", job_history)
    r.add_post(f"/jobs/{_JOB}/run", run_now)
    r.add_post(f"/jobs/{_JOB}/active", set_active)
    r.add_post(f"/jobs/{_JOB}/reset", reset)


def grid(status: Any) -> list[dict[str, Any]]:
    """The status JSON's steps in order, each with its three stage states."""
    steps = status.get("steps") if isinstance(status, dict) else None
    if not isinstance(steps, dict):
        return []
    rows = [
        {
            "name": name,
            "label": step.get("display_name") or name,
            "order": step.get("order", 0),
            "stages": {stage: str(step.get(stage, "idle")) for stage in STAGES},
        }
        for name, step in steps.items()
        if isinstance(step, dict)
    ]
    return sorted(rows, key=lambda row: (row["order"], row["name"]))


async def dashboard(request: web.Request) -> web.Response:
    tenant_id = tenant_of(request)
    async with pool_of(request).acquire() as conn:
        rows = await conn.fetch(SQL["api.jobs_of_tenant"], tenant_id)
    jobs = []
    for row in rows:
        job = job_json(row)
        job["grid"] = grid(job["status"])
        job["overall"] = (job["status"] or {}).get("overall", "NOT_STARTED")
        jobs.append(job)
    return await render(
        request, "dashboard.html", {"jobs": jobs, "tenant_id": tenant_id, "stages": STAGES}
    )


async def job_history(request: web.Request) -> web.Response:
    job = await _owned_job(request)
    limit, offset = paging(request, default=25)
    async with pool_of(request).acquire() as conn:
        row = await conn.fetchrow(SQL["api.job"], job["id"])
        runs = await conn.fetch(SQL["jobs.runs_of_job"], job["id"], limit, offset)
    view = job_json(row)
    view["grid"] = grid(view["status"])
    items = [run_json(r) for r in runs]
    return await render(
        request,
        "job_runs.html",
        {
            "job": view,
            "runs": items,
            "stages": STAGES,
            "pages": page_links(request, limit, offset, len(items)),
            "offset": offset,
        },
    )


async def run_now(request: web.Request) -> web.Response:
    job = await _owned_job(request)
    back = safe_next((await form_of(request)).get("back"))
    try:
        result = await control.run_now(runs_of(request), job)
    except control.JobConflict as exc:
        return redirect(request, back, "error", str(exc))
    except (PublishError, ConnectionError) as exc:
        return redirect(request, back, "error", f"RabbitMQ did not take the job: {exc}")
    if result.outcome == "failed":
        return redirect(request, back, "error", f"{job['name']} could not start; see its history")
    if result.outcome == "skipped":
        return redirect(request, back, "info", f"{job['name']} skipped: its integration is off")
    return redirect(request, back, "ok", f"{job['name']} started (run {result.run_id})")


async def set_active(request: web.Request) -> web.Response:
    job = await _owned_job(request)
    form = await form_of(request)
    active = form.get("active") == "true"
    await control.set_active(pool_of(request), job["id"], active)
    word = "resumed" if active else "paused"
    return redirect(request, safe_next(form.get("back")), "ok", f"{job['name']} {word}")


async def reset(request: web.Request) -> web.Response:
    job = await _owned_job(request)
    form = await form_of(request)
    back = safe_next(form.get("back"))
    status = form.get("status", "READY")
    if status not in control.RESETTABLE:
        return redirect(request, back, "error", f"cannot reset to {status}")
    try:
        await control.reset_status(runs_of(request), job, status)
    except control.JobConflict as exc:
        return redirect(request, back, "error", str(exc))
    return redirect(request, back, "ok", f"{job['name']} reset to {status}")


async def _owned_job(request: web.Request) -> dict[str, Any]:
    job = await control.get_job(pool_of(request), int(request.match_info["job_id"]))
    if job is None:
        raise not_found("no such job")
    request[PRINCIPAL].require_owner(job["tenant_id"], "no such job")
    return job
