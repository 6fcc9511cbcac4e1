"""Records of the simulated GitHub rendered in the REST API's JSON shapes (those of GitHub's
published examples): users, repositories, pull requests as listed and as fetched alone,
commits, reviews, review comments and issue comments.

`api` is the API root the client called (the simulator's origin); web links point at
github.com as on the real site. Repository objects are large and repeated in every pull
request (head and base), so they are cached per repository name and API root.
"""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime
from typing import Any

from etld.simulator.github_data import GitHubSite
from etld.simulator.github_model import (
    Comment,
    Commit,
    Person,
    PullRecord,
    Repo,
    Review,
    sha_of,
)

WEB = "https://github.com"
Json = dict[str, Any]

_REPO_TEMPLATES = (
    ("archive_url", "/{archive_format}{/ref}"),
    ("assignees_url", "/assignees{/user}"),
    ("blobs_url", "/git/blobs{/sha}"),
    ("branches_url", "/branches{/branch}"),
    ("collaborators_url", "/collaborators{/collaborator}"),
    ("comments_url", "/comments{/number}"),
    ("commits_url", "/commits{/sha}"),
    ("compare_url", "/compare/{base}...{head}"),
    ("contents_url", "/contents/{+path}"),
    ("contributors_url", "/contributors"),
    ("deployments_url", "/deployments"),
    ("downloads_url", "/downloads"),
    ("events_url", "/events"),
    ("forks_url", "/forks"),
    ("git_commits_url", "/git/commits{/sha}"),
    ("git_refs_url", "/git/refs{/sha}"),
    ("git_tags_url", "/git/tags{/sha}"),
    ("issue_comment_url", "/issues/comments{/number}"),
    ("issue_events_url", "/issues/events{/number}"),
    ("issues_url", "/issues{/number}"),
    ("keys_url", "/keys{/key_id}"),
    ("labels_url", "/labels{/name}"),
    ("languages_url", "/languages"),
    ("merges_url", "/merges"),
    ("milestones_url", "/milestones{/number}"),
    ("notifications_url", "/notifications{?since,all,participating}"),
    ("pulls_url", "/pulls{/number}"),
    ("releases_url", "/releases{/id}"),
    ("stargazers_url", "/stargazers"),
    ("statuses_url", "/statuses/{sha}"),
    ("subscribers_url", "/subscribers"),
    ("subscription_url", "/subscription"),
    ("tags_url", "/tags"),
    ("teams_url", "/teams"),
    ("trees_url", "/git/trees{/sha}"),
    ("hooks_url", "/hooks"),
)


def stamp(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_id(kind: str, number: int) -> str:
    return base64.b64encode(f"0{len(kind)}:{kind}{number}".encode()).decode()


class Renderer:
    """Renders one site's records for one API root."""

    def __init__(self, site: GitHubSite, api: str) -> None:
        self.site = site
        self.api = api.rstrip("/")
        self._repos: dict[tuple[int, str], Json] = {}

    def user(self, person: Person) -> Json:
        u = f"{self.api}/users/{person.login}"
        return {
            "login": person.login,
            "id": person.id,
            "node_id": node_id("User", person.id),
            "avatar_url": f"https://avatars.example.com/u/{person.id}?v=4",
            "gravatar_id": "",
            "url": u,
            "html_url": f"{WEB}/{person.login}",
            "followers_url": f"{u}/followers",
            "following_url": f"{u}/following{{/other_user}}",
            "gists_url": f"{u}/gists{{/gist_id}}",
            "starred_url": f"{u}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{u}/subscriptions",
            "organizations_url": f"{u}/orgs",
            "repos_url": f"{u}/repos",
            "events_url": f"{u}/events{{/privacy}}",
            "received_events_url": f"{u}/received_events",
            "type": "Bot" if person.bot else "User",
            "site_admin": False,
        }

    def person(self, index: int) -> Json:
        return self.user(self.site.people[index])

    def owner(self, repo: Repo) -> Json:
        owner = Person(repo.owner, 7000 + sum(map(ord, repo.owner)), repo.owner, "")
        return {**self.user(owner), "type": "Organization"}

    def repo(self, repo: Repo) -> Json:
        key = (repo.id, repo.full_name)
        if key not in self._repos:
            self._repos[key] = self._repo(repo)
        return self._repos[key]

    def _repo(self, repo: Repo) -> Json:
        url = f"{self.api}/repos/{repo.full_name}"
        rng = random.Random(repo.id)
        out: Json = {
            "id": repo.id,
            "node_id": node_id("Repository", repo.id),
            "name": repo.name,
            "full_name": repo.full_name,
            "private": repo.private,
            "owner": self.owner(repo),
            "html_url": f"{WEB}/{repo.full_name}",
            "description": repo.description,
            "fork": False,
            "url": url,
        }
        out.update((name, url + suffix) for name, suffix in _REPO_TEMPLATES)
        open_pulls = sum(1 for p in self.site.pulls_of(repo) if p.closed_ms is None)
        out.update(
            {
                "created_at": stamp(repo.created_ms),
                "updated_at": stamp(repo.pushed_ms),
                "pushed_at": stamp(repo.pushed_ms),
                "git_url": f"git://github.com/{repo.full_name}.git",
                "ssh_url": f"git@github.com:{repo.full_name}.git",
                "clone_url": f"{WEB}/{repo.full_name}.git",
                "svn_url": f"{WEB}/{repo.full_name}",
                "homepage": None,
                "size": rng.randint(100, 90_000),
                "stargazers_count": rng.randint(0, 500),
                "watchers_count": rng.randint(0, 500),
                "language": rng.choice(["Python", "TypeScript", "Go", "Kotlin"]),
                "has_issues": True,
                "has_projects": True,
                "has_downloads": True,
                "has_wiki": False,
                "has_pages": False,
                "forks_count": rng.randint(0, 30),
                "mirror_url": None,
                "archived": False,
                "disabled": False,
                "open_issues_count": open_pulls,
                "license": None,
                "allow_forking": True,
                "is_template": False,
                "topics": [],
                "visibility": "private" if repo.private else "public",
                "forks": 0,
                "open_issues": open_pulls,
                "watchers": 0,
                "default_branch": "main",
                "permissions": {
                    "admin": False,
                    "maintain": False,
                    "push": True,
                    "triage": True,
                    "pull": True,
                },
            }
        )
        return out

    def pull(self, rec: PullRecord, *, full: bool = False) -> Json:
        """A pull request as listed; `full` adds what only `GET /pulls/{n}` tells."""
        repo = self.site.repos[rec.repo]
        base = f"{self.api}/repos/{repo.full_name}"
        url = f"{base}/pulls/{rec.number}"
        detail = self.site.detail(rec)
        head_sha = detail.commits[-1].sha if detail.commits else sha_of(rec.seed, "head")
        author = self.person(rec.author)
        html = f"{WEB}/{repo.full_name}/pull/{rec.number}"
        out: Json = {
            "url": url,
            "id": rec.id,
            "node_id": node_id("PullRequest", rec.id),
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": f"{base}/issues/{rec.number}",
            "commits_url": f"{url}/commits",
            "review_comments_url": f"{url}/comments",
            "review_comment_url": f"{base}/pulls/comments{{/number}}",
            "comments_url": f"{base}/issues/{rec.number}/comments",
            "statuses_url": f"{base}/statuses/{head_sha}",
            "number": rec.number,
            "state": rec.state,
            "locked": False,
            "title": rec.title,
            "user": author,
            "body": rec.body,
            "labels": [],
            "milestone": None,
            "active_lock_reason": None,
            "created_at": stamp(rec.created_ms),
            "updated_at": stamp(rec.updated_ms),
            "closed_at": stamp(rec.closed_ms),
            "merged_at": stamp(rec.merged_ms),
            "merge_commit_sha": sha_of(rec.seed, "merge") if rec.merged_ms else None,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "head": self._ref(repo, rec.head_ref, head_sha, author),
            "base": self._ref(repo, rec.base_ref, sha_of(repo.id, rec.base_ref), author),
            "_links": {
                "self": {"href": url},
                "html": {"href": html},
                "issue": {"href": f"{base}/issues/{rec.number}"},
                "comments": {"href": f"{base}/issues/{rec.number}/comments"},
                "review_comments": {"href": f"{url}/comments"},
                "review_comment": {"href": f"{base}/pulls/comments{{/number}}"},
                "commits": {"href": f"{url}/commits"},
                "statuses": {"href": f"{base}/statuses/{head_sha}"},
            },
            "author_association": "MEMBER",
            "auto_merge": None,
            "draft": rec.draft,
        }
        if full:
            rng = random.Random(rec.seed ^ 0xF11E)
            out.update(
                {
                    "merged": rec.merged_ms is not None,
                    "mergeable": None if rec.closed_ms else True,
                    "rebaseable": None if rec.closed_ms else True,
                    "mergeable_state": "unknown" if rec.closed_ms else "clean",
                    "merged_by": self.person(rec.author) if rec.merged_ms else None,
                    "comments": len(detail.issue_comments),
                    "review_comments": len(detail.review_comments),
                    "maintainer_can_modify": False,
                    "commits": len(detail.commits),
                    "additions": rng.randint(1, 40) * max(1, len(detail.commits)),
                    "deletions": rng.randint(0, 20) * max(1, len(detail.commits)),
                    "changed_files": rng.randint(1, 12),
                }
            )
        return out

    def _ref(self, repo: Repo, ref: str, sha: str, user: Json) -> Json:
        return {
            "label": f"{repo.owner}:{ref}",
            "ref": ref,
            "sha": sha,
            "user": user,
            "repo": self.repo(repo),
        }

    def commit(self, repo: Repo, c: Commit) -> Json:
        base = f"{self.api}/repos/{repo.full_name}"
        person = self.site.people[c.author]
        author = {"name": person.name, "email": person.email, "date": stamp(c.authored_ms)}
        committer = {"name": person.name, "email": person.email, "date": stamp(c.committed_ms)}
        return {
            "url": f"{base}/commits/{c.sha}",
            "sha": c.sha,
            "node_id": node_id("Commit", int(c.sha[:8], 16)),
            "html_url": f"{WEB}/{repo.full_name}/commit/{c.sha}",
            "comments_url": f"{base}/commits/{c.sha}/comments",
            "commit": {
                "url": f"{base}/git/commits/{c.sha}",
                "author": author,
                "committer": committer,
                "message": c.message,
                "tree": {"url": f"{base}/tree/{sha_of(c.sha, 't')}", "sha": sha_of(c.sha, "t")},
                "comment_count": 0,
                "verification": {
                    "verified": False,
                    "reason": "unsigned",
                    "signature": None,
                    "payload": None,
                    "verified_at": None,
                },
            },
            "author": self.user(person),
            "committer": self.user(person),
            "parents": [{"url": f"{base}/commits/{sha_of(c.sha, 'p')}", "sha": sha_of(c.sha, "p")}],
        }

    def review(self, repo: Repo, rec: PullRecord, r: Review) -> Json:
        pull = f"{self.api}/repos/{repo.full_name}/pulls/{rec.number}"
        html = f"{WEB}/{repo.full_name}/pull/{rec.number}#pullrequestreview-{r.id}"
        return {
            "id": r.id,
            "node_id": node_id("PullRequestReview", r.id),
            "user": self.person(r.user),
            "body": r.body,
            "state": r.state,
            "html_url": html,
            "pull_request_url": pull,
            "_links": {"html": {"href": html}, "pull_request": {"href": pull}},
            "submitted_at": stamp(r.submitted_ms),
            "commit_id": r.commit_sha,
            "author_association": "MEMBER",
        }

    def review_comment(self, repo: Repo, rec: PullRecord, c: Comment) -> Json:
        base = f"{self.api}/repos/{repo.full_name}"
        url = f"{base}/pulls/comments/{c.id}"
        pull = f"{base}/pulls/{rec.number}"
        html = f"{WEB}/{repo.full_name}/pull/{rec.number}#discussion_r{c.id}"
        sha = sha_of(rec.seed, "head")
        return {
            "url": url,
            "pull_request_review_id": c.review_id,
            "id": c.id,
            "node_id": node_id("PullRequestReviewComment", c.id),
            "diff_hunk": "@@ -16,33 +16,40 @@ def handler(request):",
            "path": c.path,
            "position": 1,
            "original_position": 4,
            "commit_id": sha,
            "original_commit_id": sha,
            "user": self.person(c.user),
            "body": c.body,
            "created_at": stamp(c.created_ms),
            "updated_at": stamp(c.updated_ms),
            "html_url": html,
            "pull_request_url": pull,
            "author_association": "MEMBER",
            "_links": {
                "self": {"href": url},
                "html": {"href": html},
                "pull_request": {"href": pull},
            },
            "start_line": None,
            "original_start_line": None,
            "start_side": None,
            "line": 2,
            "original_line": 2,
            "side": "RIGHT",
        }

    def issue_comment(self, repo: Repo, number: int, c: Comment) -> Json:
        base = f"{self.api}/repos/{repo.full_name}"
        return {
            "id": c.id,
            "node_id": node_id("IssueComment", c.id),
            "url": f"{base}/issues/comments/{c.id}",
            "html_url": f"{WEB}/{repo.full_name}/issues/{number}#issuecomment-{c.id}",
            "body": c.body,
            "user": self.person(c.user),
            "created_at": stamp(c.created_ms),
            "updated_at": stamp(c.updated_ms),
            "issue_url": f"{base}/issues/{number}",
            "author_association": "MEMBER",
            "minimized": None,
        }
