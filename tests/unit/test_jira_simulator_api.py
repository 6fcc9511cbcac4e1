"""The simulated Jira over HTTP: auth, search paging, changelogs, filters, mutations, shapes."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from etld.simulator import JiraSite, create_jira_app, generate_site, serve_jira
from etld.simulator.jira_render import DEV_FIELD_ID

NOW = datetime(2025, 3, 1, tzinfo=UTC)
AUTH = {"Authorization": "Basic " + base64.b64encode(b"etl@example.com:secret").decode()}
API = "/rest/api/3"
SAMPLES = Path("/work/shared/reference/api-samples/jira")
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")

# Key sets of Jira's documented example payloads (the shapes the simulator reproduces).
SAMPLE_KEYS: dict[str, set[str]] = {
    "project": {
        "avatarUrls",
        "id",
        "insight",
        "key",
        "name",
        "projectCategory",
        "self",
        "simplified",
        "style",
    },
    "project_page": {"isLast", "maxResults", "nextPage", "self", "startAt", "total", "values"},
    "status": {"description", "iconUrl", "id", "name", "self", "statusCategory"},
    "statuscategory": {"colorName", "id", "key", "name", "self"},
    "field": {
        "clauseNames",
        "custom",
        "id",
        "key",
        "name",
        "navigable",
        "orderable",
        "schema",
        "searchable",
    },
    "issuetype": {
        "avatarId",
        "description",
        "hierarchyLevel",
        "iconUrl",
        "id",
        "name",
        "self",
        "subtask",
    },
    "issue": {"fields", "id", "key", "self"},
    "search_issue": {"expand", "fields", "id", "key", "self"},
    "changelog_page": {"isLast", "maxResults", "nextPage", "self", "startAt", "total", "values"},
    "history": {"author", "created", "id", "items"},
    "item": {"field", "fieldId", "fieldtype", "from", "fromString", "to", "toString"},
    "bulk": {"issueChangeLogs", "nextPageToken"},
    "bulk_issue": {"changeHistories", "issueId"},
    "createmeta_types": {"issueTypes", "maxResults", "startAt", "total"},
    "createmeta_fields": {"fields", "maxResults", "startAt", "total"},
    "createmeta_field": {"fieldId", "hasDefaultValue", "key", "name", "operations", "required"},
    "createmeta_400": {"errorMessages", "errors", "httpStatusCode"},
    "project_statuses": {"id", "name", "self", "statuses", "subtask"},
}


@pytest.fixture(scope="module")
def site() -> JiraSite:
    return generate_site(260, 21, now=NOW)


Client = TestClient[Any, Any]


@pytest.fixture
async def client(aiohttp_client: Any, site: JiraSite) -> Client:
    client: Client = await aiohttp_client(create_jira_app(site))
    return client


async def _get(client: Client, path: str, status: int = 200) -> Any:
    response = await client.get(path, headers=AUTH)
    assert response.status == status, await response.text()
    for header in RATE_HEADERS:
        assert header in response.headers
    return orjson.loads(await response.read())


async def _post(client: Client, path: str, body: Any, status: int = 200) -> Any:
    response = await client.post(path, headers=AUTH, json=body)
    assert response.status == status, await response.text()
    return orjson.loads(await response.read())


async def _search_all(client: Client, jql: str, page: int, **extra: Any) -> list[dict[str, Any]]:
    issues: list[dict[str, Any]] = []
    token = None
    while True:
        body = {"jql": jql, "maxResults": page, **extra}
        if token:
            body["nextPageToken"] = token
        data = await _post(client, f"{API}/search/jql", body)
        issues += data["issues"]
        token = data.get("nextPageToken")
        assert data["isLast"] is (token is None)
        if data["isLast"]:
            return issues


async def test_auth_required_and_checked(aiohttp_client: Any, site: JiraSite) -> None:
    open_client = await aiohttp_client(create_jira_app(site))
    response = await open_client.get(f"{API}/myself")
    assert response.status == 401
    assert "errorMessages" in await response.json()
    assert all(h in response.headers for h in RATE_HEADERS)
    strict = await aiohttp_client(create_jira_app(site, user="etl@example.com", token="right"))
    assert (await strict.get(f"{API}/myself", headers=AUTH)).status == 401
    good = {"Authorization": "Basic " + base64.b64encode(b"etl@example.com:right").decode()}
    response = await strict.get(f"{API}/myself", headers=good)
    assert response.status == 200
    assert (await response.json())["timeZone"] == site.timezone == "Europe/Berlin"


async def test_old_search_is_gone(client: Client) -> None:
    body = await _get(client, f"{API}/search?jql=project=PROJ", status=410)
    assert body["errorMessages"]
    assert body["errors"] == {}
    await _post(client, f"{API}/search", {"jql": "project = PROJ"}, status=410)


async def test_search_pages_every_issue_exactly_once(client: Client, site: JiraSite) -> None:
    jql = "project in (PROJ, CORE, OPS) ORDER BY key"
    issues = await _search_all(client, jql, 37, fields=["summary"])
    keys = [i["key"] for i in issues]
    assert len(keys) == len(set(keys)) == len(site)
    assert set(keys) == set(site.issue_keys())
    again = [i["key"] for i in await _search_all(client, jql, 50, fields=["summary"])]
    assert again == keys
    ids_only = await _search_all(client, "project = CORE", 1000)
    assert all(set(i) == {"id"} for i in ids_only)
    assert len(ids_only) == sum(1 for k in site.issue_keys() if k.startswith("CORE-"))


async def test_search_get_form_and_caps(client: Client, site: JiraSite) -> None:
    data = await _get(
        client, f"{API}/search/jql?jql=project%20%3D%20PROJ&fields=summary,status&maxResults=500"
    )
    assert len(data["issues"]) == 100
    assert "nextPageToken" in data
    assert set(data["issues"][0]["fields"]) == {"summary", "status"}
    data = await _get(client, f"{API}/search/jql?jql=project=PROJ")
    assert len(data["issues"]) == 50
    ordered = await _search_all(
        client, "project = PROJ ORDER BY updated DESC", 100, fields=["updated"]
    )
    stamps = [datetime.strptime(i["fields"]["updated"], "%Y-%m-%dT%H:%M:%S.%f%z") for i in ordered]
    assert stamps == sorted(stamps, reverse=True)


@pytest.mark.parametrize(
    ("jql", "fragment"),
    [
        ("project = ", "expecting"),
        ("project = PROJ AND", "expecting"),
        ("project = NOPE", "does not exist"),
        ("ORDER BY key", "Unbounded"),
        ("foo = bar", "does not exist"),
    ],
)
async def test_bad_jql_answers_400(client: Client, jql: str, fragment: str) -> None:
    body = await _post(client, f"{API}/search/jql", {"jql": jql}, status=400)
    assert any(fragment in m for m in body["errorMessages"])


async def test_unknown_body_field_is_rejected(client: Client) -> None:
    body = await _post(
        client, f"{API}/search/jql", {"jql": "project = PROJ", "startAt": 50}, status=400
    )
    assert "startAt" in body["errorMessages"][0]


async def test_updated_filter_reads_the_site_time_zone(client: Client, site: JiraSite) -> None:
    truth = sorted(site.issues(), key=lambda t: t.updated)[len(site) // 2]
    local = truth.updated.astimezone(site.tz).replace(second=0, microsecond=0)
    expected = {t.key for t in site.issues() if t.updated >= local}
    for fmt in ("%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M"):
        jql = f'project in (PROJ, CORE, OPS) AND updated >= "{local.strftime(fmt)}"'
        found = {i["key"] for i in await _search_all(client, jql, 100, fields=["key"])}
        assert found == expected
    # The same wall-clock text read as UTC is one or two hours later: the issue drops out.
    as_utc = local.replace(tzinfo=UTC)
    assert truth.key not in {t.key for t in site.issues() if t.updated >= as_utc}
    assert truth.key in expected


async def test_embedded_changelog_is_newest_first_and_capped(
    client: Client, site: JiraSite
) -> None:
    heavy = next(t for t in site.issues() if t.history_count > 100)
    data = await _post(
        client,
        f"{API}/search/jql",
        {"jql": f"key = {heavy.key}", "fields": ["status"], "expand": "changelog"},
    )
    changelog = data["issues"][0]["changelog"]
    assert changelog["total"] == heavy.history_count > len(changelog["histories"]) == 100
    assert changelog["maxResults"] == 100
    assert changelog["startAt"] == 0
    ids = [int(h["id"]) for h in changelog["histories"]]
    assert ids == sorted(ids, reverse=True)
    issue = await _get(client, f"{API}/issue/{heavy.key}?expand=changelog")
    assert [h["id"] for h in issue["changelog"]["histories"]] == [str(i) for i in ids]

    paged: list[dict[str, Any]] = []
    start = 0
    while True:
        page = await _get(
            client, f"{API}/issue/{heavy.key}/changelog?startAt={start}&maxResults=1000"
        )
        assert page["maxResults"] == 100
        assert page["total"] == heavy.history_count
        paged += page["values"]
        start += len(page["values"])
        if page["isLast"]:
            break
        assert "nextPage" in page
    assert len(paged) == heavy.history_count
    assert [int(h["id"]) for h in paged] == sorted(ids + [int(h["id"]) for h in paged[: -len(ids)]])
    transitions = [
        (h["id"], i["from"], i["to"])
        for h in paged
        for i in h["items"]
        if i.get("fieldId") == "status"
    ]
    assert transitions == [(t.history_id, t.from_status, t.to_status) for t in heavy.transitions]


async def test_bulkfetch_returns_complete_status_changelogs(client: Client, site: JiraSite) -> None:
    truths = list(site.issues())[:40]
    keys = [t.key for t in truths]
    got: dict[str, list[dict[str, Any]]] = {}
    token = None
    pages = 0
    while True:
        body: dict[str, Any] = {"issueIdsOrKeys": keys, "fieldIds": ["status"], "maxResults": 25}
        if token:
            body["nextPageToken"] = token
        data = await _post(client, f"{API}/changelog/bulkfetch", body)
        pages += 1
        for group in data["issueChangeLogs"]:
            got.setdefault(group["issueId"], []).extend(group["changeHistories"])
        token = data.get("nextPageToken")
        if token is None:
            break
    assert pages > 1
    for truth in truths:
        histories = got.get(truth.id, [])
        assert all(isinstance(h["created"], int) for h in histories)
        flat = [(h["id"], h["created"], i["from"], i["to"]) for h in histories for i in h["items"]]
        assert all(i["fieldId"] == "status" for h in histories for i in h["items"])
        expected = [
            (t.history_id, int(t.at.timestamp() * 1000), t.from_status, t.to_status)
            for t in truth.transitions
        ]
        assert flat == expected
    await _post(client, f"{API}/changelog/bulkfetch", {"issueIdsOrKeys": []}, status=400)
    too_many = {"issueIdsOrKeys": keys, "fieldIds": [f"f{i}" for i in range(11)]}
    await _post(client, f"{API}/changelog/bulkfetch", too_many, status=400)


async def test_timestamps_have_jira_format_and_mixed_offsets(client: Client) -> None:
    issues = await _search_all(
        client, "project = PROJ", 100, fields=["created"], expand="changelog"
    )
    pattern = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}([+-]\d{4})$")
    offsets = set()
    for issue in issues:
        match = pattern.match(issue["fields"]["created"])
        assert match
        offsets.add(match.group(1))
        for history in issue["changelog"]["histories"]:
            offsets.add(pattern.match(history["created"]).group(1))  # type: ignore[union-attr]
    assert {"+0100", "+0200"} <= offsets
    assert len(offsets) >= 4


async def test_unknown_issue_is_404(client: Client) -> None:
    for path in (
        f"{API}/issue/PROJ-999999",
        f"{API}/issue/NOPE-1",
        f"{API}/issue/PROJ-999999/changelog",
    ):
        body = await _get(client, path, status=404)
        assert body["errorMessages"]


async def test_touch_and_delete_are_visible(aiohttp_client: Any) -> None:
    site = generate_site(40, 8, now=NOW)
    client = await aiohttp_client(create_jira_app(site))
    key, gone = site.issue_keys()[:2]
    before = await _get(client, f"{API}/issue/{key}?expand=changelog")
    at = NOW + timedelta(hours=5)
    site.touch([key], at=at, transition=True)
    site.delete([gone])
    after = await _get(client, f"{API}/issue/{key}?expand=changelog")
    assert after["fields"]["summary"] != before["fields"]["summary"]
    assert after["fields"]["summary"] == site.issue(key).summary
    assert after["fields"]["status"]["id"] == site.issue(key).status_id
    newest = after["changelog"]["histories"][0]
    assert {i["field"] for i in newest["items"]} >= {"summary", "status"}
    since = at.astimezone(site.tz).strftime("%Y-%m-%d %H:%M")
    recent = await _search_all(client, f'project in (PROJ, CORE, OPS) AND updated >= "{since}"', 50)
    assert [i["id"] for i in recent] == [site.issue(key).id]
    await _get(client, f"{API}/issue/{gone}", status=404)
    every = await _search_all(client, "project in (PROJ, CORE, OPS)", 100, fields=["key"])
    assert gone not in {i["key"] for i in every}
    assert len(every) == 39
    added = site.add_issues(3)
    every = await _search_all(client, "project in (PROJ, CORE, OPS)", 100, fields=["key"])
    assert set(added) <= {i["key"] for i in every}


async def test_dev_status_lists_the_pull_requests(client: Client, site: JiraSite) -> None:
    truth = next(t for t in site.issues() if t.pull_requests)
    data = await _get(
        client,
        f"/rest/dev-status/1.0/issue/detail?issueId={truth.id}&applicationType=GitHub&dataType=pullrequest",
    )
    detail = data["detail"][0]
    assert detail["branches"] == []
    assert detail["repositories"] == []
    prs = detail["pullRequests"]
    got = {(p["repositoryName"], int(p["id"].lstrip("#")), p["url"], p["status"]) for p in prs}
    assert got == {(p.repo, p.number, p.url, p.status) for p in truth.pull_requests}
    assert {"id", "name", "url", "status", "repositoryName", "repositoryUrl"} <= set(prs[0])
    await _get(
        client,
        "/rest/dev-status/1.0/issue/detail?issueId=999999999&applicationType=GitHub",
        status=404,
    )


async def test_payload_shapes_match_the_samples(client: Client, site: JiraSite) -> None:
    def has(kind: str, payload: dict[str, Any]) -> None:
        missing = SAMPLE_KEYS[kind] - set(payload)
        assert not missing, (kind, missing)

    page = await _get(client, f"{API}/project/search?maxResults=1&expand=insight,issueTypes")
    has("project_page", page)
    has("project", page["values"][0])
    assert "issueTypes" in page["values"][0]
    statuses = await _get(client, f"{API}/status")
    has("status", statuses[0])
    assert {s["statusCategory"]["key"] for s in statuses} == {"new", "indeterminate", "done"}
    has("statuscategory", (await _get(client, f"{API}/statuscategory"))[0])
    fields = await _get(client, f"{API}/field")
    for field in fields:
        has("field", field)
    # the catalog's custom fields plus Jira's Development summary field
    expected = {cf.id for cf in site.custom_fields} | {DEV_FIELD_ID}
    assert {f["id"] for f in fields if f["custom"]} == expected
    types = await _get(client, f"{API}/issuetype")
    for itype in types:
        has("issuetype", itype)
    assert any("scope" in t and "entityId" in t for t in types)
    project_statuses = await _get(client, f"{API}/project/PROJ/statuses")
    has("project_statuses", project_statuses[0])
    key = site.issue_keys()[0]
    has("issue", await _get(client, f"{API}/issue/{key}"))
    search = await _post(client, f"{API}/search/jql", {"jql": f"key = {key}", "fields": ["*all"]})
    has("search_issue", search["issues"][0])
    heavy = next(t for t in site.issues() if t.history_count > 3)
    changelog = await _get(client, f"{API}/issue/{heavy.key}/changelog?maxResults=2")
    has("changelog_page", changelog)
    has("history", changelog["values"][0])
    has("item", next(i for h in changelog["values"] for i in h["items"] if "fieldId" in i))
    bulk = await _post(
        client, f"{API}/changelog/bulkfetch", {"issueIdsOrKeys": [heavy.key], "maxResults": 1}
    )
    has("bulk", bulk)
    has("bulk_issue", bulk["issueChangeLogs"][0])
    has("history", bulk["issueChangeLogs"][0]["changeHistories"][0])
    meta_types = await _get(client, f"{API}/issue/createmeta/PROJ/issuetypes")
    has("createmeta_types", meta_types)
    meta_fields = await _get(client, f"{API}/issue/createmeta/PROJ/issuetypes/1?maxResults=200")
    has("createmeta_fields", meta_fields)
    has("createmeta_field", meta_fields["fields"][0])
    too_big = await _get(
        client, f"{API}/issue/createmeta/PROJ/issuetypes/1?maxResults=201", status=400
    )
    has("createmeta_400", too_big)
    deprecated = await _get(
        client, f"{API}/issue/createmeta?projectKeys=PROJ&expand=projects.issuetypes.fields"
    )
    fields_map = deprecated["projects"][0]["issuetypes"][0]["fields"]
    assert "summary" in fields_map
    assert "customfield_10001" in json.dumps(deprecated)


def test_sample_key_sets_are_the_documented_ones() -> None:
    if not SAMPLES.is_dir():
        pytest.skip("reference samples not available")

    def load(name: str) -> Any:
        return json.loads((SAMPLES / f"{name}.json").read_text())

    assert set(load("project_search")["values"][0]) == SAMPLE_KEYS["project"]
    assert set(load("status")[0]) == SAMPLE_KEYS["status"]
    assert set(load("field")[1]) == SAMPLE_KEYS["field"]
    assert set(load("issue_get")) == SAMPLE_KEYS["issue"]
    assert set(load("issue_changelog")["values"][0]["items"][0]) == SAMPLE_KEYS["item"]
    assert set(load("changelog_bulkfetch")) == SAMPLE_KEYS["bulk"]


async def test_stats_endpoint_counts_calls(client: Client) -> None:
    await _get(client, f"{API}/status")
    await _get(client, f"{API}/status")
    await _get(client, f"{API}/field")
    stats = await (await client.get("/_sim/stats")).json()
    assert stats["paths"][f"{API}/status"] == 2
    assert stats["total"] == 3
    stats = await (await client.delete("/_sim/stats")).json()
    assert stats["total"] == 0


async def test_serve_jira_runs_until_cancelled() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Capture the log line: another test may have pointed logging at a since-closed stream.
    with capture_logs() as logs:
        await _serve_briefly(port)
    assert any(entry["event"] == "jira simulator listening" for entry in logs)


async def _serve_briefly(port: int) -> None:
    task = asyncio.create_task(serve_jira("127.0.0.1", port, 25, 3, "bot", "tok"))
    auth = {"Authorization": "Basic " + base64.b64encode(b"bot:tok").decode()}
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            try:
                async with session.get(
                    f"http://127.0.0.1:{port}{API}/myself", headers=auth
                ) as resp:
                    assert resp.status == 200
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
        else:
            pytest.fail("simulator did not start")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_counts_projects_and_field_names(client: Client, site: JiraSite) -> None:
    count = await _post(client, f"{API}/search/approximate-count", {"jql": "project = CORE"})
    assert count == {"count": sum(1 for k in site.issue_keys() if k.startswith("CORE-"))}
    project = await _get(client, f"{API}/project/core")
    assert project["key"] == "CORE"
    assert [t["id"] for t in project["issueTypes"]] == [t.id for t in site.projects[1].issue_types]
    await _get(client, f"{API}/project/NOPE", status=404)
    names = await _get(client, f"{API}/project/search?orderBy=-name")
    assert [p["name"] for p in names["values"]] == sorted(
        (p.name for p in site.projects), reverse=True
    )
    first, second = site.issue_keys()[:2]
    jql = f"(key = {first} OR id = {site.issue(second).id}) AND issuetype != Epic ORDER BY id"
    data = await _post(
        client,
        f"{API}/search/jql",
        {"jql": jql, "fields": ["summary", "customfield_10001"], "expand": "names,schema"},
    )
    assert data["names"] == {"customfield_10001": site.custom_fields[0].name, "summary": "Summary"}
    assert data["schema"]["summary"]["type"] == "string"
    assert {i["key"] for i in data["issues"]} <= {first, second}
