"""A stream's extraction: its pages in order, each stored verbatim, the run checkpoint saved
after every page so a redelivered message continues where the last attempt stopped.

The checkpoint holds where the next request goes (page number, offset, cursor or URL), how
many pages are stored (pages are keyed by ordinal, so one stored twice is stored once), the
`since` value the run asks with and the highest incremental cursor seen. The next polling run
starts from that cursor only if this run finished: a failed run is read again from where it
started. Full syncs ignore the cursor.

URLs that paging hands us (a `Link` header, a next-URL field) must stay on the base URL's
origin: the credentials go to the configured host only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from yarl import URL

from etld.logs import get_logger
from etld.sources.base import ExtractOutput, StepContext
from etld.sources.http import ApiClient, ApiPage, MalformedResponse
from etld.sources.rest.client import last_state, load_checkpoint, rest_session, save_checkpoint
from etld.sources.rest.model import RestSettings, Stream, dig
from etld.workers.errors import Reject

log = get_logger(__name__)

Json = dict[str, Any]


def records_of(answer: Any, stream: Stream, what: str) -> list[Any]:
    """The records of one answer; MalformedResponse when the path holds no list."""
    found = dig(answer, stream.records)
    if not isinstance(found, list):
        where = stream.records or "the answer"
        raise MalformedResponse(f"{what}: {where} is not a list of records")
    return found


def _comparable(value: Any) -> tuple[int, float | str] | None:
    """Cursor values compare as numbers, as timestamps (naive ones read as UTC), else as text."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return (0, float(value))
    text = str(value)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return (2, text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (1, moment.timestamp())


def newest(current: Any, candidate: Any) -> Any:
    """The later of two cursor values (either may be None; mixed kinds keep the current)."""
    a, b = _comparable(current), _comparable(candidate)
    if b is None:
        return current
    if a is None:
        return candidate
    if a[0] != b[0]:
        return current
    return candidate if b[1] > a[1] else current  # type: ignore[operator]


class StreamScan:
    """One extraction of one stream, resumable from the run checkpoint."""

    def __init__(
        self, ctx: StepContext, settings: RestSettings, stream: Stream, out: ExtractOutput
    ) -> None:
        self.ctx = ctx
        self.settings = settings
        self.stream = stream
        self.out = out
        self.key = stream.step_name
        self.cp: Json = {}

    async def run(self) -> None:
        cp = await load_checkpoint(self.ctx.pool, self.ctx.run.run_id, self.key)
        self.cp = cp if cp is not None else await self._start()
        if self.cp["done"]:
            return
        async with rest_session(self.ctx, self.settings, self.out) as api:
            while not self.cp["done"]:
                await self._page(api)

    async def _start(self) -> Json:
        inc = self.stream.incremental
        since: Any = None
        if inc is not None:
            since = inc.initial
            previous = None if self.ctx.run.full_sync else await last_state(self.ctx, self.key)
            if previous and previous.get("field") == inc.field and previous.get("cursor"):
                since = previous["cursor"]
        pagination = self.stream.pagination
        start: Any = None
        if pagination.type == "page":
            start = pagination.start
        elif pagination.type == "offset":
            start = 0
        cp: Json = {
            "page": 0,
            "next": start,  # page number, offset, cursor or URL of the next request
            "since": since,
            "field": inc.field if inc is not None else None,
            "cursor": since,
            "done": False,
        }
        log.info("stream scan starts", run_id=self.ctx.run.run_id, stream=self.stream.name)
        await self._save(cp)
        return cp

    async def _save(self, cp: Json | None = None) -> None:
        value = cp if cp is not None else self.cp
        await save_checkpoint(self.ctx.pool, self.ctx.run.run_id, self.key, value)

    def _params(self) -> list[tuple[str, str | int]]:
        stream, pagination, cp = self.stream, self.stream.pagination, self.cp
        params: list[tuple[str, str | int]] = list(stream.params)
        if stream.incremental is not None and cp["since"] is not None:
            params.append((stream.incremental.param, str(cp["since"])))
        if pagination.size_param and pagination.size is not None:
            params.append((pagination.size_param, pagination.size))
        if pagination.type in ("page", "offset") or (
            pagination.type == "cursor" and cp["next"] is not None
        ):
            params.append((pagination.param, cp["next"]))
        return params

    async def _fetch(self, api: ApiClient) -> ApiPage:
        nxt = self.cp["next"]
        if self.stream.pagination.type in ("link", "next_url") and nxt is not None:
            return await api.get_page(str(nxt))
        return await api.get_page(self.stream.path, self._params())

    def _follow(self, api: ApiClient, answer: ApiPage, target: str) -> str:
        """An absolute URL for a next-page link, refused unless on the base URL's origin."""
        url = URL(answer.url).join(URL(target))
        if url.origin() != api.base.origin():
            raise Reject(
                f"REST stream {self.stream.name!r}: the next page is on another origin than "
                "the base URL; the credentials are not sent there"
            )
        return str(url)

    async def _page(self, api: ApiClient) -> None:
        cp, stream, pagination = self.cp, self.stream, self.stream.pagination
        answer = await self._fetch(api)
        what = f"REST stream {stream.name!r} page {cp['page']}"
        records = records_of(answer.data, stream, what)
        await self.out.store_page(
            stream.step_name, answer.data, f"p{cp['page']:06d}", item_count=len(records)
        )
        if stream.incremental is not None:
            for record in records:
                cp["cursor"] = newest(cp["cursor"], dig(record, stream.incremental.field))
        cp["page"] += 1
        cp["next"], more = self._next(api, answer, records)
        cp["done"] = not more
        if more and cp["page"] >= pagination.max_pages:
            log.warning(
                "stream stopped at max_pages", stream=stream.name, max_pages=pagination.max_pages
            )
            cp["done"] = True
        await self._save()

    def _next(self, api: ApiClient, answer: ApiPage, records: list[Any]) -> tuple[Any, bool]:
        """Where the next request goes, and whether there is one."""
        pagination, cp = self.stream.pagination, self.cp
        full = pagination.size is None or len(records) >= pagination.size
        if pagination.type == "page":
            return cp["next"] + 1, bool(records) and full
        if pagination.type == "offset":
            return cp["next"] + len(records), bool(records) and full
        if pagination.type == "cursor":
            token = dig(answer.data, pagination.cursor_field)
            more = bool(records) and token not in (None, "") and token != cp["next"]
            return token, more
        if pagination.type == "link":
            target = answer.links.get("next")
        elif pagination.type == "next_url":
            target = dig(answer.data, pagination.next_url_field)
            if target is not None and not isinstance(target, str):
                raise MalformedResponse(
                    f"REST stream {self.stream.name!r}: {pagination.next_url_field} is not a URL"
                )
        else:
            return None, False
        if not target:
            return None, False
        url = self._follow(api, answer, target)
        return url, url != answer.url
