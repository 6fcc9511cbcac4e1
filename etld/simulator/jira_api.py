"""Issue endpoints of the simulated Jira: JQL search, single issues, changelogs (paged, bulk),
approximate counts, dev-status pull requests, and the removed `/search` answering 410."""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import Any

import orjson
from aiohttp import web

from etld.simulator.jira_history import IssueRecord
from etld.simulator.jira_issue import parse_fields
from etld.simulator.jira_jql import JqlError
from etld.simulator.jira_render import API, field_name, field_schema
from etld.simulator.jira_web import (
    SEARCH,
    BadRequest,
    NotFound,
    base_of,
    error_response,
    int_param,
    json_response,
    list_param,
    renderer,
    site_of,
)

Json = dict[str, Any]
SEARCH_DEFAULT_MAX = 50
SEARCH_IDS_CAP = 5000  # when only ids are asked for
SEARCH_FIELDS_CAP = 100  # when fields or changelogs are asked for
CHANGELOG_CAP = 100
BULK_ISSUES_MAX = 1000
BULK_FIELDS_MAX = 10
BULK_HISTORIES_MAX = 10_000
_SEARCH_BODY_KEYS = frozenset(
    {
        "jql",
        "nextPageToken",
        "maxResults",
        "fields",
        "expand",
        "properties",
        "fieldsByKeys",
        "reconcileIssues",
        "failFast",
    }
)
_BULK_BODY_KEYS = frozenset({"issueIdsOrKeys", "fieldIds", "maxResults", "nextPageToken"})
_GITHUB_INSTANCE = {
    "singleInstance": True,
    "baseUrl": "https://github.com",
    "name": "GitHub",
    "typeName": "GitHub",
    "id": "github",
    "type": "github",
}


def _issue(request: web.Request) -> IssueRecord:
    wanted = request.match_info["issue"]
    rec = site_of(request).find(wanted)
    if rec is None:
        raise NotFound("Issue does not exist or you do not have permission to see it.")
    return rec


async def _json_body(request: web.Request, allowed: frozenset[str]) -> Json:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise BadRequest("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    unknown = sorted(set(body) - allowed)
    if unknown:
        # Jira rejects unknown properties, e.g. `startAt` sent to /search/jql by old clients.
        raise BadRequest(f'Unrecognized field "{unknown[0]}" in the request body.')
    return body


def _str_list(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise BadRequest(f"'{name}' must be a list of strings.")
    return [str(v) for v in value]


def _int_value(value: Any, name: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"'{name}' must be an integer.")
    return value


async def search_jql(request: web.Request) -> web.Response:
    if request.method == "POST":
        body = await _json_body(request, _SEARCH_BODY_KEYS)
        jql = body.get("jql") or ""
        token = body.get("nextPageToken")
        max_results = _int_value(body.get("maxResults"), "maxResults", SEARCH_DEFAULT_MAX)
        fields = _str_list(body.get("fields"), "fields")
        expand_raw = body.get("expand") or ""
        if not isinstance(expand_raw, str) or not isinstance(jql, str):
            raise BadRequest("'jql' and 'expand' must be strings.")
        if len(_str_list(body.get("reconcileIssues"), "reconcileIssues")) > 50:
            raise BadRequest("'reconcileIssues' accepts at most 50 issue ids.")
    else:
        jql = request.query.get("jql", "")
        token = request.query.get("nextPageToken")
        max_results = int_param(request, "maxResults", SEARCH_DEFAULT_MAX)
        fields = request.query.getall("fields", [])
        expand_raw = request.query.get("expand", "")
    if max_results < 1:
        raise BadRequest("'maxResults' must be greater than 0.")
    selection = parse_fields(fields, default_all=False)
    expand = {e.strip() for e in expand_raw.split(",") if e.strip()}
    light = selection.ids_only and "changelog" not in expand
    size = min(max_results, SEARCH_IDS_CAP if light else SEARCH_FIELDS_CAP)
    try:
        page = request.app[SEARCH].page(jql, size, token or None)
    except JqlError as exc:
        raise BadRequest(str(exc)) from None
    render = renderer(request)
    per_issue = expand - {"names", "schema"}  # search answers those once, at the top level
    issues = [render.issue(r, selection, per_issue, bare_id=True) for r in page.records]
    out: Json = {"issues": issues}
    if expand & {"names", "schema"}:
        seen = {fid for issue in issues for fid in issue.get("fields", {})}
        catalog = site_of(request).catalog
        if "names" in expand:
            out["names"] = {fid: field_name(catalog, fid) for fid in sorted(seen)}
        if "schema" in expand:
            out["schema"] = {fid: field_schema(catalog, fid) for fid in sorted(seen)}
    if page.next_token is not None:
        out["nextPageToken"] = page.next_token
    out["isLast"] = page.next_token is None
    return json_response(out)


async def approximate_count(request: web.Request) -> web.Response:
    body = await _json_body(request, frozenset({"jql"}))
    jql = body.get("jql") or ""
    if not isinstance(jql, str):
        raise BadRequest("'jql' must be a string.")
    try:
        return json_response({"count": request.app[SEARCH].count(jql)})
    except JqlError as exc:
        raise BadRequest(str(exc)) from None


async def removed_search(request: web.Request) -> web.Response:
    return error_response(
        410,
        "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
        "See https://developer.atlassian.com/changelog/#CHANGE-2046",
    )


async def issue_get(request: web.Request) -> web.Response:
    rec = _issue(request)
    selection = parse_fields(request.query.getall("fields", []), default_all=True)
    expand = set(list_param(request, "expand"))
    return json_response(renderer(request).issue(rec, selection, expand))


async def issue_changelog(request: web.Request) -> web.Response:
    rec = _issue(request)
    histories = site_of(request).state(rec).histories
    start = int_param(request, "startAt", 0)
    size = min(int_param(request, "maxResults", CHANGELOG_CAP, minimum=1), CHANGELOG_CAP)
    render = renderer(request)
    values = [render.history(h) for h in histories[start : start + size]]
    last = start + size >= len(histories)
    path = f"{base_of(request)}{API}/issue/{request.match_info['issue']}/changelog"
    out: Json = {
        "self": f"{path}?startAt={start}&maxResults={size}",
        "maxResults": size,
        "startAt": start,
        "total": len(histories),
        "isLast": last,
        "values": values,
    }
    if not last:
        out["nextPage"] = f"{path}?startAt={start + size}&maxResults={size}"
    return json_response(out)


async def bulk_changelog(request: web.Request) -> web.Response:
    body = await _json_body(request, _BULK_BODY_KEYS)
    wanted = _str_list(body.get("issueIdsOrKeys"), "issueIdsOrKeys")
    field_ids = _str_list(body.get("fieldIds"), "fieldIds")
    max_results = _int_value(body.get("maxResults"), "maxResults", 1000)
    if not wanted:
        raise BadRequest("At least one issue ID or key must be provided in 'issueIdsOrKeys'.")
    if len(wanted) > BULK_ISSUES_MAX:
        raise BadRequest(f"'issueIdsOrKeys' accepts at most {BULK_ISSUES_MAX} issue IDs or keys.")
    if len(field_ids) > BULK_FIELDS_MAX:
        raise BadRequest(f"'fieldIds' accepts at most {BULK_FIELDS_MAX} field IDs.")
    if not 1 <= max_results <= BULK_HISTORIES_MAX:
        raise BadRequest(f"'maxResults' must be between 1 and {BULK_HISTORIES_MAX}.")
    site = site_of(request)
    found = {r.n: r for r in (site.find(w) for w in wanted) if r is not None}
    records = [found[n] for n in sorted(found)]  # unknown and deleted issues are left out
    # The cursor names the issue to resume at, so issues deleted meanwhile do not shift it.
    fingerprint = zlib.crc32(",".join(wanted).encode())
    resume_id, offset = _bulk_cursor(body.get("nextPageToken"), fingerprint)
    position = next((i for i, r in enumerate(records) if r.issue_id >= resume_id), len(records))
    if position < len(records) and records[position].issue_id != resume_id:
        offset = 0
    only = frozenset(field_ids) if field_ids else None
    render = renderer(request)
    groups: list[Json] = []
    budget = max_results
    while position < len(records) and budget > 0:
        rec = records[position]
        rendered = [render.history(h, epoch_ms=True, only=only) for h in site.state(rec).histories]
        histories = [h for h in rendered if h is not None]
        chunk = histories[offset : offset + budget]
        if chunk:
            groups.append({"issueId": str(rec.issue_id), "changeHistories": chunk})
        budget -= len(chunk)
        if offset + len(chunk) < len(histories):
            offset += len(chunk)
            break
        position, offset = position + 1, 0
    out: Json = {"issueChangeLogs": groups}
    if position < len(records):
        cursor = [fingerprint, records[position].issue_id, offset]
        out["nextPageToken"] = _encode(orjson.dumps(cursor))
    return json_response(out)


def _bulk_cursor(token: Any, fingerprint: int) -> tuple[int, int]:
    """(issue id to resume at, histories of it already sent) from a page token."""
    if not token:
        return 0, 0
    try:
        values = orjson.loads(base64.urlsafe_b64decode(str(token) + "=" * (-len(str(token)) % 4)))
        mark, issue_id, offset = values
    except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError):
        raise BadRequest("The nextPageToken is invalid.") from None
    if mark != fingerprint or not isinstance(issue_id, int) or not isinstance(offset, int):
        raise BadRequest("The nextPageToken does not belong to this request.")
    return issue_id, offset


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def dev_status(request: web.Request) -> web.Response:
    issue_id = request.query.get("issueId", "")
    if not issue_id.isdigit():
        raise BadRequest("The 'issueId' parameter must be a numeric issue id.")
    rec = site_of(request).find(issue_id)
    if rec is None:
        raise NotFound("Issue does not exist or you do not have permission to see it.")
    app_type = request.query.get("applicationType", "")
    data_type = request.query.get("dataType", "pullrequest")
    prs = (
        renderer(request).pull_requests(rec)
        if app_type.lower() == "github" and data_type == "pullrequest"
        else []
    )
    instance = {
        "singleInstance": True,
        "baseUrl": "https://github.com",
        "name": "GitHub",
        "typeName": "GitHub",
        "id": "github",
        "type": "github",
    }
    return json_response(
        {
            "errors": [],
            "detail": [
                {"branches": [], "pullRequests": prs, "repositories": [], "_instance": instance}
            ],
        }
    )


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{API}/search/jql", search_jql)
    r.add_post(f"{API}/search/jql", search_jql)
    r.add_post(f"{API}/search/approximate-count", approximate_count)
    r.add_get(f"{API}/search", removed_search)
    r.add_post(f"{API}/search", removed_search)
    r.add_post(f"{API}/changelog/bulkfetch", bulk_changelog)
    r.add_get(f"{API}/issue/{{issue}}", issue_get)
    r.add_get(f"{API}/issue/{{issue}}/changelog", issue_changelog)
    r.add_get("/rest/dev-status/1.0/issue/detail", dev_status)
    r.add_get("/rest/dev-status/latest/issue/detail", dev_status)
