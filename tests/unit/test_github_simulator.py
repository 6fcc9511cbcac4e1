"""The simulated GitHub: generation and ground truth, shapes of GitHub's own examples, paging
by Link, list defaults, the 250-commit cap, comment lists, renames, errors, ETags and limits."""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs
from yarl import URL

from etld.simulator.faults import FaultKind, FaultPlan
from etld.simulator.github import create_github_app, serve_github
from etld.simulator.github_data import GitHubSite, SiteOptions, generate_github
from etld.simulator.github_model import COMMITS_CAP
from etld.simulator.github_web import RateLimits

NOW = datetime(2025, 3, 1, tzinfo=UTC)
AUTH = {"Authorization": "Bearer ghp_x"}
SAMPLES = Path("/work/shared/reference/api-samples/github")


def sample(name: str) -> Any:
    return orjson.loads((SAMPLES / f"{name}.json").read_bytes())


@pytest.fixture(autouse=True)
def quiet_logs() -> Any:
    with capture_logs():
        yield


@pytest.fixture
def site() -> GitHubSite:
    return generate_github(80, 7, now=NOW)


async def client_for(aiohttp_client: Any, site: GitHubSite, **kwargs: Any) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await aiohttp_client(create_github_app(site, **kwargs))
    return client


def links(response: aiohttp.ClientResponse) -> dict[str, str]:
    """rel -> path and query of each Link target (the test client asks by path)."""
    return {str(link["rel"]): URL(str(link["url"])).path_qs for link in response.links.values()}


def test_generation_is_exact_deterministic_and_varied() -> None:
    a, b = generate_github(250, 3, now=NOW), generate_github(250, 3, now=NOW)
    assert a.pull_count == 250
    assert [(p.id, p.number, p.title, p.updated_ms) for p in a.pulls()] == [
        (p.id, p.number, p.title, p.updated_ms) for p in b.pulls()
    ]
    pulls = a.pulls()
    assert {p.state for p in pulls} == {"open", "closed"}
    assert any(p.merged_ms for p in pulls)
    assert any(p.closed_ms and not p.merged_ms for p in pulls)
    assert any(p.draft for p in pulls)
    details = [a.detail(p) for p in pulls]
    assert max(len(d.commits) for d in details) > COMMITS_CAP
    assert any(100 < len(d.commits) <= COMMITS_CAP for d in details)
    assert max(len(d.review_comments) for d in details) > 100
    for repo in a.repos:  # pull requests and issues share the numbers of a repository
        numbers = [p.number for p in a.pulls_of(repo)] + [i.number for i in a.issues_of(repo)]
        assert sorted(numbers) == list(range(1, len(numbers) + 1))
    assert generate_github(0, 1, now=NOW).pull_count == 0


def test_jira_keys_are_where_the_truth_says() -> None:
    site = generate_github(120, 4, now=NOW, options=SiteOptions(keys=("PROJ-1", "OPS-2")))
    for p in site.pulls():
        for key, source in p.links:
            text = {
                "title": p.title,
                "body": p.body,
                "branch": p.head_ref.upper(),
                "commit": site.detail(p).commits[0].message,
            }[source]
            assert key in text
        if not p.links:
            assert "PROJ-1" not in p.title + p.body
            assert "OPS-2" not in p.title + p.body
    assert {s for p in site.pulls() for _, s in p.links} == {"title", "body", "branch", "commit"}


async def test_shapes_follow_githubs_examples(aiohttp_client: Any, site: GitHubSite) -> None:
    client = await client_for(aiohttp_client, site)
    rec = next(p for p in site.pulls() if site.detail(p).reviews and site.detail(p).issue_comments)
    repo = site.repos[rec.repo].full_name
    base = f"/repos/{repo}/pulls/{rec.number}"

    async def first(path: str) -> dict[str, Any]:
        response = await client.get(path, headers=AUTH)
        assert response.status == 200, path
        body: dict[str, Any] | list[dict[str, Any]] = await response.json()
        return body[0] if isinstance(body, list) else body

    listed = await first(f"/repos/{repo}/pulls?state=all")
    assert set(listed) == set(sample("pulls_list")[0])
    assert not {"merged", "additions", "commits"} & set(listed)  # the list omits them
    assert set(await first(base)) == set(sample("pulls_get"))
    assert set(await first(f"{base}/commits")) == set(sample("pulls_commits")[0])
    assert set(await first(f"{base}/reviews")) == set(sample("pulls_reviews")[0])
    comment = await first(f"/repos/{repo}/pulls/comments")
    assert set(comment) == set(sample("pulls_review_comments")[0]) - {"in_reply_to_id"}
    issue = await first(f"/repos/{repo}/issues/{rec.number}/comments")
    assert set(issue) == set(sample("issues_comments")[0])
    assert set(sample("user_repos")[0]) - set(await first("/user/repos")) <= {
        "allow_auto_merge",
        "allow_merge_commit",
        "allow_rebase_merge",
        "allow_squash_merge",
        "delete_branch_on_merge",
        "network_count",
        "subscribers_count",
        "temp_clone_token",
        "template_repository",
    }


async def test_pull_list_defaults_sorting_and_link_paging(
    aiohttp_client: Any, site: GitHubSite
) -> None:
    client = await client_for(aiohttp_client, site)
    repo = site.repos[0]
    response = await client.get(f"/repos/{repo.full_name}/pulls", headers=AUTH)
    default = await response.json()
    assert {p["state"] for p in default} == {"open"}
    assert len(default) == min(30, sum(p.state == "open" for p in site.pulls_of(repo)))

    seen: list[dict[str, Any]] = []
    url: str | None = (
        f"/repos/{repo.full_name}/pulls?state=all&sort=updated&direction=desc&per_page=7"
    )
    while url:
        response = await client.get(url, headers=AUTH)
        seen += await response.json()
        url = links(response).get("next")
        if url:
            assert URL(url).path == f"/repositories/{repo.id}/pulls"  # GitHub's link form
    assert len(seen) == len(site.pulls_of(repo))
    stamps = [(p["updated_at"], p["number"]) for p in seen]
    assert stamps == sorted(stamps, reverse=True)
    response = await client.get(
        f"/repos/{repo.full_name}/pulls?state=all&per_page=500", headers=AUTH
    )
    assert len(await response.json()) == min(100, len(site.pulls_of(repo)))


async def test_commits_stop_at_250(aiohttp_client: Any, site: GitHubSite) -> None:
    client = await client_for(aiohttp_client, site)
    rec = next(p for p in site.pulls() if len(site.detail(p).commits) > COMMITS_CAP)
    path = f"/repos/{site.repos[rec.repo].full_name}/pulls/{rec.number}/commits?per_page=100"
    got = []
    for page in (1, 2, 3, 4):
        response = await client.get(f"{path}&page={page}", headers=AUTH)
        got += await response.json()
    assert len(got) == COMMITS_CAP
    assert [c["sha"] for c in got] == [c.sha for c in site.detail(rec).commits[:COMMITS_CAP]]
    response = await client.get(
        f"/repos/{site.repos[rec.repo].full_name}/pulls/{rec.number}", headers=AUTH
    )
    assert (await response.json())["commits"] == len(site.detail(rec).commits)


async def test_comment_lists_take_since_and_include_plain_issues(
    aiohttp_client: Any, site: GitHubSite
) -> None:
    client = await client_for(aiohttp_client, site)
    repo = site.repos[0]
    response = await client.get(
        f"/repos/{repo.full_name}/issues/comments?per_page=100", headers=AUTH
    )
    numbers = set()
    url: str | None = f"/repos/{repo.full_name}/issues/comments?per_page=100"
    while url:
        response = await client.get(url, headers=AUTH)
        numbers |= {int(c["issue_url"].rsplit("/", 1)[1]) for c in await response.json()}
        url = links(response).get("next")
    issues = {i.number for i in site.issues_of(repo) if site.issue_comments(i)}
    assert issues
    assert issues <= numbers

    later = NOW + timedelta(hours=1)
    rec = site.pulls_of(repo)[0]
    site.touch(repo.full_name, rec.number, later, review_comments=2, issue_comments=1)
    since = "2025-03-01T00:30:00Z"
    for path, count in (("/pulls/comments", 2), ("/issues/comments", 1)):
        query = f"?since={since}&sort=updated&direction=asc"
        response = await client.get(f"/repos/{repo.full_name}{path}{query}", headers=AUTH)
        assert len(await response.json()) == count
    response = await client.get(
        f"/repos/{repo.full_name}/pulls?state=all&sort=updated&direction=desc", headers=AUTH
    )
    assert (await response.json())[0]["number"] == rec.number


async def test_a_renamed_repository_redirects(aiohttp_client: Any, site: GitHubSite) -> None:
    client = await client_for(aiohttp_client, site)
    repo = site.rename("acme/web", "webapp")
    response = await client.get(
        "/repos/acme/web/pulls?state=all", headers=AUTH, allow_redirects=False
    )
    assert response.status == 301
    assert response.headers["Location"].endswith(f"/repositories/{repo.id}/pulls?state=all")
    assert (await response.json())["message"] == "Moved Permanently"
    response = await client.patch("/repos/acme/web", headers=AUTH, allow_redirects=False)
    assert response.status == 307
    response = await client.get("/repos/acme/web", headers=AUTH)  # followed
    assert (await response.json())["full_name"] == "acme/webapp"


async def test_errors_have_githubs_bodies(aiohttp_client: Any, site: GitHubSite) -> None:
    client = await client_for(aiohttp_client, site, token="ghp_right")
    response = await client.get("/user/repos")
    assert response.status == 401
    response = await client.get("/user/repos", headers={"Authorization": "token ghp_wrong"})
    assert (response.status, (await response.json())["message"]) == (401, "Bad credentials")
    good = {"Authorization": "token ghp_right"}
    response = await client.get("/repos/acme/nope", headers=good)
    assert (response.status, (await response.json())["message"]) == (404, "Not Found")
    response = await client.get("/repos/acme/api/pulls?state=merged", headers=good)
    body = await response.json()
    assert response.status == 422
    assert body["errors"] == [{"resource": "PullRequest", "field": "state", "code": "invalid"}]


async def test_etags_answer_304_without_charging(aiohttp_client: Any, site: GitHubSite) -> None:
    client = await client_for(aiohttp_client, site)
    response = await client.get("/repos/acme/api/pulls", headers=AUTH)
    tag, remaining = response.headers["ETag"], response.headers["x-ratelimit-remaining"]
    response = await client.get("/repos/acme/api/pulls", headers={**AUTH, "If-None-Match": tag})
    assert response.status == 304
    assert await response.read() == b""
    assert response.headers["x-ratelimit-remaining"] == remaining
    site.touch("acme/api", site.pulls_of(site.repos[0])[-1].number, NOW, commits=1)
    response = await client.get(
        "/repos/acme/api/pulls?state=all&sort=updated&direction=desc",
        headers={**AUTH, "If-None-Match": tag},
    )
    assert response.status == 200


@pytest.mark.parametrize("status", [403, 429])
async def test_primary_limit_refuses_until_the_reset(
    aiohttp_client: Any, site: GitHubSite, status: int
) -> None:
    clock = [1000.0]
    limits = RateLimits(limit=3, window=60, status=status, clock=lambda: clock[0])
    client = await client_for(aiohttp_client, site, limits=limits)
    for left in ("2", "1", "0"):
        response = await client.get("/user/repos", headers=AUTH)
        assert (response.status, response.headers["x-ratelimit-remaining"]) == (200, left)
    response = await client.get("/user/repos", headers=AUTH)
    assert response.status == status
    assert response.headers["x-ratelimit-reset"] == "1060"
    assert "rate limit" in (await response.json())["message"]
    assert limits.early == 0
    clock[0] += 5  # asking again while told to wait is noticed
    response = await client.get("/user/repos", headers=AUTH)
    assert response.status == status
    assert limits.early == 1
    clock[0] = 1060
    response = await client.get("/user/repos", headers=AUTH)
    assert response.status == 200


async def test_secondary_limits_come_from_the_fault_plan(
    aiohttp_client: Any, site: GitHubSite
) -> None:
    faults = FaultPlan().schedule(FaultKind.RATE_LIMIT, status=429, retry_after=30)
    faults.schedule(FaultKind.RATE_LIMIT, status=403, retry_after=0, path_prefix="/repos/")
    limits = RateLimits()
    client = await client_for(aiohttp_client, site, faults=faults, limits=limits)
    response = await client.get("/user/repos", headers=AUTH)
    assert (response.status, response.headers["retry-after"]) == (429, "30")
    assert "secondary rate limit" in (await response.json())["message"]
    assert response.headers["x-ratelimit-remaining"] != "0"
    await asyncio.sleep(0.3)
    response = await client.get("/user/repos", headers=AUTH)  # too soon
    assert response.status == 403
    assert limits.early == 1
    limits.reset()
    response = await client.get("/repos/acme/api", headers=AUTH)
    assert response.status == 403
    assert "retry-after" not in response.headers
    assert "secondary rate limit" in (await response.json())["message"]


async def test_serve_github_answers_on_its_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    task = asyncio.create_task(serve_github("127.0.0.1", port, 5, 1, "ghp_t"))
    try:
        deadline = time.monotonic() + 10
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(
                        f"http://127.0.0.1:{port}/user/repos",
                        headers={"Authorization": "Bearer ghp_t"},
                    ) as response:
                        assert response.status == 200
                        assert len(await response.json()) == 4
                        break
                except aiohttp.ClientConnectionError:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
