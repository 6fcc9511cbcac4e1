"""The queues page (`/queues`): depth and consumers per queue and tier, this daemon's
workers, restarting workers, and the tenant's dead letters with requeue and purge.

The same library calls as the queues JSON API: `broker.health.queue_health`,
`broker.control.restart_workers` and `etld.dlq`. Dead letters are the tenant's own; an id
of another tenant answers 404.
"""

from __future__ import annotations

from typing import Any

import aiormq
from aiohttp import web

from etld import dlq
from etld.broker.control import NoDaemons, restart_workers
from etld.broker.health import queue_health
from etld.broker.publish import Publisher, PublishError
from etld.store.queries import SQL
from etld.web.api_queues import RESTARTABLE_STAGES
from etld.web.errors import not_found
from etld.web.keys import DAEMON
from etld.web.ui.common import (
    form_of,
    page_links,
    paging,
    pool_of,
    redirect,
    render,
    tenant_of,
)

_DEAD = r"{dead_id:\d{1,18}}"
STATUS_FILTERS = ("dead", "requeued", "purged", "all")


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/queues", queues_page)
    r.add_post("/queues/restart", restart)
    r.add_post("/dead-letters/requeue", requeue_all)
    r.add_post("/dead-letters/purge", purge_all)
    r.add_post(f"/dead-letters/{_DEAD}/requeue", requeue_one)


async def queues_page(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    tenant_id = tenant_of(request)
    queues: list[dict[str, Any]] = []
    queue_error = None
    broker = daemon.broker
    pool = pool_of(request)
    async with pool.acquire() as conn:
        dead = {
            r["queue"]: r["dead"]
            for r in await conn.fetch(SQL["api_queues.dead_counts"], tenant_id)
        }
    if broker is None or not broker.connected:
        queue_error = "RabbitMQ is unreachable, so queue figures are not available."
    else:
        try:
            stats = await queue_health(broker, daemon.config)
            queues = [{**s.as_dict(), "dead_letters": dead.get(s.name, 0)} for s in stats]
        except (ConnectionError, aiormq.exceptions.AMQPError) as exc:
            queue_error = f"Cannot read queue figures: {type(exc).__name__}"
    consumer_pool = daemon.services.get("consumer_pool")
    status = request.query.get("status", "dead")
    status = status if status in STATUS_FILTERS else "dead"
    limit, offset = paging(request)
    async with pool.acquire() as conn:
        letters = await conn.fetch(
            SQL["api_queues.dead_letters"],
            tenant_id,
            None,
            None if status == "all" else status,
            limit,
            offset,
        )
    return await render(
        request,
        "queues.html",
        {
            "queues": queues,
            "queue_error": queue_error,
            "workers": consumer_pool.status() if consumer_pool is not None else None,
            "stages": RESTARTABLE_STAGES,
            "tiers": daemon.config.pipeline.tiers,
            "letters": [dict(r) for r in letters],
            "status": status,
            "statuses": STATUS_FILTERS,
            "dead_total": sum(dead.values()),
            "pages": page_links(request, limit, offset, len(letters)),
        },
    )


async def restart(request: web.Request) -> web.Response:
    form = await form_of(request)
    daemon = request.app[DAEMON]
    stage = form.get("stage") or None
    tier = form.get("tier") or None
    if (stage is not None and stage not in RESTARTABLE_STAGES) or (
        tier is not None and tier not in daemon.config.pipeline.tiers
    ):
        return redirect(request, "/queues", "error", "Unknown stage or tier.")
    try:
        publisher = _publisher(request)
        assert daemon.broker is not None  # _publisher checked it
        answers = await restart_workers(
            daemon.broker, publisher, stage=stage, tier=tier, timeout=60.0
        )
    except NoDaemons as exc:
        return redirect(request, "/queues", "error", str(exc))
    except (ConnectionError, aiormq.exceptions.AMQPError, PublishError, RuntimeError) as exc:
        return redirect(request, "/queues", "error", f"Cannot reach the workers: {exc}")
    restarted = sum(len(a.get("restarted") or []) for a in answers)
    ok = all(a.get("ok") is True for a in answers)
    what = f"{stage or 'all'} workers" + (f" of tier {tier}" if tier else "")
    text = f"Restarted {what}: {restarted} consumer(s) in {len(answers)} daemon(s)."
    return redirect(request, "/queues", "ok" if ok else "error", text)


async def requeue_one(request: web.Request) -> web.Response:
    dead_id = int(request.match_info["dead_id"])
    letter = await dlq.get_dead_letter(pool_of(request), dead_id)
    if letter is None or letter.tenant_id != tenant_of(request):
        raise not_found("no such dead letter")
    if letter.status != "dead":
        return redirect(request, "/queues", "error", f"Dead letter {dead_id} is {letter.status}.")
    try:
        result = await dlq.requeue(pool_of(request), _publisher(request), [dead_id])
    except RuntimeError as exc:
        return redirect(request, "/queues", "error", str(exc))
    if dead_id in result.requeued:
        return redirect(
            request, "/queues", "ok", f"Dead letter {dead_id} requeued to {letter.queue}."
        )
    reason = result.failed.get(dead_id, "someone else is requeueing or purging it")
    return redirect(request, "/queues", "error", f"Dead letter {dead_id} not requeued: {reason}")


async def requeue_all(request: web.Request) -> web.Response:
    await form_of(request)
    try:
        result = await dlq.requeue(
            pool_of(request), _publisher(request), all_dead=True, tenant_id=tenant_of(request)
        )
    except RuntimeError as exc:
        return redirect(request, "/queues", "error", str(exc))
    text = f"{len(result.requeued)} dead letter(s) requeued"
    if result.failed:
        text += f", {len(result.failed)} failed (the broker did not take them)"
    return redirect(request, "/queues", "error" if result.failed else "ok", text + ".")


async def purge_all(request: web.Request) -> web.Response:
    await form_of(request)
    purged = await dlq.purge(pool_of(request), tenant_id=tenant_of(request))
    return redirect(request, "/queues", "ok", f"{purged.rows} dead letter(s) purged.")


def _publisher(request: web.Request) -> Publisher:
    daemon = request.app[DAEMON]
    if daemon.broker is None or not daemon.broker.connected:
        raise RuntimeError("RabbitMQ is unreachable; try again when it is back")
    publisher: Publisher = daemon.services["publisher"]
    return publisher
