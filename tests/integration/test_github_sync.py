"""A GitHub sync against the simulator, step by step, compared with the site's ground truth:
repositories, every pull request with its commits (past 100, and GitHub's 250 cap), reviews
and comments (past 100), the timing figures and the Jira links; then an incremental pass, an
unchanged re-sync answered by 304s, and a renamed repository."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, overload

import asyncpg
import pytest

from etld.simulator.github_data import GitHubSite
from etld.simulator.github_model import COMMITS_CAP, PullRecord
from etld.sources.base import get_source
from tests.integration.test_github_support import (
    NOW,
    GitHub,
    MakeGitHub,
    add_work_items,
    github_factory,
    rows,
)
from tests.integration.test_jira_support import quiet_logs  # noqa: F401


@pytest.fixture
def make_github(
    pool: asyncpg.Pool, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> MakeGitHub:
    return github_factory(pool, aiohttp_server, monkeypatch)


@overload
def sec(ms: int) -> datetime: ...
@overload
def sec(ms: None) -> None: ...
def sec(ms: int | None) -> datetime | None:
    """A truth time as the API renders it: whole seconds."""
    return None if ms is None else datetime.fromtimestamp(ms // 1000, UTC)


def span(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def expected_pull(site: GitHubSite, rec: PullRecord) -> dict[str, Any]:
    """The row the sync should leave, spelled out from the ground truth."""
    d = site.detail(rec)
    author = site.people[rec.author].login

    def other(person: int) -> bool:
        login = site.people[person].login
        return login != author and not login.endswith("[bot]")

    created, merged = sec(rec.created_ms), sec(rec.merged_ms)
    listed = d.commits[:COMMITS_CAP]
    first_commit = min((sec(c.authored_ms) for c in listed), default=None)
    first_review = min((sec(r.submitted_ms) for r in d.reviews if other(r.user)), default=None)
    comments = [*d.review_comments, *d.issue_comments]
    first_comment = min((sec(c.created_ms) for c in comments if other(c.user)), default=None)
    response = min((t for t in (first_review, first_comment) if t is not None), default=None)
    return {
        "external_id": str(rec.id),
        "title": rec.title,
        "state": rec.state,
        "draft": rec.draft,
        "merged": rec.merged_ms is not None,
        "author_login": author,
        "head_ref": rec.head_ref,
        "base_ref": rec.base_ref,
        "created": created,
        "updated": sec(rec.updated_ms),
        "closed_at": sec(rec.closed_ms),
        "merged_at": merged,
        "first_commit_at": first_commit,
        "first_review_at": first_review,
        "coding_time_seconds": span(first_commit, created),
        "pickup_time_seconds": span(created, response),
        "review_time_seconds": span(first_review, merged),
        "cycle_time_seconds": span(created, merged),
        "commits": len(listed),
        "reviews": len(d.reviews),
        "review_comments": len(d.review_comments),
        "issue_comments": len(d.issue_comments),
    }


PULL_SQL = """
SELECT r.full_name, p.number, p.external_id, p.title, p.state, p.draft, p.merged,
       p.author_login, p.head_ref, p.base_ref, p.created, p.updated, p.closed_at, p.merged_at,
       p.first_commit_at, p.first_review_at, p.coding_time_seconds, p.pickup_time_seconds,
       p.review_time_seconds, p.cycle_time_seconds, p.truncated, p.commits_count,
       (SELECT count(*) FROM pr_commits c WHERE c.pull_request_id = p.id) AS commits,
       (SELECT count(*) FROM pr_reviews v WHERE v.pull_request_id = p.id) AS reviews,
       (SELECT count(*) FROM pr_comments m WHERE m.pull_request_id = p.id AND m.kind = 'review')
           AS review_comments,
       (SELECT count(*) FROM pr_comments m WHERE m.pull_request_id = p.id AND m.kind = 'issue')
           AS issue_comments
  FROM pull_requests p JOIN repositories r ON r.id = p.repository_id
"""


async def loaded_pulls(gh: GitHub) -> dict[tuple[str, int], dict[str, Any]]:
    return {(r.pop("full_name"), r.pop("number")): r for r in await rows(gh.pool, PULL_SQL)}


def assert_matches_truth(
    gh: GitHub, loaded: dict[tuple[str, int], dict[str, Any]], repos: set[str] | None = None
) -> None:
    """Every pull request (of `repos`, default all) loaded as the ground truth has it."""
    site = gh.site
    wanted = [p for p in site.pulls() if repos is None or site.repos[p.repo].full_name in repos]
    assert len(loaded) == len(wanted)
    for rec in wanted:
        got = dict(loaded[(site.repos[rec.repo].full_name, rec.number)])
        truncated, count = got.pop("truncated"), got.pop("commits_count")
        assert got == expected_pull(site, rec), (rec.number, rec.repo)
        total = len(site.detail(rec).commits)
        assert count == total
        if total > COMMITS_CAP:
            assert truncated == {"commits": {"listed": COMMITS_CAP, "total": total}}
        else:
            assert truncated == {}


async def test_full_sync_matches_the_ground_truth(make_github: MakeGitHub) -> None:
    gh = await make_github(60)
    site = gh.site
    keys = sorted({k for p in site.pulls() for k, _ in p.links})
    known = keys[::2]  # half the keys name work items; links to the others are skipped
    items = await add_work_items(gh.pool, gh.tenant_id, known)

    run = await gh.new_run(full_sync=True)
    result = await gh.sync(run, reverse=True)  # pages land in the worst order

    repos = await rows(gh.pool, "SELECT external_id, full_name, private FROM repositories")
    assert sorted((r["external_id"], r["full_name"], r["private"]) for r in repos) == sorted(
        (str(r.id), r.full_name, r.private) for r in site.repos
    )
    loaded = await loaded_pulls(gh)
    assert_matches_truth(gh, loaded)
    details = [site.detail(p) for p in site.pulls()]
    assert any(len(d.commits) > 100 for d in details)
    assert any(len(d.commits) > COMMITS_CAP for d in details)
    assert any(len(d.review_comments) > 100 for d in details)
    assert any(len(d.issue_comments) > 100 for d in details)

    links = await rows(
        gh.pool,
        "SELECT l.work_item_id, l.repository_full_name, l.pr_number, l.link_source, l.pr_url, "
        "p.number FROM work_items_prs_links l JOIN pull_requests p ON p.id = l.pull_request_id",
    )
    expected = {
        (items[key], site.repos[p.repo].full_name, p.number, source)
        for p in site.pulls()
        for key, source in p.links
        if key in items
    }
    assert {
        (r["work_item_id"], r["repository_full_name"], r["pr_number"], r["link_source"])
        for r in links
    } == expected
    assert {source for *_, source in expected} == {"title", "body", "branch", "commit"}
    assert all(r["pr_url"] and r["pr_number"] == r["number"] for r in links)

    # Calls: per pull request a commits and a reviews call, plus the lists and the big ones.
    calls = gh.counter.total
    per_pr = calls / site.pull_count
    assert per_pr < 2.6, gh.counter.per_path()
    embeds = result["github_pull_requests"][2].embeds
    assert {e for e in embeds if e[2] == "insert"} == {
        ("pull_requests", str(p.id), "insert") for p in site.pulls()
    }


async def test_incremental_pass_fetches_only_updated_pull_requests(make_github: MakeGitHub) -> None:
    gh = await make_github(40)
    site = gh.site
    first = await gh.sync(await gh.new_run(full_sync=True))

    later = NOW + timedelta(hours=2)
    api, web = site.repo("acme/api"), site.repo("acme/web")
    assert api is not None
    assert web is not None
    a = max(site.pulls_of(api), key=lambda p: p.number)
    b = min(site.pulls_of(web), key=lambda p: p.number)
    site.touch("acme/api", a.number, later, commits=2, reviews=1, issue_comments=1, merge=True)
    site.touch("acme/web", b.number, later, review_comments=2, title="OPS-3 Renamed")
    issue = site.issues_of(web)[0]
    site.comment_issue("acme/web", issue.number, later)
    gh.counter.reset()

    run = await gh.new_run(full_sync=False, last_sync_date=NOW)
    result = await gh.sync(run)

    batches = result["github_pull_requests"][0].follow_ups
    assert sorted(n for _, payload in batches for n, *_ in payload["pulls"]) == sorted(
        [a.number, b.number]
    )
    per_path = gh.counter.per_path()
    commit_calls = {p for p in per_path if p.endswith("/commits")}
    assert commit_calls == {
        f"/repos/acme/api/pulls/{a.number}/commits",
        f"/repos/acme/web/pulls/{b.number}/commits",
    }
    # One list page per repository, the two pull requests' lists, two comment lists each.
    assert gh.counter.total <= 1 + 4 + 2 * 2 + 4 * 2
    assert_matches_truth(gh, await loaded_pulls(gh))
    titled = await rows(
        gh.pool,
        "SELECT p.title FROM pull_requests p JOIN repositories r ON r.id = p.repository_id "
        "WHERE r.full_name = 'acme/web' AND p.number = $1",
        b.number,
    )
    assert titled == [{"title": "OPS-3 Renamed"}]

    # The first run's pages, transformed again now, are older: they change nothing.
    for name, (store, _, _) in first.items():
        await gh.transform(run, get_source("github").step(name), store.raw_ids)
    assert_matches_truth(gh, await loaded_pulls(gh))


async def test_unchanged_resync_is_answered_by_304s(make_github: MakeGitHub) -> None:
    gh = await make_github(30)
    await gh.sync(await gh.new_run(full_sync=True))
    first_calls = gh.counter.total
    gh.counter.reset()
    gh.statuses.clear()

    result = await gh.sync(await gh.new_run(full_sync=True))

    assert all(store.raw_ids == [] for store, _, _ in result.values())
    assert set(gh.statuses) == {304}
    assert gh.counter.total <= first_calls
    assert_matches_truth(gh, await loaded_pulls(gh))

    # An incremental run with nothing new: one 304 per repository and per comment list.
    gh.counter.reset()
    gh.statuses.clear()
    run = await gh.new_run(full_sync=False, last_sync_date=NOW)
    result = await gh.sync(run)
    assert result["github_pull_requests"][0].follow_ups == []
    assert gh.counter.per_path()["/repos/acme/api/pulls"] == 1
    assert gh.counter.total == 1 + 4 * 3  # the repositories, then per repository a pull
    # request list and two comment lists


async def test_a_renamed_repository_is_followed(make_github: MakeGitHub) -> None:
    gh = await make_github(20, settings={"repositories": ["acme/api", "acme/web"]})
    site = gh.site
    await gh.sync(await gh.new_run(full_sync=True))
    before = await rows(gh.pool, "SELECT id, external_id FROM repositories ORDER BY id")
    web = site.repo("acme/web")
    assert web is not None
    rec = site.pulls_of(web)[0]
    site.touch("acme/web", rec.number, NOW + timedelta(hours=1), commits=1)

    # Renamed in the middle of a run: the later steps still use the old name, and follow.
    run = await gh.new_run(full_sync=False, last_sync_date=NOW)
    steps = get_source("github").steps({})
    store = await gh.extract(run, steps[0])
    await gh.transform(run, steps[0], store.raw_ids)
    site.rename("acme/web", "webapp")
    gh.statuses.clear()
    for step in steps[1:]:
        store = await gh.extract(run, step)
        await gh.transform(run, step, store.raw_ids)
    assert gh.statuses[301] >= 3  # its pull requests, commits, reviews, comments ...
    commits = await rows(
        gh.pool,
        "SELECT count(*) AS n FROM pr_commits c JOIN pull_requests p ON p.id = c.pull_request_id "
        "WHERE p.external_id = $1",
        str(rec.id),
    )
    assert commits == [{"n": len(site.detail(rec).commits)}]

    # The next run asks for the configured old name and learns the new one.
    gh.statuses.clear()
    await gh.sync(await gh.new_run(full_sync=False, last_sync_date=NOW))
    assert gh.statuses[301] >= 1
    after = await rows(gh.pool, "SELECT id, external_id, full_name FROM repositories ORDER BY id")
    assert [(r["id"], r["external_id"]) for r in after] == [
        (r["id"], r["external_id"]) for r in before
    ]
    assert {r["full_name"] for r in after} == {"acme/api", "acme/webapp"}
    assert_matches_truth(gh, await loaded_pulls(gh), {"acme/api", "acme/webapp"})
