"""The queues JSON API under /app/etl/: queue health, dead letters, restarting workers.

Queue figures are global (every tenant shares the tier queues), so any caller may
read them; the dead-letter counts beside them are the caller's own. Dead letters
are tenant-scoped like jobs: a tenant sees only its rows, another tenant's id
answers 404 as if it did not exist, and bulk actions never reach other tenants'
rows. The internal service principal acts for every tenant, or for one named with
`?tenant_id=`. Only the service principal sees tracebacks: they name server files.

Requeue and purge go through `etld.dlq`, the library behind `etld dlq`; the API
leaves the `etl.failed` copies alone (they expire after 24 hours, and cannot be
selected by tenant). Worker restarts go through `etl.control` like
`etld workers restart`, so they reach every daemon, and answer what each said.
"""

from __future__ import annotations

import base64
from typing import Any

import aiormq
from aiohttp import web

from etld import dlq
from etld.broker.connection import BrokerConnection
from etld.broker.control import NoDaemons, daemon_identity, restart_workers
from etld.broker.health import queue_health
from etld.broker.publish import Publisher, PublishError
from etld.config import STAGES
from etld.logs import get_logger
from etld.store.queries import SQL
from etld.web.api_jobs import _int_query, _iso, _json, _json_body, _page, _plain, _pool
from etld.web.auth import PRINCIPAL, Principal
from etld.web.errors import ApiError, bad_request, conflict, invalid, not_found
from etld.web.keys import DAEMON

log = get_logger(__name__)

_DEAD_ID = r"{dead_id:\d{1,18}}"
MAX_IDS = 1000
DEFAULT_RESTART_TIMEOUT = 60.0
MAX_RESTART_TIMEOUT = 300.0
RESTARTABLE_STAGES = ("jobs", *STAGES)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/app/etl/queues", get_queues)
    r.add_get("/app/etl/dead-letters", list_dead_letters)
    # Registered before the {id} routes, though the id pattern takes digits only anyway.
    r.add_post("/app/etl/dead-letters/requeue", requeue_many)
    r.add_post("/app/etl/dead-letters/purge", purge_many)
    r.add_get(f"/app/etl/dead-letters/{_DEAD_ID}", get_dead_letter)
    r.add_post(f"/app/etl/dead-letters/{_DEAD_ID}/requeue", requeue_one)
    r.add_post("/app/etl/workers/restart", restart)


# -- queues and workers ----------------------------------------------------------------------


async def get_queues(request: web.Request) -> web.Response:
    """The reference's get_queue_health: every etld queue, and this daemon's workers."""
    daemon = request.app[DAEMON]
    tenant_id = await _scope(request)
    broker = _broker(request)
    try:
        stats = await queue_health(broker, daemon.config)
    except (ConnectionError, aiormq.exceptions.AMQPError) as exc:
        raise _unavailable(f"cannot read queue figures: {type(exc).__name__}") from exc
    async with _pool(request).acquire() as conn:
        dead = {
            r["queue"]: r["dead"]
            for r in await conn.fetch(SQL["api_queues.dead_counts"], tenant_id)
        }
    queues = [{**item.as_dict(), "dead_letters": dead.get(item.name, 0)} for item in stats]
    consumer_pool = daemon.services.get("consumer_pool")
    return _json(
        {
            "tenant_id": tenant_id,
            "source": stats[0].source if stats else "amqp",
            "queues": queues,
            "daemon": daemon_identity(),
            # None when this daemon does not run the workers role.
            "workers": consumer_pool.status() if consumer_pool is not None else None,
        }
    )


async def restart(request: web.Request) -> web.Response:
    """Restart consumers in every daemon; each answers once its in-flight work is done."""
    body = await _json_body(request, required=False)
    unknown = set(body) - {"stage", "tier", "timeout"}
    if unknown:
        raise invalid(f"unknown field(s): {', '.join(sorted(unknown))}")
    stage, tier = body.get("stage"), body.get("tier")
    if stage is not None and stage not in RESTARTABLE_STAGES:
        raise invalid(f"stage must be one of {', '.join(RESTARTABLE_STAGES)}")
    tiers = request.app[DAEMON].config.pipeline.tiers
    if tier is not None and tier not in tiers:
        raise invalid(f"tier must be one of {', '.join(tiers)}")
    timeout = body.get("timeout", DEFAULT_RESTART_TIMEOUT)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= MAX_RESTART_TIMEOUT
    ):
        raise invalid(f"timeout must be a number of seconds up to {MAX_RESTART_TIMEOUT:g}")
    principal = request[PRINCIPAL]
    log.info("workers restart requested", by=principal.name, tenant_id=principal.tenant_id,
             stage=stage, tier=tier)  # fmt: skip
    try:
        answers = await restart_workers(
            _broker(request), _publisher(request), stage=stage, tier=tier, timeout=float(timeout)
        )
    except NoDaemons as exc:
        raise _unavailable(str(exc)) from exc
    except (ConnectionError, aiormq.exceptions.AMQPError, PublishError) as exc:
        raise _unavailable(f"cannot reach the workers: {type(exc).__name__}") from exc
    ok = all(answer.get("ok") is True for answer in answers)
    return _json({"stage": stage, "tier": tier, "ok": ok, "daemons": answers})


# -- dead letters ------------------------------------------------------------------------------


async def list_dead_letters(request: web.Request) -> web.Response:
    tenant_id = await _scope(request)
    limit, offset = _page(request)
    queue = request.query.get("queue") or None
    status: str | None = request.query.get("status", "dead")
    if status == "all":
        status = None
    elif status not in dlq.STATUSES:
        raise bad_request(f"status must be one of {', '.join((*dlq.STATUSES, 'all'))}")
    async with _pool(request).acquire() as conn:
        rows = await conn.fetch(
            SQL["api_queues.dead_letters"], tenant_id, queue, status, limit, offset
        )
    return _json(
        {
            "tenant_id": tenant_id,
            "dead_letters": [_plain(dict(row)) for row in rows],
            "limit": limit,
            "offset": offset,
        }
    )


async def get_dead_letter(request: web.Request) -> web.Response:
    letter = await _owned_letter(request)
    return _json(letter_json(letter, with_traceback=request[PRINCIPAL].tenant_id is None))


async def requeue_one(request: web.Request) -> web.Response:
    letter = await _owned_letter(request)
    if letter.status != "dead":
        raise conflict(f"dead letter {letter.id} is {letter.status}, not dead")
    result = await dlq.requeue(_pool(request), _publisher(request), [letter.id])
    if letter.id in result.failed:
        raise _unavailable(f"the broker did not take the message: {result.failed[letter.id]}")
    if letter.id not in result.requeued:
        raise conflict(f"dead letter {letter.id} is being requeued or purged by someone else")
    _audit(request, "dead letter requeued", ids=[letter.id])
    refreshed = await dlq.get_dead_letter(_pool(request), letter.id)
    assert refreshed is not None  # rows are marked, never deleted
    return _json(letter_json(refreshed, with_traceback=request[PRINCIPAL].tenant_id is None))


async def requeue_many(request: web.Request) -> web.Response:
    tenant_id = await _scope(request)
    ids, queue = _selection(await _json_body(request))
    pool, publisher = _pool(request), _publisher(request)
    if ids is None:
        result = await dlq.requeue(pool, publisher, all_dead=True, tenant_id=tenant_id, queue=queue)
    else:
        owned = await _owned_ids(request, ids, tenant_id)
        result = await dlq.requeue(pool, publisher, owned) if owned else dlq.RequeueResult()
        # Ids of other tenants look exactly like ids that do not exist.
        result.skipped = [i for i in ids if i not in result.requeued and i not in result.failed]
    _audit(request, "dead letters requeued", ids=result.requeued, queue=queue)
    return _json(
        {
            "requeued": result.requeued,
            "skipped": result.skipped,
            "failed": [{"id": i, "error": error} for i, error in result.failed.items()],
        }
    )


async def purge_many(request: web.Request) -> web.Response:
    tenant_id = await _scope(request)
    ids, queue = _selection(await _json_body(request))
    pool = _pool(request)
    if ids is None:
        purged = await dlq.purge(pool, tenant_id=tenant_id, queue=queue)
        _audit(request, "dead letters purged", rows=purged.rows, queue=queue)
        return _json({"purged": purged.rows})
    async with pool.acquire() as conn:
        rows = await conn.fetch(SQL["api_queues.purge_ids"], ids, tenant_id)
    done = sorted(row["id"] for row in rows)
    _audit(request, "dead letters purged", ids=done)
    return _json({"purged": len(done), "ids": done, "skipped": [i for i in ids if i not in done]})


# -- shapes ------------------------------------------------------------------------------------


def letter_json(letter: dlq.DeadLetter, *, with_traceback: bool) -> dict[str, Any]:
    """One dead letter in full: the body as text when it is UTF-8, else base64."""
    try:
        body, encoding = letter.body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        body, encoding = base64.b64encode(letter.body).decode("ascii"), "base64"
    out: dict[str, Any] = {
        "id": letter.id,
        "tenant_id": letter.tenant_id,
        "job_id": letter.job_id,
        "run_id": letter.run_id,
        "queue": letter.queue,
        "routing_key": letter.routing_key,
        "stage": letter.stage,
        "message_type": letter.message_type,
        "reason": letter.reason,
        "error": letter.error,
        "attempts": letter.attempts,
        "status": letter.status,
        "requeue_count": letter.requeue_count,
        "created_at": _iso(letter.created_at),
        "requeued_at": _iso(letter.requeued_at),
        "headers": letter.headers,
        "body": body,
        "body_encoding": encoding,
    }
    if with_traceback:
        out["traceback"] = letter.traceback
    return out


# -- request helpers ---------------------------------------------------------------------------


def _unavailable(message: str) -> ApiError:
    return ApiError(503, message)


def _broker(request: web.Request) -> BrokerConnection:
    broker = request.app[DAEMON].broker
    if broker is None or not broker.connected:
        raise _unavailable("not connected to RabbitMQ")
    return broker


def _publisher(request: web.Request) -> Publisher:
    _broker(request)
    publisher: Publisher = request.app[DAEMON].services["publisher"]
    return publisher


async def _scope(request: web.Request) -> int | None:
    """The tenant a collection route is about: the caller's own; for the service key the
    `tenant_id` parameter, or None (every tenant) when it is absent."""
    principal: Principal = request[PRINCIPAL]
    asked = _int_query(request, "tenant_id")
    if principal.tenant_id is not None:
        if asked is not None and asked != principal.tenant_id:
            raise not_found("no such tenant")
        return principal.tenant_id
    if asked is None:
        return None
    if not 1 <= asked <= 2**63 - 1:
        raise not_found("no such tenant")
    async with _pool(request).acquire() as conn:
        if not await conn.fetchval(SQL["api.tenant_exists"], asked):
            raise not_found("no such tenant")
    return asked


async def _owned_letter(request: web.Request) -> dlq.DeadLetter:
    dead_id = int(request.match_info["dead_id"])
    letter = await dlq.get_dead_letter(_pool(request), dead_id)
    own = request[PRINCIPAL].tenant_id
    # Rows without a tenant (malformed messages) belong to the operator only.
    if letter is None or (own is not None and letter.tenant_id != own):
        raise not_found("no such dead letter")
    return letter


async def _owned_ids(request: web.Request, ids: list[int], tenant_id: int | None) -> list[int]:
    async with _pool(request).acquire() as conn:
        rows = await conn.fetch(SQL["api_queues.owned_ids"], ids, tenant_id)
    return [row["id"] for row in rows]


def _selection(body: dict[str, Any]) -> tuple[list[int] | None, str | None]:
    """`{"ids": [...]}` or `{"all": true}` (optionally with `"queue"`): ids, or None for all."""
    unknown = set(body) - {"ids", "all", "queue"}
    if unknown:
        raise invalid(f"unknown field(s): {', '.join(sorted(unknown))}")
    every = body.get("all", False)
    if not isinstance(every, bool):
        raise invalid("all must be true or false")
    queue = body.get("queue")
    if queue is not None and (not isinstance(queue, str) or not queue):
        raise invalid("queue must be a queue name")
    ids = body.get("ids")
    if (ids is None) == (not every):
        raise invalid('give either "ids" or "all": true')
    if ids is None:
        return None, queue
    if queue is not None:
        raise invalid('"queue" only narrows "all"')
    if (
        not isinstance(ids, list)
        or not 1 <= len(ids) <= MAX_IDS
        or not all(type(i) is int and 1 <= i <= 2**63 - 1 for i in ids)
    ):
        raise invalid(f"ids must be a list of 1 to {MAX_IDS} dead letter ids")
    return list(dict.fromkeys(ids)), None


def _audit(request: web.Request, event: str, **fields: Any) -> None:
    principal = request[PRINCIPAL]
    log.info(event, by=principal.name, via=principal.via, tenant_id=principal.tenant_id, **fields)
