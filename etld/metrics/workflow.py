"""Per-issue workflow metrics and changelog rows from status transitions.

Everything here is pure: the transform worker hands over an issue's creation time, its status
transitions and the tenant's status → flow category mapping, and gets back the 15 metric columns
of ``work_items`` plus one ``changelogs`` row per transition, both built in a single pass.
The definitions are spelled out, with a worked example, in ``docs/metrics.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Final, Literal, NamedTuple

FlowCategory = Literal["backlog", "todo", "in_progress", "review", "done"]

BACKLOG: Final = "backlog"
TODO: Final = "todo"
IN_PROGRESS: Final = "in_progress"
REVIEW: Final = "review"
DONE: Final = "done"
FLOW_CATEGORIES: Final[tuple[FlowCategory, ...]] = (BACKLOG, TODO, IN_PROGRESS, REVIEW, DONE)

# Jira's three status category keys. "undefined" (and anything newer) falls through to TODO:
# a status nobody has placed yet is most safely treated as committed-but-not-started work.
_JIRA_CATEGORY_DEFAULTS: Final[dict[str, FlowCategory]] = {
    "new": TODO,
    "indeterminate": IN_PROGRESS,
    "done": DONE,
}

# A move from any of _STARTED into _NOT_STARTED sends the work back: a backlog return.
_STARTED: Final = frozenset((IN_PROGRESS, REVIEW, DONE))
_NOT_STARTED: Final = frozenset((TODO, BACKLOG))

# Stands for "no status known" (a transition whose from-status Jira left empty). It is not a
# flow category, so it never counts as being inside one.
_NO_CATEGORY: Final = ""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ZERO: Final = timedelta(0)
_AT: Final = attrgetter("at")


def default_flow_category(jira_category_key: str | None) -> FlowCategory:
    """Flow category for a status, from its Jira status category key, before tenant overrides."""
    if jira_category_key is None:
        return TODO
    return _JIRA_CATEGORY_DEFAULTS.get(jira_category_key, TODO)


def parse_jira_datetime(value: object) -> datetime:
    """Parse a Jira timestamp into an aware datetime.

    Accepts ISO 8601 with a ``+0800``, ``+08:00`` or ``Z`` offset (Jira writes the first form) and
    integer epoch milliseconds (used by some Jira endpoints), which come back in UTC.
    """
    if isinstance(value, str):  # nearly always, so checked first
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"not a Jira timestamp: {value!r} (expected e.g. 2024-01-15T10:00:00.000+0800)"
            ) from None
        # A timestamp without an offset cannot be placed on the timeline next to the others.
        if parsed.utcoffset() is None:
            raise ValueError(f"Jira timestamp has no UTC offset: {value!r}")
        return parsed
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return _EPOCH + timedelta(milliseconds=value)
        except OverflowError:
            raise ValueError(f"epoch milliseconds out of range: {value}") from None
    raise ValueError(f"expected a timestamp string or epoch milliseconds, got {value!r}")


class Transition(NamedTuple):
    """One status change from an issue's changelog.

    ``at`` must be timezone-aware. ``from_status`` is None when Jira recorded no previous status.
    A named tuple: one is built per transition, and tuples are the cheapest to build.
    """

    history_id: str
    at: datetime
    from_status: str | None
    to_status: str


class ChangelogRow(NamedTuple):
    """A ``changelogs`` row: how long the issue stayed in ``from_status_id`` before this change.

    A named tuple rather than a dataclass: one is built per transition, tuples are cheaper to
    create and to garbage-collect, and asyncpg's bulk inserts take records as tuples directly
    (fields are in ``CHANGELOG_COLUMNS`` order).
    """

    external_id: str
    from_status_id: str | None
    to_status_id: str
    transition_start_date: datetime
    transition_change_date: datetime
    time_in_status_seconds: float

    def as_row(self) -> dict[str, object]:
        """The row keyed by column name."""
        return dict(zip(CHANGELOG_COLUMNS, self, strict=True))


@dataclass(frozen=True, slots=True)
class WorkflowMetrics:
    """The 15 workflow metric columns of a work item."""

    work_first_committed_at: datetime | None
    work_first_started_at: datetime | None
    work_last_started_at: datetime | None
    work_first_completed_at: datetime | None
    work_last_completed_at: datetime | None
    total_work_starts: int
    total_completions: int
    total_backlog_returns: int
    total_work_time_seconds: float
    total_review_time_seconds: float
    total_cycle_time_seconds: float | None
    total_lead_time_seconds: float | None
    workflow_complexity_score: int
    rework_indicator: bool
    direct_completion: bool

    def as_row(self) -> dict[str, object]:
        """The metrics keyed by column name."""
        return {name: getattr(self, name) for name in METRIC_COLUMNS}


METRIC_COLUMNS: Final[tuple[str, ...]] = tuple(f.name for f in fields(WorkflowMetrics))
CHANGELOG_COLUMNS: Final[tuple[str, ...]] = ChangelogRow._fields


def compute_workflow(
    created: datetime,
    transitions: Iterable[Transition],
    categories: Mapping[str, str],
    *,
    default: str = TODO,
) -> tuple[WorkflowMetrics, list[ChangelogRow]]:
    """Compute an issue's workflow metrics and changelog rows in one pass.

    ``transitions`` may come in any order (Jira embeds changelogs newest-first); they are put in
    time order first. ``categories`` maps status id → flow category and is applied to every
    transition alike; a status id missing from it gets ``default``.

    Only the issue's status history matters: the current status is where the last transition
    leads, and time spent there so far is an open stay, which no metric counts.
    """
    if created.utcoffset() is None:
        raise ValueError(f"created must be timezone-aware, got {created!r}")
    _check_category(default, "default")

    # Status id → category, filled on first sight so each status is looked up and checked once.
    seen: dict[str, str] = {}

    def category_of(status: str) -> str:
        category = categories.get(status, default)
        _check_category(category, f"status {status!r}")
        seen[status] = category
        return category

    committed: datetime | None = None
    first_started: datetime | None = None
    last_started: datetime | None = None
    first_completed: datetime | None = None
    last_completed: datetime | None = None
    starts = completions = returns = 0
    work_time = review_time = _ZERO
    rows: list[ChangelogRow] = []
    append = rows.append
    entered = created  # when the issue entered the status the next transition leaves

    for t in _in_order(transitions):
        at = t.at
        source = t.from_status
        target = t.to_status
        # Categories are non-empty strings, so an empty lookup result means "not seen yet".
        if source is None:
            source_category = _NO_CATEGORY
        else:
            source_category = seen.get(source) or category_of(source)
        target_category = seen.get(target) or category_of(target)

        stay = at - entered
        append(ChangelogRow(t.history_id, source, target, entered, at, stay.total_seconds()))
        # The stay closed by this transition belongs to the status it says it leaves.
        if source_category == IN_PROGRESS:
            work_time += stay
        elif source_category == REVIEW:
            review_time += stay

        # Moving between two statuses of one category is not an entry into it.
        if target_category != source_category:
            if target_category == IN_PROGRESS:
                starts += 1
                if first_started is None:
                    first_started = at
                last_started = at
            elif target_category == DONE:
                completions += 1
                if first_completed is None:
                    first_completed = at
                last_completed = at
            else:
                if target_category == TODO and committed is None:
                    committed = at
                if target_category in _NOT_STARTED and source_category in _STARTED:
                    returns += 1
        entered = at

    cycle: float | None = None
    lead: float | None = None
    if last_completed is not None:
        lead = (last_completed - (created if committed is None else committed)).total_seconds()
        if first_started is not None and last_completed >= first_started:
            cycle = (last_completed - first_started).total_seconds()

    metrics = WorkflowMetrics(
        work_first_committed_at=committed,
        work_first_started_at=first_started,
        work_last_started_at=last_started,
        work_first_completed_at=first_completed,
        work_last_completed_at=last_completed,
        total_work_starts=starts,
        total_completions=completions,
        total_backlog_returns=returns,
        total_work_time_seconds=work_time.total_seconds(),
        total_review_time_seconds=review_time.total_seconds(),
        total_cycle_time_seconds=cycle,
        total_lead_time_seconds=lead,
        workflow_complexity_score=returns * 2 + max(completions - 1, 0),
        rework_indicator=starts > 1,
        direct_completion=completions >= 1 and starts == 0,
    )
    return metrics, rows


def _check_category(category: str, what: str) -> None:
    if category not in FLOW_CATEGORIES:
        raise ValueError(
            f"{what} maps to {category!r}, which is not a flow category "
            f"(expected one of {', '.join(FLOW_CATEGORIES)})"
        )


def _in_order(transitions: Iterable[Transition]) -> list[Transition]:
    """Transitions by instant, then by history id.

    Sorting on the datetime alone keeps the common case cheap (no key tuple per transition, and
    changelogs arrive already sorted or reversed); the rare runs sharing an instant are then
    put in history id order.
    """
    ordered = sorted(transitions, key=_AT)
    run_start = 0
    run_at: datetime | None = None
    for i, t in enumerate(ordered):
        if t.at != run_at:
            if i - run_start > 1:
                ordered[run_start:i] = sorted(ordered[run_start:i], key=_history_id_key)
            run_start, run_at = i, t.at
    if len(ordered) - run_start > 1:
        ordered[run_start:] = sorted(ordered[run_start:], key=_history_id_key)
    return ordered


def _history_id_key(t: Transition) -> tuple[int, int, str]:
    # Jira history ids are decimal strings: "10" follows "9". Should any id not be a plain
    # number, numbers still sort first and the rest compare as strings, so the order is total.
    hid = t.history_id
    if hid.isascii() and hid.isdigit():
        return (0, int(hid), "")
    return (1, 0, hid)
