"""A deterministic, generated GitHub organisation with its ground truth and test mutations.

`generate_github(prs, seed)` makes exactly `prs` pull requests over a few repositories (plus
plain issues sharing their numbers and comment lists): open, closed and merged ones, drafts,
a few past 100 commits and review comments, one past GitHub's 250-commit cap. Titles, bodies,
branches and first commit messages mention Jira keys from a configurable list; each record
keeps which key it mentions where (`PullRecord.links`), the ground truth of linking. The same
seed and `now` always give the same site.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from etld.simulator.github_model import (
    DAY,
    HOUR,
    ISSUE_COMMENT_ID_BASE,
    ITEM_STRIDE,
    MINUTE,
    REVIEW_COMMENT_ID_BASE,
    REVIEW_ID_BASE,
    Additions,
    Comment,
    Commit,
    IssueRecord,
    Person,
    PullDetail,
    PullRecord,
    Repo,
    Review,
    derive_issue_comments,
    derive_pull,
    sha_of,
)

DEFAULT_REPOS = ("acme/api", "acme/web", "acme/mobile", "acme/infra")
DEFAULT_KEYS = (
    *(f"PROJ-{n}" for n in range(1, 61)),
    *(f"CORE-{n}" for n in range(1, 21)),
    *(f"OPS-{n}" for n in range(1, 21)),
)
LINK_SOURCES = ("title", "body", "branch", "commit")
_HUMANS = (
    ("octo-ana", "Ana Lima"),
    ("bjorn-dev", "Björn Berg"),
    ("chen-wei", "Chen Wei"),
    ("dara-k", "Dara Khan"),
    ("eli-m", "Eli Moreau"),
    ("fatima-z", "Fatima Zahra"),
    ("gus-o", "Gus Otto"),
    ("hana-s", "Hana Sato"),
)
_BOT = ("dependabot[bot]", "dependabot[bot]")
_PHRASES = (
    "add login throttling",
    "fix flaky export job",
    "speed up search index",
    "move billing to queue",
    "clean up feature flags",
    "support dark mode",
    "retry webhook delivery",
    "drop legacy endpoints",
)
_CACHE_SIZE = 8192


@dataclass(frozen=True)
class SiteOptions:
    repos: tuple[str, ...] = DEFAULT_REPOS
    keys: tuple[str, ...] = DEFAULT_KEYS  # Jira keys pull requests mention
    commits: tuple[int, int] = (1, 12)  # per pull request, inclusive range
    reviews: tuple[int, int] = (0, 4)
    review_comments: tuple[int, int] = (0, 5)
    issue_comments: tuple[int, int] = (0, 4)
    issues_per_pr: float = 0.25  # plain issues
    big: bool = True  # pull requests past 100 commits/comments, one past the 250 cap
    history_days: int = 180


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class GitHubSite:
    """Lookups for the simulator, ground truth for tests, and mutations for both."""

    def __init__(
        self,
        people: list[Person],
        repos: list[Repo],
        pulls: list[PullRecord],
        issues: list[IssueRecord],
        *,
        seed: int,
        now_ms: int,
        keys: tuple[str, ...],
    ) -> None:
        self.people = people
        self.repos = repos
        self.seed = seed
        self.now_ms = now_ms
        self.keys = keys
        self.base_url: str | None = None  # fixed origin of rendered URLs; None: the request's
        self.version = 0  # bumped by every mutation (sorted views are cached per version)
        self._pulls: list[dict[int, PullRecord]] = [{} for _ in repos]
        self._issues: list[dict[int, IssueRecord]] = [{} for _ in repos]
        for p in pulls:
            self._pulls[p.repo][p.number] = p
        for i in issues:
            self._issues[i.repo][i.number] = i
        self._count = len(pulls)
        self._details: dict[int, PullDetail] = {}
        self._views: dict[tuple[object, ...], list[Any]] = {}
        self.humans = [i for i, p in enumerate(people) if not p.bot]
        self.bot = next((i for i, p in enumerate(people) if p.bot), None)

    # -- lookups -------------------------------------------------------------------------------
    def repo(self, full_name: str) -> Repo | None:
        wanted = full_name.lower()
        return next((r for r in self.repos if r.full_name.lower() == wanted), None)

    def moved(self, full_name: str) -> Repo | None:
        """The repository once called `full_name`, if it was renamed."""
        wanted = full_name.lower()
        return next((r for r in self.repos if wanted in (n.lower() for n in r.old_names)), None)

    def repo_by_id(self, repo_id: int) -> Repo | None:
        return next((r for r in self.repos if r.id == repo_id), None)

    def index_of(self, repo: Repo) -> int:
        return self.repos.index(repo)

    def pulls_of(self, repo: Repo) -> list[PullRecord]:
        return list(self._pulls[self.index_of(repo)].values())

    def pull(self, repo: Repo, number: int) -> PullRecord | None:
        return self._pulls[self.index_of(repo)].get(number)

    def issue(self, repo: Repo, number: int) -> IssueRecord | None:
        return self._issues[self.index_of(repo)].get(number)

    def issues_of(self, repo: Repo) -> list[IssueRecord]:
        return list(self._issues[self.index_of(repo)].values())

    def detail(self, rec: PullRecord) -> PullDetail:
        found = self._details.get(rec.index)
        if found is None:
            if len(self._details) >= _CACHE_SIZE:
                self._details.clear()
            found = self._details[rec.index] = derive_pull(rec, self.humans, self.bot)
        return found

    def issue_comments(self, rec: IssueRecord) -> tuple[Comment, ...]:
        return derive_issue_comments(rec, self.humans)

    def view(self, key: tuple[object, ...], build: Callable[[], Iterable[Any]]) -> list[Any]:
        """A sorted view cached until the next mutation."""
        full = (self.version, *key)
        if full not in self._views:
            self._views = {k: v for k, v in self._views.items() if k[0] == self.version}
            self._views[full] = list(build())
        return self._views[full]

    # -- ground truth --------------------------------------------------------------------------
    def pulls(self) -> list[PullRecord]:
        return sorted(
            (p for per_repo in self._pulls for p in per_repo.values()), key=lambda p: p.index
        )

    @property
    def pull_count(self) -> int:
        return self._count

    # -- mutations -----------------------------------------------------------------------------
    def touch(
        self,
        full_name: str,
        number: int,
        at: datetime,
        *,
        commits: int = 0,
        reviews: int = 0,
        review_comments: int = 0,
        issue_comments: int = 0,
        merge: bool = False,
        title: str | None = None,
    ) -> PullRecord:
        """New activity on a pull request at `at`, which becomes its update time."""
        repo = self.repo(full_name)
        rec = self.pull(repo, number) if repo is not None else None
        if rec is None:
            raise KeyError(f"no pull request {full_name}#{number}")
        ms = _ms(at)
        done = self.detail(rec)
        extra = rec.additions = rec.additions or Additions()
        reviewer = next((p for p in self.humans if p != rec.author), rec.author)
        for k in range(commits):
            n = len(done.commits) + k
            extra.commits.append(
                Commit(sha_of(rec.seed, "x", n), f"Follow-up {n}", rec.author, ms, ms)
            )
        for k in range(reviews):
            rid = REVIEW_ID_BASE + rec.index * ITEM_STRIDE + len(done.reviews) + k
            extra.reviews.append(
                Review(rid, reviewer, "COMMENTED", "More", ms, sha_of(rec.seed, "x"))
            )
        for k in range(review_comments):
            cid = REVIEW_COMMENT_ID_BASE + rec.index * ITEM_STRIDE + len(done.review_comments) + k
            extra.review_comments.append(Comment(cid, reviewer, "Again", ms, ms, "src/app.py"))
        for k in range(issue_comments):
            cid = ISSUE_COMMENT_ID_BASE + rec.index * ITEM_STRIDE + len(done.issue_comments) + k
            extra.issue_comments.append(Comment(cid, reviewer, "Ping", ms, ms))
        rec.updated_ms = ms
        if merge:
            rec.merged_ms = rec.closed_ms = ms
            rec.draft = False
        if title is not None:
            rec.title = title
        self._changed(rec)
        return rec

    def comment_issue(self, full_name: str, number: int, at: datetime) -> Comment:
        """A conversation comment on a plain issue."""
        repo = self.repo(full_name)
        rec = self.issue(repo, number) if repo is not None else None
        if rec is None:
            raise KeyError(f"no issue {full_name}#{number}")
        ms = _ms(at)
        rec.additions = rec.additions or Additions()
        n = rec.comments + len(rec.additions.issue_comments)
        comment = Comment(
            ISSUE_COMMENT_ID_BASE + rec.index * ITEM_STRIDE + n, rec.author, "Hm", ms, ms
        )
        rec.additions.issue_comments.append(comment)
        rec.updated_ms = ms
        self.version += 1
        return comment

    def rename(self, full_name: str, new_name: str) -> Repo:
        """Rename a repository; the old name answers 301/307 to /repositories/{id}."""
        repo = self.repo(full_name)
        if repo is None:
            raise KeyError(f"no repository {full_name}")
        repo.old_names.append(repo.full_name)
        repo.name = new_name
        self.version += 1
        return repo

    def _changed(self, rec: PullRecord) -> None:
        self._details.pop(rec.index, None)
        self.version += 1


def generate_github(
    prs: int, seed: int, *, now: datetime | None = None, options: SiteOptions | None = None
) -> GitHubSite:
    opts = options or SiteOptions()
    now_ms = _ms(now or datetime.now(UTC)) // 1000 * 1000
    rng = random.Random(seed)
    people = [
        Person(login, 9000 + i, name, f"{login}@users.noreply.example.com")
        for i, (login, name) in enumerate((*_HUMANS, _BOT))
    ]
    repos = [
        Repo(
            5_000_000 + i * 17 + seed % 7,
            full.split("/", 1)[0],
            full.split("/", 1)[1],
            i % 2 == 1,
            f"The {full.split('/', 1)[1]} service",
            now_ms - 700 * DAY + i * DAY,
            now_ms - rng.randint(HOUR, 5 * DAY),
        )
        for i, full in enumerate(opts.repos)
    ]
    weights = [1.0 / (i + 1) for i in range(len(repos))]
    humans = list(range(len(_HUMANS)))
    pulls = [_pull(i, rng, opts, now_ms, weights, humans, prs) for i in range(prs)]
    issues = [
        _issue(i, rng, opts, now_ms, weights, humans) for i in range(int(prs * opts.issues_per_pr))
    ]
    # Pull requests and issues share each repository's numbers, in order of creation.
    for r in range(len(repos)):
        items: list[PullRecord | IssueRecord] = [p for p in pulls if p.repo == r]
        items += [i for i in issues if i.repo == r]
        for number, item in enumerate(sorted(items, key=lambda x: (x.created_ms, x.id)), 1):
            item.number = number
    return GitHubSite(people, repos, pulls, issues, seed=seed, now_ms=now_ms, keys=opts.keys)


def _pull(
    i: int,
    rng: random.Random,
    opts: SiteOptions,
    now_ms: int,
    weights: list[float],
    humans: list[int],
    total: int,
) -> PullRecord:
    repo = rng.choices(range(len(weights)), weights)[0]
    created = now_ms - rng.randint(4 * HOUR, opts.history_days * DAY)
    end = min(created + rng.randint(3 * HOUR, 10 * DAY), now_ms - rng.randint(MINUTE, HOUR))
    roll = rng.random()
    merged = end if roll < 0.7 else None
    closed = end if roll < 0.8 else None
    counts = (
        rng.randint(*opts.commits),
        rng.randint(*opts.reviews),
        rng.randint(*opts.review_comments),
        rng.randint(*opts.issue_comments),
    )
    if opts.big and total >= 3 and i < 2:
        repo = 0  # the busiest repository holds the big ones
        counts = (130, 3, 120, 105) if i == 0 else (260, 2, 4, 2)
    phrase = rng.choice(_PHRASES)
    slug = phrase.replace(" ", "-")
    links: set[tuple[str, str]] = set()
    key = rng.choice(opts.keys) if opts.keys and rng.random() < 0.85 else None
    if key:
        links.add((key, LINK_SOURCES[i % 4]))
        if rng.random() < 0.25:
            links.add((key, "body"))
    sources = {s for _, s in links}
    body = "Follow-up work." + (" Handles UTF-8 input." if rng.random() < 0.1 else "")
    if "body" in sources:
        body += f"\n\nCloses {key}."
    return PullRecord(
        index=i,
        repo=repo,
        number=0,  # assigned once every item of the repository is known
        id=1_000_000_000 + i * 3 + 1,
        seed=rng.getrandbits(32),
        author=rng.choice(humans),
        created_ms=created,
        base_end_ms=end,
        updated_ms=end,
        closed_ms=closed,
        merged_ms=merged,
        draft=closed is None and rng.random() < 0.3,
        title=(f"{key} " if "title" in sources else "") + phrase.capitalize(),
        body=body,
        head_ref=f"feature/{key.lower()}-{slug}"
        if key and "branch" in sources
        else f"topic/{slug}-{i}",
        base_ref="main",
        counts=counts,
        links=frozenset(links),
    )


def _issue(
    i: int,
    rng: random.Random,
    opts: SiteOptions,
    now_ms: int,
    weights: list[float],
    humans: list[int],
) -> IssueRecord:
    created = now_ms - rng.randint(4 * HOUR, opts.history_days * DAY)
    return IssueRecord(
        index=10_000_000 + i,
        repo=rng.choices(range(len(weights)), weights)[0],
        number=0,
        id=1_500_000_000 + i,
        seed=rng.getrandbits(32),
        author=rng.choice(humans),
        created_ms=created,
        updated_ms=min(created + rng.randint(HOUR, 5 * DAY), now_ms - MINUTE),
        title=f"Issue: {rng.choice(_PHRASES)}",
        comments=rng.randint(0, 3),
    )
