"""GitHub's published example answers and recorded fixtures, stored as pages and transformed:
every sample that is a transform input loads without error, and what it says arrives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from etld.sources.base import RawPage, get_source
from tests.integration.test_github_support import MakeGitHub, github_factory, rows
from tests.integration.test_jira_support import Collector, quiet_logs  # noqa: F401

SAMPLES = Path("/work/shared/reference/api-samples/github")
HELLO = {"id": "1296269", "full_name": "octocat/Hello-World"}


@pytest.fixture
def make_github(
    pool: asyncpg.Pool, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> MakeGitHub:
    return github_factory(pool, aiohttp_server, monkeypatch)


def sample(name: str) -> Any:
    return orjson.loads((SAMPLES / f"{name}.json").read_bytes())


def pages() -> list[tuple[str, str, Any]]:
    """(step, page type, payload) for every sample that is a transform input, in step order."""
    pull = sample("pulls_get")
    recorded_repo = sample("octokit_recorded_get_repository")[0]["response_body"]
    return [
        ("github_repositories", "github_repositories", sample("user_repos")),
        ("github_repositories", "github_repository", recorded_repo),
        ("github_repositories", "github_repository", sample("pulls_list")[0]["base"]["repo"]),
        (
            "github_pull_requests",
            "github_pulls",
            {"repository": HELLO, "pulls": sample("pulls_list")},
        ),
        (
            "github_pull_requests",
            "github_pull_details",
            {
                "repository": HELLO,
                "pulls": [
                    {
                        "pull": {
                            "id": pull["id"],
                            "number": pull["number"],
                            "updated_at": pull["updated_at"],
                        },
                        "commits": [sample("pulls_commits")],
                        "commits_complete": True,
                        "reviews": [sample("pulls_reviews")],
                        "reviews_complete": True,
                        "pull_detail": pull,
                    }
                ],
            },
        ),
        ("github_pull_requests", "github_pulls", {"repository": HELLO, "pulls": [pull]}),
        (
            "github_comments",
            "github_review_comments",
            {"repository": HELLO, "comments": sample("pulls_review_comments")},
        ),
        (
            "github_comments",
            "github_issue_comments",
            {"repository": HELLO, "comments": sample("issues_comments")},
        ),
    ]


async def test_every_sample_transforms(make_github: MakeGitHub) -> None:
    gh = await make_github(1)
    run = await gh.new_run(full_sync=True)
    ctx = await gh.context(run)
    source = get_source("github")
    for n, (step, type_, payload) in enumerate(pages()):
        page = RawPage(n + 1, type_, orjson.loads(orjson.dumps(payload)))
        await source.step(step).transform(ctx, page, Collector())

    repos = await rows(gh.pool, "SELECT full_name FROM repositories ORDER BY full_name")
    assert [r["full_name"] for r in repos] == [
        "octocat/Hello-World",
        "octokit-fixture-org/hello-world",
    ]
    pulls = await rows(
        gh.pool,
        "SELECT number, title, state, merged, author_login, head_ref, base_ref, additions, "
        "deletions, changed_files, commits_count, coding_time_seconds, cycle_time_seconds "
        "FROM pull_requests",
    )
    pull = sample("pulls_get")
    assert pulls == [
        {
            "number": 1347,
            "title": "Amazing new feature",
            "state": "open",
            "merged": False,  # the answer alone says so, whatever its merged_at
            "author_login": "octocat",
            "head_ref": "new-topic",
            "base_ref": "master",
            "additions": pull["additions"],
            "deletions": pull["deletions"],
            "changed_files": pull["changed_files"],
            "commits_count": pull["commits"],
            "coding_time_seconds": 0.0,  # the sample's commit is dated after the opening
            "cycle_time_seconds": pytest.approx(0.0),
        }
    ]
    children = await rows(
        gh.pool,
        "SELECT (SELECT count(*) FROM pr_commits) AS commits, "
        "(SELECT count(*) FROM pr_reviews) AS reviews, "
        "(SELECT count(*) FROM pr_comments WHERE kind = 'issue') AS issue_comments, "
        "(SELECT count(*) FROM pr_comments WHERE kind = 'review') AS review_comments",
    )
    # The review comment sample belongs to pull request #1, which is not loaded.
    assert children == [{"commits": 1, "reviews": 1, "issue_comments": 1, "review_comments": 0}]
