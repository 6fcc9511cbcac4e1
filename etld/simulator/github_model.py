"""The records of the simulated GitHub: people, repositories, pull requests, plain issues and
what hangs off a pull request (commits, reviews, review and conversation comments).

Pull requests and issues are stored compactly (`PullRecord`, `IssueRecord`); their commits,
reviews and comments are derived from the record's seed on demand (`derive_pull`), so a site of
100,000 pull requests stays small. Everything a test adds later (`Additions`) is kept beside
the record and appended to what the seed gives. Times are epoch milliseconds.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
COMMITS_CAP = 250  # GitHub lists at most this many commits of a pull request
REVIEW_ID_BASE = 2_000_000_000
REVIEW_COMMENT_ID_BASE = 3_000_000_000
ISSUE_COMMENT_ID_BASE = 4_000_000_000
ITEM_STRIDE = 1000  # ids per pull request (or issue) for each kind of child


@dataclass(frozen=True, slots=True)
class Person:
    login: str
    id: int
    name: str
    email: str

    @property
    def bot(self) -> bool:
        return self.login.endswith("[bot]")


@dataclass(slots=True)
class Repo:
    id: int
    owner: str
    name: str
    private: bool
    description: str
    created_ms: int
    pushed_ms: int
    old_names: list[str] = field(default_factory=list)  # full names it was known by

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass(frozen=True, slots=True)
class Commit:
    sha: str
    message: str
    author: int  # index into the site's people
    authored_ms: int
    committed_ms: int


@dataclass(frozen=True, slots=True)
class Review:
    id: int
    user: int
    state: str  # APPROVED, CHANGES_REQUESTED, COMMENTED
    body: str
    submitted_ms: int
    commit_sha: str


@dataclass(frozen=True, slots=True)
class Comment:
    id: int
    user: int
    body: str
    created_ms: int
    updated_ms: int
    path: str | None = None  # review comments only
    review_id: int | None = None


@dataclass(slots=True)
class Additions:
    """What tests added to a pull request or issue after generation."""

    commits: list[Commit] = field(default_factory=list)
    reviews: list[Review] = field(default_factory=list)
    review_comments: list[Comment] = field(default_factory=list)
    issue_comments: list[Comment] = field(default_factory=list)


@dataclass(slots=True)
class PullRecord:
    index: int  # site-wide ordinal: ids of children derive from it
    repo: int  # index into the site's repositories
    number: int
    id: int
    seed: int
    author: int
    created_ms: int
    base_end_ms: int  # generated activity lies before this
    updated_ms: int
    closed_ms: int | None
    merged_ms: int | None
    draft: bool
    title: str
    body: str
    head_ref: str
    base_ref: str
    counts: tuple[int, int, int, int]  # commits, reviews, review comments, issue comments
    links: frozenset[tuple[str, str]]  # (Jira key, where it is mentioned): ground truth
    additions: Additions | None = None  # made on the first test mutation

    @property
    def state(self) -> str:
        return "closed" if self.closed_ms is not None else "open"


@dataclass(slots=True)
class IssueRecord:
    """A plain issue: it shares the number space and the comment list with pull requests."""

    index: int
    repo: int
    number: int
    id: int
    seed: int
    author: int
    created_ms: int
    updated_ms: int
    title: str
    comments: int
    additions: Additions | None = None  # made on the first test mutation


@dataclass(frozen=True, slots=True)
class PullDetail:
    commits: tuple[Commit, ...]  # oldest first, all of them (the API lists the first 250)
    reviews: tuple[Review, ...]
    review_comments: tuple[Comment, ...]
    issue_comments: tuple[Comment, ...]


_NONE = Additions()  # what a record without additions has (never appended to)


def sha_of(*parts: object) -> str:
    return hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=20).hexdigest()


def _spread(rng: random.Random, n: int, start: int, end: int) -> list[int]:
    """n sorted times in [start, end]."""
    end = max(end, start + n)
    return sorted(rng.randint(start, end) for _ in range(n))


_REVIEW_STATES = ("APPROVED", "CHANGES_REQUESTED", "COMMENTED", "COMMENTED")
_PATHS = ("src/app.py", "src/api/routes.py", "web/index.ts", "README.md", "db/schema.sql")
_REMARKS = (
    "Looks good to me.",
    "Could we add a test for this?",
    "Nit: naming.",
    "Why is this needed?",
    "Thanks, fixed.",
    "This handles UTF-8 input now.",
)


def derive_pull(rec: PullRecord, reviewers: list[int], bot: int | None = None) -> PullDetail:
    """The generated children of a pull request, then what tests added. With `bot`, some
    conversations open with a bot's comment (which is no one picking the work up)."""
    rng = random.Random(rec.seed)
    n_commits, n_reviews, n_review_comments, n_issue_comments = rec.counts
    coding = rng.randint(30 * MINUTE, 4 * DAY)
    first = rec.created_ms - coding
    span_end = rec.created_ms + (rec.base_end_ms - rec.created_ms) * 4 // 5
    commit_times = _spread(rng, n_commits, first, span_end)
    if commit_times:
        commit_times[0] = first  # the first commit sets the coding time exactly
    commit_key = next((k for k, src in sorted(rec.links) if src == "commit"), None)
    commits = []
    for j, at in enumerate(commit_times):
        message = f"Work in progress ({j + 1})"
        if j == 0 and commit_key:
            message = f"{commit_key} start the work"
        commits.append(
            Commit(sha_of(rec.seed, "c", j), message, rec.author, at, at + rng.randint(0, HOUR))
        )
    others = [p for p in reviewers if p != rec.author] or reviewers
    # Every generated event lies in [first commit, base_end]: `updated_at` is base_end.
    window_end = rec.base_end_ms
    pickup_start = rec.created_ms + rng.randint(
        10 * MINUTE, max(10 * MINUTE, min(2 * DAY, (window_end - rec.created_ms) // 2))
    )
    head_sha = commits[-1].sha if commits else sha_of(rec.seed, "head")
    reviews = [
        Review(
            REVIEW_ID_BASE + rec.index * ITEM_STRIDE + j,
            rng.choice(others),
            "APPROVED" if j == n_reviews - 1 and rec.merged_ms else rng.choice(_REVIEW_STATES),
            rng.choice(_REMARKS),
            at,
            head_sha,
        )
        for j, at in enumerate(_spread(rng, n_reviews, pickup_start, window_end))
    ]
    review_comments = []
    for j, at in enumerate(_spread(rng, n_review_comments, pickup_start, window_end)):
        edited = at + (rng.randint(MINUTE, HOUR) if rng.random() < 0.2 else 0)
        review_id = reviews[j % len(reviews)].id if reviews else None
        review_comments.append(
            Comment(
                REVIEW_COMMENT_ID_BASE + rec.index * ITEM_STRIDE + j,
                rng.choice([*others, rec.author]),
                rng.choice(_REMARKS),
                at,
                min(edited, window_end),
                rng.choice(_PATHS),
                review_id,
            )
        )
    issue_comments = _comments(
        rng,
        ISSUE_COMMENT_ID_BASE + rec.index * ITEM_STRIDE,
        n_issue_comments,
        rec.created_ms + MINUTE,
        window_end,
        [*others, rec.author],
    )
    if bot is not None and issue_comments and rng.random() < 0.3:
        opener = issue_comments[0]
        issue_comments[0] = Comment(
            opener.id, bot, "Coverage report", opener.created_ms, opener.created_ms
        )
    extra = rec.additions or _NONE
    return PullDetail(
        tuple(commits) + tuple(extra.commits),
        tuple(reviews) + tuple(extra.reviews),
        tuple(review_comments) + tuple(extra.review_comments),
        tuple(issue_comments) + tuple(extra.issue_comments),
    )


def derive_issue_comments(rec: IssueRecord, people: list[int]) -> tuple[Comment, ...]:
    rng = random.Random(rec.seed)
    base = ISSUE_COMMENT_ID_BASE + rec.index * ITEM_STRIDE
    made = _comments(rng, base, rec.comments, rec.created_ms + MINUTE, rec.updated_ms, people)
    return tuple(made) + tuple((rec.additions or _NONE).issue_comments)


def _comments(
    rng: random.Random, base: int, n: int, start: int, end: int, people: list[int]
) -> list[Comment]:
    return [
        Comment(base + j, rng.choice(people), rng.choice(_REMARKS), at, at)
        for j, at in enumerate(_spread(rng, n, start, end))
    ]
