"""JQL evaluation and `nextPageToken` paging over a simulated site.

Results are sorted once per (query, site version) and cached, so paging through 100,000 issues
costs a bisect per page. The page token is a keyset cursor (the sort key of the last issue
served), not an offset: deleting or touching issues between pages never makes the next page skip
an issue, while an issue whose `updated` moved past the cursor shows up again later, as the
eventual consistency of Jira's search allows.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

from etld.simulator.jira_data import JiraSite
from etld.simulator.jira_history import IssueRecord
from etld.simulator.jira_jql import BoolOp, Clause, Condition, JqlError, Query, parse_jql

Predicate = Callable[[IssueRecord], bool]
SortKey = tuple[int, ...]
_CACHE_ENTRIES = 8
# Without ORDER BY the simulator lists the newest issues first.
_DEFAULT_ORDER = (("id", True),)


@dataclass(frozen=True, slots=True)
class Page:
    records: list[IssueRecord]
    next_token: str | None


@dataclass(slots=True)
class _Result:
    version: int
    keys: list[SortKey]
    records: list[IssueRecord]


class SearchEngine:
    """Runs JQL against one site; keeps the last few sorted results."""

    def __init__(self, site: JiraSite) -> None:
        self.site = site
        self._cache: dict[tuple[str, str], _Result] = {}

    def parse(self, jql: str) -> Query:
        return parse_jql(jql, tz=self.site.tz, now_ms=int(time.time() * 1000))

    def count(self, jql: str) -> int:
        return len(self._result(jql, require_bound=False).records)

    def page(self, jql: str, max_results: int, token: str | None) -> Page:
        result = self._result(jql, require_bound=True)
        start = 0
        if token:
            start = bisect.bisect_right(result.keys, _decode_token(token, jql))
        end = start + max_results
        records = result.records[start:end]
        next_token = None
        if end < len(result.records) and records:
            next_token = _encode_token(jql, result.keys[end - 1])
        return Page(records, next_token)

    def _result(self, jql: str, *, require_bound: bool) -> _Result:
        cache_key = (jql, self.site.timezone)  # dates in the query are read in the site's zone
        cached = self._cache.get(cache_key)
        if cached is not None and cached.version == self.site.version:
            return cached
        query = self.parse(jql)
        if query.where is None and require_bound:
            raise JqlError(
                "Unbounded JQL queries are not allowed here. "
                "Please add a search restriction to your query."
            )
        records = self._matches(query.where)
        sort_key = _sort_key(self.site, query.order or _DEFAULT_ORDER)
        records.sort(key=sort_key)
        result = _Result(self.site.version, [sort_key(r) for r in records], records)
        if len(self._cache) >= _CACHE_ENTRIES:
            self._cache.pop(next(iter(self._cache)))
        self._cache[cache_key] = result
        return result

    def _matches(self, where: Condition | None) -> list[IssueRecord]:
        candidates: Sequence[IssueRecord] = self.site.records()
        narrowed = _lookup_candidates(self.site, where)
        if narrowed is not None:
            candidates = narrowed
        predicate = _compile(self.site, where) if where is not None else None
        return [r for r in candidates if not r.deleted and (predicate is None or predicate(r))]


def _lookup_candidates(site: JiraSite, where: Condition | None) -> list[IssueRecord] | None:
    """For `key in (...)`/`id = ...` at the top level, the few issues named instead of a scan."""
    clauses = [where] if isinstance(where, Clause) else []
    if isinstance(where, BoolOp) and where.op == "and":
        clauses = [p for p in where.parts if isinstance(p, Clause)]
    for clause in clauses:
        if clause.field in ("key", "id") and clause.op in ("=", "in"):
            recs = {r.n: r for r in _named(site, clause)}
            return [recs[n] for n in sorted(recs)]
    return None


def _named(site: JiraSite, clause: Clause) -> list[IssueRecord]:
    out = []
    for value in clause.values:
        rec = site.find(str(value))
        if rec is None:
            if clause.field == "key":
                raise JqlError(f"An issue with key '{value}' does not exist for field 'key'.")
            if not str(value).isdigit():
                raise JqlError(f"The value '{value}' is not a valid issue id for field 'id'.")
            continue  # an unknown numeric id simply matches nothing
        out.append(rec)
    return out


def _compile(site: JiraSite, cond: Condition) -> Predicate:
    if isinstance(cond, BoolOp):
        parts = [_compile(site, p) for p in cond.parts]
        if cond.op == "and":
            return lambda r: all(p(r) for p in parts)
        if cond.op == "or":
            return lambda r: any(p(r) for p in parts)
        inner = parts[0]
        return lambda r: not inner(r)
    negate = cond.op in ("!=", "not in")
    if cond.field in ("updated", "created"):
        return _date_predicate(cond)
    if cond.field == "project":
        wanted = _project_indexes(site, cond.values)
        return lambda r: (r.project in wanted) != negate
    if cond.field == "issuetype":
        types = _issue_type_ids(site, cond.values)
        return lambda r: (r.itype in types) != negate
    ns = {r.n for r in _named(site, cond)}
    return lambda r: (r.n in ns) != negate


def _date_predicate(cond: Clause) -> Predicate:
    value = int(cond.values[0])
    attr = cond.field
    compare: dict[str, Callable[[int], bool]] = {
        ">": lambda t: t > value,
        ">=": lambda t: t >= value,
        "<": lambda t: t < value,
        "<=": lambda t: t <= value,
        # Equality is at the literal's resolution: the whole minute.
        "=": lambda t: value <= t < value + 60_000,
        "!=": lambda t: not value <= t < value + 60_000,
    }
    test = compare[cond.op]
    if attr == "updated":
        return lambda r: test(r.updated)
    return lambda r: test(r.created)


def _project_indexes(site: JiraSite, values: tuple[str | int, ...]) -> set[int]:
    out = set()
    for value in values:
        text = str(value)
        for i, project in enumerate(site.projects):
            if (
                text.upper() == project.key
                or text == project.id
                or text.lower() == project.name.lower()
            ):
                out.add(i)
                break
        else:
            raise JqlError(f"The value '{text}' does not exist for the field 'project'.")
    return out


def _issue_type_ids(site: JiraSite, values: tuple[str | int, ...]) -> set[str]:
    out = set()
    for value in values:
        text = str(value)
        found = {
            t.id for t in site.issue_types if text in (t.id,) or text.lower() == t.name.lower()
        }
        if not found:
            raise JqlError(f"The value '{text}' does not exist for the field 'issuetype'.")
        out |= found
    return out


def _sort_key(
    site: JiraSite, order: tuple[tuple[str, bool], ...]
) -> Callable[[IssueRecord], SortKey]:
    ranks = {
        i: rank
        for rank, (i, _) in enumerate(sorted(enumerate(site.projects), key=lambda x: x[1].key))
    }
    fields = tuple((field, -1 if desc else 1) for field, desc in order)

    def key(r: IssueRecord) -> SortKey:
        out: list[int] = []
        for field, sign in fields:
            if field == "updated":
                out.append(sign * r.updated)
            elif field == "created":
                out.append(sign * r.created)
            elif field == "key":
                out += (sign * ranks[r.project], sign * r.number)
            else:
                out.append(sign * r.n)
        out.append(r.n)  # a unique tiebreaker makes the keyset cursor exact
        return tuple(out)

    return key


def _fingerprint(jql: str) -> int:
    return zlib.crc32(jql.encode())


def _encode_token(jql: str, key: SortKey) -> str:
    raw = orjson.dumps([_fingerprint(jql), *key])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, jql: str) -> SortKey:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        values = orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError) as exc:
        raise JqlError("The nextPageToken is invalid or has expired.") from exc
    if not isinstance(values, list) or not values or values[0] != _fingerprint(jql):
        raise JqlError("The nextPageToken does not belong to this query.")
    if not all(isinstance(v, int) for v in values[1:]):
        raise JqlError("The nextPageToken is invalid or has expired.")
    return tuple(values[1:])
