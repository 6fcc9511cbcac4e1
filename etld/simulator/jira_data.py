"""A deterministic, generated Jira site with its ground truth and test mutations.

`generate_site(issues, seed)` builds the catalog (projects, types, statuses, fields) and one
compact `IssueRecord` per issue; the heavy parts (changelogs, field values) are derived from each
record's seed on demand, which keeps 100,000 issues under 100 MB. The same seed
and `now` always give the same site. `JiraSite` answers the simulator's lookups and exposes the
ground truth tests compare an ETL run against.
"""

from __future__ import annotations

import bisect
import itertools
import random
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from etld.simulator.jira_catalog import (
    Catalog,
    IssueType,
    Project,
    Status,
    StatusCategory,
    build_catalog,
)
from etld.simulator.jira_fields import CustomField
from etld.simulator.jira_history import (
    ISSUE_ID_BASE,
    IssueRecord,
    IssueState,
    IssueTruth,
    PullRequest,
    StatusTransition,
    derive,
)
from etld.simulator.jira_values import ValueContext, custom_values

DEFAULT_TIMEZONE = "Europe/Berlin"
_DAY_MS = 86_400_000
_HISTORY_DAYS = 365
_CACHE_SIZE = 4096


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return int(dt.timestamp() * 1000)


class JiraSite:
    """A generated site: catalog, issue records, ground truth and mutations."""

    def __init__(self, catalog: Catalog, *, seed: int, now_ms: int, timezone: str) -> None:
        self.catalog = catalog
        self.seed = seed
        self.now_ms = now_ms
        self.timezone = timezone
        self.base_url: str | None = None  # fixed `self` link origin; None: the request's origin
        self.version = 0  # bumped by every mutation (search caches key on it)
        self._records: list[IssueRecord] = []
        self._numbers: list[list[int]] = [[] for _ in catalog.projects]  # number-1 -> n
        self._live = 0
        self._latest_ms = now_ms
        self._states: dict[int, tuple[int, IssueState]] = {}
        self._add_rng = random.Random(seed ^ 0x5EED_ADD)
        # Projects differ in size (the first is the busiest) and in their mix of issue types.
        self._project_cum = list(
            itertools.accumulate(1.0 / (i + 1) for i in range(len(catalog.projects)))
        )
        self._type_cum = [list(itertools.accumulate(p.type_weights)) for p in catalog.projects]

    # -- configuration ----------------------------------------------------------------------
    @property
    def timezone(self) -> str:
        return self._timezone

    @timezone.setter
    def timezone(self, name: str) -> None:
        self.tz = ZoneInfo(name)
        self._timezone = name

    @property
    def now(self) -> datetime:
        return _utc(self.now_ms)

    @property
    def projects(self) -> tuple[Project, ...]:
        return self.catalog.projects

    @property
    def issue_types(self) -> tuple[IssueType, ...]:
        return tuple(self.catalog.issue_types.values())

    @property
    def statuses(self) -> tuple[Status, ...]:
        return tuple(self.catalog.statuses.values())

    @property
    def status_categories(self) -> tuple[StatusCategory, ...]:
        return self.catalog.categories

    @property
    def custom_fields(self) -> tuple[CustomField, ...]:
        return self.catalog.custom_fields

    # -- lookups ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._live

    @property
    def issue_count(self) -> int:
        return self._live

    def records(self) -> list[IssueRecord]:
        """All records in creation order, deleted ones included (check `deleted`)."""
        return self._records

    def key_of(self, rec: IssueRecord) -> str:
        return f"{self.catalog.projects[rec.project].key}-{rec.number}"

    def issue_keys(self) -> list[str]:
        """Keys of the live issues, in creation order."""
        return [self.key_of(r) for r in self._records if not r.deleted]

    def __contains__(self, key_or_id: object) -> bool:
        return isinstance(key_or_id, str) and self.find(key_or_id) is not None

    def find(self, key_or_id: str) -> IssueRecord | None:
        """The live issue with this key (e.g. `PROJ-12`) or numeric id, else None."""
        rec: IssueRecord | None = None
        if key_or_id.isdigit():
            n = int(key_or_id) - ISSUE_ID_BASE
            rec = self._records[n] if 0 <= n < len(self._records) else None
        else:
            pkey, _, num = key_or_id.upper().rpartition("-")
            project = self.catalog.project_by_key.get(pkey)
            if project is not None and num.isdigit():
                numbers = self._numbers[self.catalog.projects.index(project)]
                idx = int(num) - 1
                rec = self._records[numbers[idx]] if 0 <= idx < len(numbers) else None
        return None if rec is None or rec.deleted else rec

    def _require(self, key_or_id: str) -> IssueRecord:
        rec = self.find(key_or_id)
        if rec is None:
            raise KeyError(key_or_id)
        return rec

    def state(self, rec: IssueRecord) -> IssueState:
        """The derived state of an issue (cached; edits invalidate it)."""
        edits = len(rec.edits or ())
        hit = self._states.get(rec.n)
        if hit is not None and hit[0] == edits:
            return hit[1]
        parent = self.key_of(self._records[rec.parent]) if rec.parent >= 0 else None
        state = derive(rec, self.catalog, parent)
        if len(self._states) >= _CACHE_SIZE:
            for n in list(itertools.islice(self._states, _CACHE_SIZE // 2)):
                del self._states[n]
        self._states[rec.n] = (edits, state)
        return state

    def parent_of(self, rec: IssueRecord) -> IssueRecord | None:
        return self._records[rec.parent] if rec.parent >= 0 else None

    def custom_values(self, rec: IssueRecord, base: str) -> dict[str, Any]:
        project = self.catalog.projects[rec.project]
        ctx = ValueContext(
            self.catalog,
            base,
            self.tz,
            self.now_ms,
            rec.project,
            project,
            self.catalog.issue_types[rec.itype],
            rec.created,
        )
        return custom_values(rec.seed + 2, ctx)

    # -- ground truth -----------------------------------------------------------------------
    def issue(self, key_or_id: str) -> IssueTruth:
        """Ground truth for a live issue; KeyError when unknown or deleted."""
        rec = self._require(key_or_id)
        state = self.state(rec)
        project = self.catalog.projects[rec.project]
        parent = self.parent_of(rec)
        assignee = (
            self.catalog.users[state.assignee].account_id if state.assignee is not None else None
        )
        return IssueTruth(
            id=str(rec.issue_id),
            key=self.key_of(rec),
            project_key=project.key,
            project_id=project.id,
            issue_type_id=rec.itype,
            status_id=state.status,
            created=_utc(rec.created),
            updated=_utc(rec.updated),
            summary=state.summary,
            description_text=state.description_text,
            labels=state.labels,
            custom_fields=self.custom_values(rec, self.base_url or "http://localhost"),
            transitions=self._transitions(state),
            pull_requests=state.pull_requests,
            parent_key=self.key_of(parent) if parent is not None else None,
            assignee_account_id=assignee,
            priority_id=state.priority,
            resolution_id=state.resolution,
            history_count=len(state.histories),
        )

    def issues(self) -> Iterator[IssueTruth]:
        for rec in self._records:
            if not rec.deleted:
                yield self.issue(str(rec.issue_id))

    def transitions(self, key_or_id: str) -> tuple[StatusTransition, ...]:
        return self._transitions(self.state(self._require(key_or_id)))

    def pull_requests(self, key_or_id: str) -> tuple[PullRequest, ...]:
        return self.state(self._require(key_or_id)).pull_requests

    @staticmethod
    def _transitions(state: IssueState) -> tuple[StatusTransition, ...]:
        return tuple(
            StatusTransition(str(h.id), _utc(h.at), item[3] or "", item[5] or "")
            for h in state.histories
            for item in h.items
            if item[2] == "status"
        )

    # -- mutations --------------------------------------------------------------------------
    def _clock(self, at: datetime | None, after: int | None = None) -> int:
        """Mutation time: `at` (kept after `after`, the issue's last change, so its changelog
        stays ordered), or else the wall clock, kept after every change on the site."""
        if at is not None:
            return max(_ms(at), (after if after is not None else -1) + 1)
        return max(int(time.time() * 1000), self._latest_ms + 1)

    def touch(
        self,
        keys: Iterable[str],
        at: datetime | None = None,
        *,
        transition: bool = False,
        to_status: str | None = None,
    ) -> None:
        """Edit the summary of each issue (so `updated` moves on), optionally changing status.

        `to_status` (a status id or name of the issue's workflow) implies a transition; with
        `transition=True` alone the issue takes its workflow's most likely next step.
        """
        for key in keys:
            rec = self._require(key)
            at_ms = self._clock(at, rec.updated)
            target = None
            if transition or to_status is not None:
                target = self._target_status(rec, to_status)
            rec.gen_end = rec.gen_end or rec.updated
            rec.edits = [*(rec.edits or ()), (at_ms, target)]
            rec.updated = at_ms
            self._latest_ms = max(self._latest_ms, at_ms)
        self.version += 1

    def _target_status(self, rec: IssueRecord, wanted: str | None) -> str:
        workflow = self.catalog.projects[rec.project].workflows[rec.itype]
        if wanted is None:
            moves = workflow.moves[self.state(rec).status]
            return max(moves, key=lambda m: m[1])[0]
        for sid in workflow.statuses:
            if wanted in (sid, self.catalog.statuses[sid].name):
                return sid
        raise ValueError(f"status {wanted!r} is not in workflow {workflow.name!r}")

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._require(key).deleted = True
            self._live -= 1
        self.version += 1

    def add_issues(self, n: int, at: datetime | None = None) -> list[str]:
        """Create `n` issues updated at `at` (default: now); returns their keys."""
        at_ms = self._clock(at)
        added = []
        for _ in range(n):
            rng = self._add_rng
            n_status, n_other = rng.randint(0, 3), rng.randint(0, 2)
            span = (
                0
                if n_status + n_other == 0
                else (n_status + n_other) * 1000 + rng.randint(1, 30) * 60_000
            )
            added.append(self._append(rng, at_ms - span, at_ms, n_status, n_other))
        self._latest_ms = max(self._latest_ms, at_ms)
        self.version += 1
        return [self.key_of(r) for r in added]

    # -- generation -------------------------------------------------------------------------
    def _append(
        self, rng: random.Random, created: int, updated: int, n_status: int, n_other: int
    ) -> IssueRecord:
        p = _weighted(rng, self._project_cum)
        project = self.catalog.projects[p]
        itype = project.issue_types[_weighted(rng, self._type_cum[p])]
        parent = self._pick_parent(rng, p, itype)
        if itype.subtask and parent < 0:  # no possible parent yet: make it a plain task
            itype = next(t for t in project.issue_types if t.hierarchy_level == 0)
        numbers = self._numbers[p]
        seed = rng.getrandbits(62)
        rec = IssueRecord(len(self._records), p, len(numbers) + 1, itype.id, created, updated, seed)
        rec.n_status, rec.n_other, rec.parent = n_status, n_other, parent
        numbers.append(rec.n)
        self._records.append(rec)
        self._live += 1
        return rec

    def _pick_parent(self, rng: random.Random, p: int, itype: IssueType) -> int:
        if itype.hierarchy_level > 0:
            return -1
        want_level = 0 if itype.subtask else 1
        if want_level == 1 and rng.random() >= 0.25:
            return -1
        numbers = self._numbers[p]
        for _ in range(8):  # sample a few earlier issues of the project for a fitting parent
            if not numbers:
                return -1
            cand = self._records[numbers[rng.randrange(len(numbers))]]
            if self.catalog.issue_types[cand.itype].hierarchy_level == want_level:
                return cand.n
        return -1


def _weighted(rng: random.Random, cum: list[float]) -> int:
    return min(bisect.bisect_right(cum, rng.random() * cum[-1]), len(cum) - 1)


def _heavy_count(issues: int) -> int:
    """Issues with more than 100 changelog entries: >= 1% from 100 issues, >= 1 from 20."""
    if issues >= 100:
        return -(-issues * 12 // 1000)
    return 1 if issues >= 20 else 0


def generate_site(
    issues: int,
    seed: int,
    *,
    projects: int = 3,
    custom_fields: int = 20,
    transitions_avg: float = 10,
    now: datetime | None = None,
    timezone: str = DEFAULT_TIMEZONE,
) -> JiraSite:
    """A site with exactly `issues` issues. `now` defaults to the start of the current UTC day,
    so runs on the same day produce the same site."""
    if issues < 0:
        raise ValueError("issues must be >= 0")
    rng = random.Random(seed)
    catalog = build_catalog(rng, projects, custom_fields)
    now_ms = int(time.time() // 86_400) * _DAY_MS if now is None else _ms(now)
    site = JiraSite(catalog, seed=seed, now_ms=now_ms, timezone=timezone)
    heavy = set(rng.sample(range(issues), _heavy_count(issues)))
    plan = [(rng.randint(20, 60), 0) for _ in heavy]
    plan = [(s, 101 - s + rng.randint(0, 50)) for s, _ in plan]
    heavy_status = sum(s for s, _ in plan)
    rest = issues - len(heavy)
    mean = max(0.0, (transitions_avg * issues - heavy_status) / rest) if rest else 0.0
    start = now_ms - _HISTORY_DAYS * _DAY_MS
    created_all = sorted(rng.randrange(start, now_ms - 2 * 3_600_000) for _ in range(issues))
    heavy_plan = iter(plan)
    for n, created in enumerate(created_all):
        if n in heavy:
            n_status, n_other = next(heavy_plan)
            share = 0.5 + rng.random() / 2
        else:
            n_status, n_other = int(rng.random() * (2 * mean + 1)), rng.randint(0, 4)
            share = rng.random() ** 2
        count = n_status + n_other
        updated = created
        if count:
            updated = min(
                now_ms, created + max(count * 1000 + 1000, int((now_ms - created) * share))
            )
        site._append(rng, created, updated, n_status, n_other)
    return site
