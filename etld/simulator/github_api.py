"""Endpoints of the simulated GitHub: repositories (of the user, an organisation, a user, one
by name or id), pull requests (listed, alone, commits, reviews, review comments) and issue
comments (per issue and repository-wide), each repository route under `/repos/{owner}/{name}`
and `/repositories/{id}`. Lists page by `Link`; a renamed repository's old name redirects.

Like GitHub: the pull request list defaults to open ones, newest first; it omits `merged`,
`additions`, `commits` and the other counts `GET /pulls/{n}` has; `/pulls/{n}/commits` stops
at 250; the repository-wide issue comment list includes comments on plain issues; comment
lists take `since` (by update time) and `sort`/`direction`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from etld.simulator.github_data import GitHubSite
from etld.simulator.github_model import COMMITS_CAP, Comment, PullRecord, Repo
from etld.simulator.github_web import (
    SITE,
    GitHubError,
    Moved,
    api_root,
    choice,
    invalid,
    json_response,
    paginate,
    renderer,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_PREFIXES = ("/repos/{owner}/{name}", "/repositories/{repo_id:\\d+}")


def site_of(request: web.Request) -> GitHubSite:
    return request.app[SITE]


def repo_of(request: web.Request) -> Repo:
    """The repository the path names; Moved for an old name, 404 for an unknown one."""
    site = site_of(request)
    match = request.match_info
    if "repo_id" in match:
        found = site.repo_by_id(int(match["repo_id"]))
    else:
        full = f"{match['owner']}/{match['name']}"
        found = site.repo(full)
        if found is None and (moved := site.moved(full)) is not None:
            rest = request.path[len(f"/repos/{full}") :]
            query = f"?{request.query_string}" if request.query_string else ""
            raise Moved(f"{api_root(request)}/repositories/{moved.id}{rest}{query}")
    if found is None:
        raise GitHubError(404, "Not Found")
    return found


def canonical(repo: Repo, tail: str) -> str:
    """Where GitHub's page links point: the repository by id, immune to renames."""
    return f"/repositories/{repo.id}{tail}"


def pull_of(request: web.Request, repo: Repo) -> PullRecord:
    try:
        number = int(request.match_info["number"])
    except ValueError:
        raise GitHubError(404, "Not Found") from None
    rec = site_of(request).pull(repo, number)
    if rec is None:
        raise GitHubError(404, "Not Found")
    return rec


def since_of(request: web.Request, resource: str) -> int | None:
    raw = request.query.get("since")
    if not raw:
        return None
    try:
        return int(datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        raise invalid(resource, "since") from None


# -- repositories --------------------------------------------------------------------------------


async def user_repos(request: web.Request) -> web.StreamResponse:
    repos = sorted(site_of(request).repos, key=lambda r: r.full_name.lower())
    return _repo_list(request, repos, "/user/repos")


async def org_repos(request: web.Request) -> web.StreamResponse:
    org = request.match_info["org"].lower()
    repos = [r for r in site_of(request).repos if r.owner.lower() == org]
    if not repos:
        raise GitHubError(404, "Not Found")
    return _repo_list(request, repos, request.path)


def _repo_list(request: web.Request, repos: list[Repo], path: str) -> web.StreamResponse:
    page, links = paginate(request, repos, path, "Repository")
    r = renderer(request)
    return json_response([r.repo(x) for x in page], headers=links)


async def repo_get(request: web.Request) -> web.StreamResponse:
    return json_response(renderer(request).repo(repo_of(request)))


# -- pull requests -------------------------------------------------------------------------------


def _pull_order(sort: str) -> Callable[[PullRecord], Any]:
    if sort == "updated":
        return lambda p: (p.updated_ms, p.number)
    if sort == "long-running":
        return lambda p: ((p.closed_ms or 0) - p.created_ms, p.number)
    if sort == "popularity":
        return lambda p: (sum(p.counts[2:]), p.number)
    return lambda p: (p.created_ms, p.number)


async def pulls_list(request: web.Request) -> web.StreamResponse:
    repo = repo_of(request)
    state = choice(request, "state", ("open", "closed", "all"), "open", "PullRequest")
    sorts = ("created", "updated", "popularity", "long-running")
    sort = choice(request, "sort", sorts, "created", "PullRequest")
    direction = choice(
        request, "direction", ("asc", "desc"), "desc" if sort == "created" else "asc", "PullRequest"
    )
    site = site_of(request)
    pulls = site.view(
        ("pulls", repo.id, state, sort, direction),
        lambda: sorted(
            (p for p in site.pulls_of(repo) if state == "all" or p.state == state),
            key=_pull_order(sort),
            reverse=direction == "desc",
        ),
    )
    page, links = paginate(request, pulls, canonical(repo, "/pulls"), "PullRequest")
    r = renderer(request)
    return json_response([r.pull(p) for p in page], headers=links)


async def pull_get(request: web.Request) -> web.StreamResponse:
    repo = repo_of(request)
    return json_response(renderer(request).pull(pull_of(request, repo), full=True))


async def pull_commits(request: web.Request) -> web.StreamResponse:
    repo = repo_of(request)
    rec = pull_of(request, repo)
    commits = site_of(request).detail(rec).commits
    tail = f"/pulls/{rec.number}/commits"
    page, links = paginate(request, commits, canonical(repo, tail), "Commit", cap=COMMITS_CAP)
    r = renderer(request)
    return json_response([r.commit(repo, c) for c in page], headers=links)


async def pull_reviews(request: web.Request) -> web.StreamResponse:
    repo = repo_of(request)
    rec = pull_of(request, repo)
    reviews = site_of(request).detail(rec).reviews
    page, links = paginate(
        request, reviews, canonical(repo, f"/pulls/{rec.number}/reviews"), "PullRequestReview"
    )
    r = renderer(request)
    return json_response([r.review(repo, rec, x) for x in page], headers=links)


async def pull_review_comments(request: web.Request) -> web.StreamResponse:
    repo = repo_of(request)
    rec = pull_of(request, repo)
    found = [(c, rec) for c in site_of(request).detail(rec).review_comments]
    tail = f"/pulls/{rec.number}/comments"
    return _review_comments(
        request, repo, _sorted_since(request, found, "PullRequestReviewComment"), tail
    )


async def repo_review_comments(request: web.Request) -> web.StreamResponse:
    repo = repo_of(request)
    site = site_of(request)
    every = site.view(
        ("review_comments", repo.id),
        lambda: ((c, p) for p in site.pulls_of(repo) for c in site.detail(p).review_comments),
    )
    found = _sorted_since(request, every, "PullRequestReviewComment")
    return _review_comments(request, repo, found, "/pulls/comments")


def _review_comments(
    request: web.Request, repo: Repo, found: list[Any], tail: str
) -> web.StreamResponse:
    page, links = paginate(request, found, canonical(repo, tail), "PullRequestReviewComment")
    r = renderer(request)
    return json_response([r.review_comment(repo, p, c) for c, p in page], headers=links)


async def issue_comments(request: web.Request) -> web.StreamResponse:
    repo = repo_of(request)
    site = site_of(request)
    number = int(request.match_info["number"])
    pull = site.pull(repo, number)
    issue = site.issue(repo, number)
    if pull is not None:
        comments: tuple[Comment, ...] = site.detail(pull).issue_comments
    elif issue is not None:
        comments = site.issue_comments(issue)
    else:
        raise GitHubError(404, "Not Found")
    found = _sorted_since(request, [(c, number) for c in comments], "IssueComment")
    return _issue_comments(request, repo, found, f"/issues/{number}/comments")


async def repo_issue_comments(request: web.Request) -> web.StreamResponse:
    repo = repo_of(request)
    site = site_of(request)
    every = site.view(
        ("issue_comments", repo.id),
        lambda: [
            *((c, p.number) for p in site.pulls_of(repo) for c in site.detail(p).issue_comments),
            *((c, i.number) for i in site.issues_of(repo) for c in site.issue_comments(i)),
        ],
    )
    found = _sorted_since(request, every, "IssueComment")
    return _issue_comments(request, repo, found, "/issues/comments")


def _issue_comments(
    request: web.Request, repo: Repo, found: list[Any], tail: str
) -> web.StreamResponse:
    page, links = paginate(request, found, canonical(repo, tail), "IssueComment")
    r = renderer(request)
    return json_response([r.issue_comment(repo, n, c) for c, n in page], headers=links)


def _sorted_since(request: web.Request, items: list[Any], resource: str) -> list[Any]:
    """(comment, owner) pairs updated since `since`, by `sort`/`direction` (default: by id)."""
    since = since_of(request, resource)
    sort = choice(request, "sort", ("created", "updated"), "created", resource)
    direction = choice(request, "direction", ("asc", "desc"), "asc", resource)
    kept = [x for x in items if since is None or x[0].updated_ms >= since]
    if sort == "updated":
        kept.sort(key=lambda x: (x[0].updated_ms, x[0].id))
    else:
        kept.sort(key=lambda x: (x[0].created_ms, x[0].id))
    if direction == "desc":
        kept.reverse()
    return kept


# -- the rest --------------------------------------------------------------------------------------


async def authenticated_user(request: web.Request) -> web.StreamResponse:
    return json_response(renderer(request).person(0))


async def rate_limit(request: web.Request) -> web.StreamResponse:
    return json_response({"resources": {}, "rate": {}})  # headers carry the figures


async def moved_or_missing(request: web.Request) -> web.StreamResponse:
    """Any other method or path under a repository: redirects for old names, else 404."""
    repo_of(request)
    raise GitHubError(404, "Not Found")


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/user", authenticated_user)
    r.add_get("/rate_limit", rate_limit)
    r.add_get("/user/repos", user_repos)
    r.add_get("/orgs/{org}/repos", org_repos)
    r.add_get("/users/{org}/repos", org_repos)
    for prefix in _PREFIXES:
        r.add_get(prefix, repo_get)
        r.add_get(prefix + "/pulls", pulls_list)
        r.add_get(prefix + "/pulls/comments", repo_review_comments)
        r.add_get(prefix + "/pulls/{number}", pull_get)
        r.add_get(prefix + "/pulls/{number}/commits", pull_commits)
        r.add_get(prefix + "/pulls/{number}/reviews", pull_reviews)
        r.add_get(prefix + "/pulls/{number}/comments", pull_review_comments)
        r.add_get(prefix + "/issues/comments", repo_issue_comments)
        r.add_get(prefix + "/issues/{number:\\d+}/comments", issue_comments)
    r.add_route("*", "/repos/{owner}/{name}{tail:(/.*)?}", moved_or_missing)
