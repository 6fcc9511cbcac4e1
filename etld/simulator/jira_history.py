"""One simulated issue: its compact stored record and the state derived from it on demand.

A site of 100,000 issues keeps only an `IssueRecord` per issue (a dozen small numbers). The
changelog, the current status, assignee, priority, labels, resolution and linked pull requests
are rebuilt from the record's seed whenever a response or a test needs them, by replaying the
same RNG draws, so they are always identical. Mutations made by tests (`touch`) are stored as
edits and replayed after the generated history. `IssueTruth` and `StatusTransition` carry the
result to tests as plain values.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from etld.simulator.jira_catalog import Catalog, Project, Workflow
from etld.simulator.jira_values import LABELS, description, summary

ISSUE_ID_BASE = 10000
_HISTORY_SLOTS = 10_000  # history ids per issue: id = base + n * slots + position
_HISTORY_BASE = 100_000
_REPOS = ("acme/api", "acme/web", "acme/mobile", "acme/infra")
# Non-status changes mixed into the changelog, with their relative frequency.
_OTHER_KINDS = (
    "assignee",
    "priority",
    "labels",
    "attachment",
    "Link",
    "RemoteIssueLink",
    "Workflow",
)
_OTHER_WEIGHTS = (0.3, 0.15, 0.2, 0.1, 0.1, 0.1, 0.05)

_FINISHED_SHARE = 0.7  # issues whose generated walk is steered to end in a done status
_STEER_WINDOW = 4  # that many last transitions are steered
_DISTANCE_CACHE: dict[str, dict[str, int]] = {}
# A changelog item: (field, fieldtype, fieldId, from, fromString, to, toString). Items of the
# Workflow, Link, RemoteIssueLink and Parent kinds have no fieldId, as in Jira.
Item = tuple[str, str, str | None, str | None, str | None, str | None, str | None]
# A test mutation: (epoch ms, status id to move to or None).
Edit = tuple[int, str | None]


@dataclass(slots=True)
class IssueRecord:
    """The stored part of an issue; everything else is derived from `seed`."""

    n: int  # position in creation order
    project: int  # index into the catalog's projects
    number: int  # the number in the key, per project
    itype: str  # issue type id
    created: int  # epoch ms
    updated: int  # epoch ms
    seed: int
    n_status: int = 0  # generated status transitions
    n_other: int = 0  # generated non-status changelog entries
    parent: int = -1  # n of the parent issue
    deleted: bool = False
    edits: list[Edit] | None = None
    gen_end: int = 0  # the generated `updated`, kept once edits move `updated` on

    @property
    def issue_id(self) -> int:
        return ISSUE_ID_BASE + self.n


@dataclass(frozen=True, slots=True)
class History:
    id: int
    at: int  # epoch ms
    author: int  # index into catalog.users
    items: tuple[Item, ...]


@dataclass(frozen=True, slots=True)
class PullRequest:
    repo: str
    number: int
    status: str  # OPEN, MERGED or DECLINED, as dev-status reports them
    branch: str
    updated: int  # epoch ms
    author: int  # index into catalog.users

    @property
    def url(self) -> str:
        return f"https://github.com/{self.repo}/pull/{self.number}"


@dataclass(frozen=True, slots=True)
class IssueState:
    histories: tuple[History, ...]  # oldest first
    status: str
    summary: str
    description: dict[str, Any] | None  # ADF
    description_text: str | None
    reporter: int
    assignee: int | None
    priority: str
    labels: tuple[str, ...]
    resolution: str | None
    resolved_at: int | None
    category_changed_at: int
    pull_requests: tuple[PullRequest, ...]


class StatusTransition(NamedTuple):
    history_id: str
    at: datetime  # UTC
    from_status: str
    to_status: str


@dataclass(frozen=True, slots=True)
class IssueTruth:
    """What the simulator serves for one issue, in plain Python values."""

    id: str
    key: str
    project_key: str
    project_id: str
    issue_type_id: str
    status_id: str
    created: datetime
    updated: datetime
    summary: str
    description_text: str | None
    labels: tuple[str, ...]
    custom_fields: dict[str, Any]  # id -> value as served (links under `site.base_url`)
    transitions: tuple[StatusTransition, ...]  # oldest first
    pull_requests: tuple[PullRequest, ...]
    parent_key: str | None
    assignee_account_id: str | None
    priority_id: str
    resolution_id: str | None
    history_count: int


def history_times(rng: random.Random, created: int, updated: int, count: int) -> list[int]:
    """`count` distinct increasing instants in (created, updated], the last one at `updated`."""
    if count == 0:
        return []
    span = updated - created
    offsets = sorted(rng.sample(range(1, span), count - 1)) if count > 1 else []
    return [created + o for o in offsets] + [updated]


class _Replay:
    """Mutable state while a record's history is replayed."""

    def __init__(self, catalog: Catalog, workflow: Workflow, rng: random.Random) -> None:
        self.catalog = catalog
        self.workflow = workflow
        self.rng = rng
        humans = len(catalog.users) - 1
        self.humans = humans
        self.status = workflow.initial
        self.reporter = rng.randrange(humans)
        self.assignee: int | None = rng.randrange(humans) if rng.random() < 0.8 else None
        self.priority = rng.choices(("2", "3", "4", "1", "5"), (0.25, 0.45, 0.2, 0.05, 0.05))[0]
        self.labels = sorted(rng.sample(LABELS, rng.randint(0, 2)))
        self.resolution: str | None = None
        self.resolved_at: int | None = None
        self.category_changed_at: int | None = None
        self.finish = rng.random() < _FINISHED_SHARE

    def category(self, status: str) -> str:
        return self.catalog.statuses[status].category.key

    def move(self, to: str, at: int) -> list[Item]:
        statuses = self.catalog.statuses
        old = self.status
        items: list[Item] = [
            ("status", "jira", "status", old, statuses[old].name, to, statuses[to].name)
        ]
        was_done, is_done = self.category(old) == "done", self.category(to) == "done"
        if is_done and not was_done:
            rid, rname = self.rng.choices(self.catalog.resolutions, (0.8, 0.1, 0.06, 0.04))[0]
            items.append(("resolution", "jira", "resolution", None, None, rid, rname))
            self.resolution, self.resolved_at = rid, at
        elif was_done and not is_done:
            old_name = dict(self.catalog.resolutions)[self.resolution or "10000"]
            items.append(
                ("resolution", "jira", "resolution", self.resolution, old_name, None, None)
            )
            self.resolution, self.resolved_at = None, None
        if self.category(old) != self.category(to):
            self.category_changed_at = at
        self.status = to
        return items

    def walk(self, at: int, remaining: int) -> list[Item]:
        """One status transition; `remaining` counts it and the ones still to come."""
        moves = self.workflow.moves[self.status]
        if self.finish and remaining <= _STEER_WINDOW:
            # Steer the last few moves so the walk ends in a done status where it can: a plain
            # random walk would leave most issues unfinished, unlike a real backlog.
            dist = _distances(self.workflow, self.catalog)
            to = min(moves, key=lambda m: (abs(dist[m[0]] - (remaining - 1)), -m[1]))[0]
        else:
            to = self.rng.choices([m[0] for m in moves], [m[1] for m in moves])[0]
        items = self.move(to, at)
        if self.rng.random() < 0.02:  # a workflow scheme migration moved the issue
            items.insert(0, self.workflow_item())
        return items

    def other(self, kind: str, position: int) -> list[Item]:
        """A non-status change; assignee, priority and labels keep the issue's state in step."""
        if kind == "assignee":
            return [self._reassign()]
        if kind == "priority":
            return [self._reprioritise()]
        if kind == "labels":
            return [self._relabel()]
        if kind == "attachment":
            name = f"screenshot-{position}.png"
            return [("Attachment", "jira", "attachment", None, None, str(20000 + position), name)]
        if kind == "Link":
            target = str(self.rng.randint(1, 999))
            return [("Link", "jira", None, None, None, target, f"This issue relates to #{target}")]
        if kind == "RemoteIssueLink":
            text = 'This issue links to "Runbook (Web Link)"'
            return [("RemoteIssueLink", "jira", None, None, None, str(30000 + position), text)]
        return [self.workflow_item()]

    def workflow_item(self) -> Item:
        wf = self.workflow
        return ("Workflow", "jira", None, "10050", "classic default workflow", wf.id, wf.name)

    def _reassign(self) -> Item:
        old = self.assignee
        new = self.rng.randrange(self.humans) if self.rng.random() < 0.9 else None
        if new == old:
            new = None if old is not None else 0
        self.assignee = new
        return ("assignee", "jira", "assignee", *self._user_ref(old), *self._user_ref(new))

    def _user_ref(self, index: int | None) -> tuple[str | None, str | None]:
        if index is None:
            return None, None
        user = self.catalog.users[index]
        return user.account_id, user.name

    def _reprioritise(self) -> Item:
        names = dict(self.catalog.priorities)
        old = self.priority
        self.priority = self.rng.choice([p for p in names if p != old])
        return (
            "priority",
            "jira",
            "priority",
            old,
            names[old],
            self.priority,
            names[self.priority],
        )

    def _relabel(self) -> Item:
        old = " ".join(self.labels)
        spare = [label for label in LABELS if label not in self.labels]
        if spare and (not self.labels or self.rng.random() < 0.7):
            self.labels = sorted([*self.labels, self.rng.choice(spare)])
        else:
            self.labels.remove(self.rng.choice(self.labels))
        return ("labels", "jira", "labels", None, old, None, " ".join(self.labels))


def _distances(workflow: Workflow, catalog: Catalog) -> dict[str, int]:
    """Fewest transitions from each status of the workflow to one of its done statuses."""
    cached = _DISTANCE_CACHE.get(workflow.id)
    if cached is not None:
        return cached
    dist = {s: 0 for s in workflow.statuses if catalog.statuses[s].category.key == "done"}
    changed = True
    while changed:  # relax until stable: the graphs have a handful of statuses
        changed = False
        for status, moves in workflow.moves.items():
            best = min((dist[to] + 1 for to, _ in moves if to in dist), default=None)
            if best is not None and best < dist.get(status, best + 1):
                dist[status] = best
                changed = True
    _DISTANCE_CACHE[workflow.id] = dist
    return dist


def derive(rec: IssueRecord, catalog: Catalog, parent_key: str | None) -> IssueState:
    """Replay the record's generated changelog and its edits into the issue's current state."""
    project: Project = catalog.projects[rec.project]
    rng = random.Random(rec.seed)
    text_rng = random.Random(rec.seed + 1)
    title = summary(text_rng)
    adf, text = description(text_rng)
    replay = _Replay(catalog, project.workflows[rec.itype], rng)
    count = rec.n_status + rec.n_other
    times = history_times(rng, rec.created, _generated_end(rec), count)
    status_at = sorted(rng.sample(range(count), rec.n_status))
    left = {i: rec.n_status - k for k, i in enumerate(status_at)}  # transitions still to come
    parent_at = (
        rng.randrange(count) if parent_key is not None and count and rng.random() < 0.5 else -1
    )
    app_user = len(catalog.users) - 1
    histories: list[History] = []
    for i, at in enumerate(times):
        author = app_user if rng.random() < 0.08 else rng.randrange(replay.humans)
        if i in left:
            items = replay.walk(at, left[i])
        else:
            kind = rng.choices(_OTHER_KINDS, _OTHER_WEIGHTS)[0]
            items = replay.other(kind, i)
        if i == parent_at and parent_key is not None:
            items.append(("Parent", "jira", None, None, None, None, parent_key))
        histories.append(
            History(_HISTORY_BASE + rec.n * _HISTORY_SLOTS + i, at, author, tuple(items))
        )
    for revision, (at, to_status) in enumerate(rec.edits or (), start=1):
        new_title = f"{title} (edit {revision})"
        items = [
            ("summary", "jira", "summary", None, _prev_title(title, revision), None, new_title)
        ]
        if to_status is not None and to_status != replay.status:
            items.extend(replay.move(to_status, at))
        hid = _HISTORY_BASE + rec.n * _HISTORY_SLOTS + count + revision - 1
        histories.append(History(hid, at, rng.randrange(replay.humans), tuple(items)))
    if rec.edits:
        title = f"{title} (edit {len(rec.edits)})"
    return IssueState(
        histories=tuple(histories),
        status=replay.status,
        summary=title,
        description=adf,
        description_text=text,
        reporter=replay.reporter,
        assignee=replay.assignee,
        priority=replay.priority,
        labels=tuple(replay.labels),
        resolution=replay.resolution,
        resolved_at=replay.resolved_at,
        category_changed_at=replay.category_changed_at or rec.created,
        pull_requests=_pull_requests(rec, replay.category(replay.status), replay.humans),
    )


def _prev_title(title: str, revision: int) -> str:
    return title if revision == 1 else f"{title} (edit {revision - 1})"


def _generated_end(rec: IssueRecord) -> int:
    """When the generated part of the changelog ends (edits move `updated` later)."""
    return rec.gen_end or rec.updated


def _pull_requests(rec: IssueRecord, category: str, humans: int) -> tuple[PullRequest, ...]:
    rng = random.Random(rec.seed + 3)
    if rng.random() >= 0.3:
        return ()
    prs = []
    for j in range(rng.randint(1, 3)):
        if category == "done":
            status = "MERGED" if rng.random() < 0.9 else "DECLINED"
        else:
            status = "OPEN" if rng.random() < 0.8 else "DECLINED"
        number = rec.n * 3 + j + 1  # unique per site, so unique per repository
        updated = rec.created + rng.randint(60_000, max(60_001, _generated_end(rec) - rec.created))
        prs.append(
            PullRequest(
                rng.choice(_REPOS),
                number,
                status,
                f"feature/{rec.n}-{j}",
                updated,
                rng.randrange(humans),
            )
        )
    return tuple(prs)
