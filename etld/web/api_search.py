"""Semantic search over the JSON API: `GET /app/etl/search?q=&source_type=&limit=`.

The tenant is the caller's own; the internal service principal names it with
`?tenant_id=`, as on the other list routes. Answers 503 when embeddings are off or the
vector store is held by another process.
"""

from __future__ import annotations

from aiohttp import web

from etld.vectors.search import MAX_LIMIT, search
from etld.vectors.service import VectorServices, VectorsUnavailable
from etld.web.api_jobs import _int_query, _json, _listing_tenant, _pool
from etld.web.errors import ApiError, bad_request
from etld.web.keys import DAEMON

DEFAULT_LIMIT = 10
MAX_QUERY_CHARS = 2000


def add_routes(app: web.Application) -> None:
    app.router.add_get("/app/etl/search", search_items)


async def search_items(request: web.Request) -> web.Response:
    tenant_id = await _listing_tenant(request)
    text = request.query.get("q", "").strip()
    if not text:
        raise bad_request("q is required")
    if len(text) > MAX_QUERY_CHARS:
        raise bad_request(f"q must be at most {MAX_QUERY_CHARS} characters")
    limit = _int_query(request, "limit")
    limit = DEFAULT_LIMIT if limit is None else limit
    if not 1 <= limit <= MAX_LIMIT:
        raise bad_request(f"limit must be between 1 and {MAX_LIMIT}")
    source_type = request.query.get("source_type") or None
    if source_type is not None:
        source_type = (
            source_type.upper() if source_type.lower() in ("jira", "github") else source_type
        )
    vectors: VectorServices | None = request.app[DAEMON].services.get("vectors")
    if vectors is None:
        raise ApiError(503, "semantic search is off (embeddings.enabled = false)")
    try:
        embedder, store = vectors.parts()
    except VectorsUnavailable as exc:
        raise ApiError(503, f"semantic search is unavailable: {exc}") from None
    hits = await search(_pool(request), store, embedder, tenant_id, text, source_type, limit)
    return _json(
        {
            "tenant_id": tenant_id,
            "query": text,
            "source_type": source_type,
            "model": embedder.model_id,
            "variant": embedder.variant,
            "results": [h.as_json() for h in hits],
        }
    )
