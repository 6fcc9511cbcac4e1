"""Workflow metrics and changelog rows computed from an issue's status transitions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest

from etld.metrics import (
    ChangelogRow,
    Transition,
    compute_workflow,
    default_flow_category,
    parse_jira_datetime,
)

BACKLOG_ID = "10000"
TODO_ID = "1"
PROGRESS_ID = "3"
REVIEW_ID = "10001"
DONE_ID = "6"
QA_ID = "10002"  # Jira files it under "indeterminate", so by default it counts as in progress

CATEGORIES = {
    BACKLOG_ID: "backlog",
    TODO_ID: "todo",
    PROGRESS_ID: "in_progress",
    REVIEW_ID: "review",
    DONE_ID: "done",
    QA_ID: "in_progress",
}

CREATED = datetime(2024, 1, 15, 10, 0, tzinfo=UTC)

# What an issue that never moved reports; each case below lists only what differs from it.
UNTOUCHED: dict[str, object] = {
    "work_first_committed_at": None,
    "work_first_started_at": None,
    "work_last_started_at": None,
    "work_first_completed_at": None,
    "work_last_completed_at": None,
    "total_work_starts": 0,
    "total_completions": 0,
    "total_backlog_returns": 0,
    "total_work_time_seconds": 0.0,
    "total_review_time_seconds": 0.0,
    "total_cycle_time_seconds": None,
    "total_lead_time_seconds": None,
    "workflow_complexity_score": 0,
    "rework_indicator": False,
    "direct_completion": False,
}


def at(hours: float) -> datetime:
    return CREATED + timedelta(hours=hours)


def tr(history_id: str, hours: float, source: str | None, target: str) -> Transition:
    return Transition(history_id, at(hours), source, target)


def row(
    history_id: str, source: str | None, target: str, start: float, change: float, seconds: float
) -> ChangelogRow:
    return ChangelogRow(history_id, source, target, at(start), at(change), seconds)


REOPEN = [
    tr("101", 1, TODO_ID, PROGRESS_ID),
    tr("102", 3, PROGRESS_ID, DONE_ID),
    tr("103", 5, DONE_ID, PROGRESS_ID),
    tr("104", 6, PROGRESS_ID, DONE_ID),
]
REOPEN_METRICS: dict[str, object] = {
    "work_first_started_at": at(1),
    "work_last_started_at": at(5),
    "work_first_completed_at": at(3),
    "work_last_completed_at": at(6),
    "total_work_starts": 2,
    "total_completions": 2,
    "total_work_time_seconds": 10800.0,
    "total_cycle_time_seconds": 18000.0,
    "total_lead_time_seconds": 21600.0,
    "workflow_complexity_score": 1,
    "rework_indicator": True,
}
REOPEN_ROWS = [
    row("101", TODO_ID, PROGRESS_ID, 0, 1, 3600.0),
    row("102", PROGRESS_ID, DONE_ID, 1, 3, 7200.0),
    row("103", DONE_ID, PROGRESS_ID, 3, 5, 7200.0),
    row("104", PROGRESS_ID, DONE_ID, 5, 6, 3600.0),
]


def ping_pong() -> list[Transition]:
    """122 transitions, newest first as Jira embeds them: 60 trips between work and review."""
    transitions = [tr("1000", 1, TODO_ID, PROGRESS_ID)]
    for trip in range(60):
        begin = 1 + 1.5 * trip
        transitions.append(tr(str(1001 + 2 * trip), begin + 1, PROGRESS_ID, REVIEW_ID))
        transitions.append(tr(str(1002 + 2 * trip), begin + 1.5, REVIEW_ID, PROGRESS_ID))
    transitions.append(tr("1121", 93, PROGRESS_ID, DONE_ID))
    return transitions[::-1]


@dataclass(frozen=True)
class Case:
    name: str
    transitions: list[Transition]
    metrics: dict[str, object]
    rows: list[ChangelogRow] | None = None  # None: the case is about the metrics only


CASES = [
    Case("no transitions", [], {}, []),
    Case(
        "straight to done",
        [tr("100", 2, TODO_ID, DONE_ID)],
        {
            "work_first_completed_at": at(2),
            "work_last_completed_at": at(2),
            "total_completions": 1,
            "total_lead_time_seconds": 7200.0,
            "direct_completion": True,
        },
        [row("100", TODO_ID, DONE_ID, 0, 2, 7200.0)],
    ),
    Case("reopened after done", REOPEN, REOPEN_METRICS, REOPEN_ROWS),
    Case(
        "newest-first input is put in time order",
        REOPEN[::-1],
        REOPEN_METRICS,
        REOPEN_ROWS,
    ),
    Case(
        "shuffled input is put in time order",
        [REOPEN[2], REOPEN[0], REOPEN[3], REOPEN[1]],
        REOPEN_METRICS,
        REOPEN_ROWS,
    ),
    Case(
        "back to backlog twice",
        [
            tr("201", 1, BACKLOG_ID, TODO_ID),
            tr("202", 2, TODO_ID, PROGRESS_ID),
            tr("203", 4, PROGRESS_ID, BACKLOG_ID),
            tr("204", 5, BACKLOG_ID, TODO_ID),
            tr("205", 6, TODO_ID, PROGRESS_ID),
            tr("206", 9, PROGRESS_ID, TODO_ID),
            tr("207", 10, TODO_ID, PROGRESS_ID),
            tr("208", 12, PROGRESS_ID, DONE_ID),
        ],
        {
            "work_first_committed_at": at(1),
            "work_first_started_at": at(2),
            "work_last_started_at": at(10),
            "work_first_completed_at": at(12),
            "work_last_completed_at": at(12),
            "total_work_starts": 3,
            "total_completions": 1,
            "total_backlog_returns": 2,
            "total_work_time_seconds": 25200.0,
            "total_cycle_time_seconds": 36000.0,
            "total_lead_time_seconds": 39600.0,
            "workflow_complexity_score": 4,
            "rework_indicator": True,
        },
    ),
    Case(
        "sent back from review and from done",
        [
            tr("251", 1, TODO_ID, PROGRESS_ID),
            tr("252", 2, PROGRESS_ID, REVIEW_ID),
            tr("253", 3, REVIEW_ID, TODO_ID),
            tr("254", 4, TODO_ID, PROGRESS_ID),
            tr("255", 5, PROGRESS_ID, DONE_ID),
            tr("256", 6, DONE_ID, BACKLOG_ID),
        ],
        {
            "work_first_committed_at": at(3),
            "work_first_started_at": at(1),
            "work_last_started_at": at(4),
            "work_first_completed_at": at(5),
            "work_last_completed_at": at(5),
            "total_work_starts": 2,
            "total_completions": 1,
            "total_backlog_returns": 2,
            "total_work_time_seconds": 7200.0,
            "total_review_time_seconds": 3600.0,
            "total_cycle_time_seconds": 14400.0,
            "total_lead_time_seconds": 7200.0,
            "workflow_complexity_score": 4,
            "rework_indicator": True,
        },
    ),
    Case(
        "review stays are review time, and leaving review for work is a new start",
        [
            tr("301", 1, TODO_ID, PROGRESS_ID),
            tr("302", 3, PROGRESS_ID, REVIEW_ID),
            tr("303", 4, REVIEW_ID, PROGRESS_ID),
            tr("304", 4.25, PROGRESS_ID, REVIEW_ID),
            tr("305", 6, REVIEW_ID, DONE_ID),
        ],
        {
            "work_first_started_at": at(1),
            "work_last_started_at": at(4),
            "work_first_completed_at": at(6),
            "work_last_completed_at": at(6),
            "total_work_starts": 2,
            "total_completions": 1,
            "total_work_time_seconds": 8100.0,
            "total_review_time_seconds": 9900.0,
            "total_cycle_time_seconds": 18000.0,
            "total_lead_time_seconds": 21600.0,
            "rework_indicator": True,
        },
    ),
    Case(
        "same instant: numeric history ids in numeric order, not string order",
        [
            tr("10", 1, PROGRESS_ID, REVIEW_ID),
            tr("11", 2, REVIEW_ID, DONE_ID),
            tr("9", 1, TODO_ID, PROGRESS_ID),
        ],
        {
            "work_first_started_at": at(1),
            "work_last_started_at": at(1),
            "work_first_completed_at": at(2),
            "work_last_completed_at": at(2),
            "total_work_starts": 1,
            "total_completions": 1,
            "total_review_time_seconds": 3600.0,
            "total_cycle_time_seconds": 3600.0,
            "total_lead_time_seconds": 7200.0,
        },
        [
            row("9", TODO_ID, PROGRESS_ID, 0, 1, 3600.0),
            row("10", PROGRESS_ID, REVIEW_ID, 1, 1, 0.0),
            row("11", REVIEW_ID, DONE_ID, 1, 2, 3600.0),
        ],
    ),
    Case(
        "more than 100 transitions",
        ping_pong(),
        {
            "work_first_started_at": at(1),
            "work_last_started_at": at(91),
            "work_first_completed_at": at(93),
            "work_last_completed_at": at(93),
            "total_work_starts": 61,
            "total_completions": 1,
            "total_work_time_seconds": 223200.0,
            "total_review_time_seconds": 108000.0,
            "total_cycle_time_seconds": 331200.0,
            "total_lead_time_seconds": 334800.0,
            "rework_indicator": True,
        },
    ),
    Case(
        "the open stay in the current status is not counted",
        [tr("401", 1, TODO_ID, PROGRESS_ID)],
        {
            "work_first_started_at": at(1),
            "work_last_started_at": at(1),
            "total_work_starts": 1,
        },
        [row("401", TODO_ID, PROGRESS_ID, 0, 1, 3600.0)],
    ),
    Case(
        "cycle time is None when the first start follows the last completion",
        [tr("501", 1, TODO_ID, DONE_ID), tr("502", 2, DONE_ID, PROGRESS_ID)],
        {
            "work_first_started_at": at(2),
            "work_last_started_at": at(2),
            "work_first_completed_at": at(1),
            "work_last_completed_at": at(1),
            "total_work_starts": 1,
            "total_completions": 1,
            "total_lead_time_seconds": 3600.0,
        },
    ),
    Case(
        "lead time runs from creation when the issue was never committed",
        [tr("601", 2, BACKLOG_ID, PROGRESS_ID), tr("602", 5, PROGRESS_ID, DONE_ID)],
        {
            "work_first_started_at": at(2),
            "work_last_started_at": at(2),
            "work_first_completed_at": at(5),
            "work_last_completed_at": at(5),
            "total_work_starts": 1,
            "total_completions": 1,
            "total_work_time_seconds": 10800.0,
            "total_cycle_time_seconds": 10800.0,
            "total_lead_time_seconds": 18000.0,
        },
    ),
    Case(
        "lead time runs from the first commitment",
        [
            tr("701", 1, BACKLOG_ID, TODO_ID),
            tr("702", 2, TODO_ID, PROGRESS_ID),
            tr("703", 5, PROGRESS_ID, DONE_ID),
        ],
        {
            "work_first_committed_at": at(1),
            "work_first_started_at": at(2),
            "work_last_started_at": at(2),
            "work_first_completed_at": at(5),
            "work_last_completed_at": at(5),
            "total_work_starts": 1,
            "total_completions": 1,
            "total_work_time_seconds": 10800.0,
            "total_cycle_time_seconds": 10800.0,
            "total_lead_time_seconds": 14400.0,
        },
    ),
    Case(
        "moving between two statuses of one category is not an entry",
        [
            tr("801", 1, TODO_ID, PROGRESS_ID),
            tr("802", 3, PROGRESS_ID, QA_ID),
            tr("803", 4, QA_ID, PROGRESS_ID),
            tr("804", 5, PROGRESS_ID, DONE_ID),
        ],
        {
            "work_first_started_at": at(1),
            "work_last_started_at": at(1),
            "work_first_completed_at": at(5),
            "work_last_completed_at": at(5),
            "total_work_starts": 1,
            "total_completions": 1,
            "total_work_time_seconds": 14400.0,
            "total_cycle_time_seconds": 14400.0,
            "total_lead_time_seconds": 18000.0,
        },
    ),
    Case(
        "a transition with no from-status enters whatever it leads to",
        [tr("901", 1, None, PROGRESS_ID), tr("902", 3, PROGRESS_ID, DONE_ID)],
        {
            "work_first_started_at": at(1),
            "work_last_started_at": at(1),
            "work_first_completed_at": at(3),
            "work_last_completed_at": at(3),
            "total_work_starts": 1,
            "total_completions": 1,
            "total_work_time_seconds": 7200.0,
            "total_cycle_time_seconds": 7200.0,
            "total_lead_time_seconds": 10800.0,
        },
        [
            row("901", None, PROGRESS_ID, 0, 1, 3600.0),
            row("902", PROGRESS_ID, DONE_ID, 1, 3, 7200.0),
        ],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_metrics_and_changelog_rows(case: Case) -> None:
    metrics, rows = compute_workflow(CREATED, case.transitions, CATEGORIES)

    assert metrics.as_row() == {**UNTOUCHED, **case.metrics}
    if case.rows is not None:
        assert rows == case.rows
    assert len(rows) == len(case.transitions)


def test_tenant_remap_applies_to_the_whole_history() -> None:
    # QA moves from work to review, so the trip through it becomes review time and the return
    # to In Progress becomes a second start.
    remapped = {**CATEGORIES, QA_ID: "review"}
    transitions = [
        tr("801", 1, TODO_ID, PROGRESS_ID),
        tr("802", 3, PROGRESS_ID, QA_ID),
        tr("803", 4, QA_ID, PROGRESS_ID),
        tr("804", 5, PROGRESS_ID, DONE_ID),
    ]

    metrics, _ = compute_workflow(CREATED, transitions, remapped)

    assert metrics.total_work_starts == 2
    assert metrics.work_last_started_at == at(4)
    assert metrics.total_work_time_seconds == 10800.0
    assert metrics.total_review_time_seconds == 3600.0
    assert metrics.rework_indicator is True


def test_unmapped_status_takes_the_default_category() -> None:
    transitions = [tr("1", 1, TODO_ID, "99999"), tr("2", 3, "99999", DONE_ID)]

    as_todo, _ = compute_workflow(CREATED, transitions, CATEGORIES)
    as_review, _ = compute_workflow(CREATED, transitions, CATEGORIES, default="review")

    assert as_todo.total_review_time_seconds == 0.0
    assert as_review.total_review_time_seconds == 7200.0


def test_ties_order_numeric_ids_first_then_other_ids_as_strings() -> None:
    transitions = [
        tr("b", 1, TODO_ID, TODO_ID),
        tr("a", 1, TODO_ID, TODO_ID),
        tr("7", 1, TODO_ID, TODO_ID),
    ]

    _, rows = compute_workflow(CREATED, transitions, CATEGORIES)

    assert [r.external_id for r in rows] == ["7", "a", "b"]


def test_mixed_utc_offsets_are_ordered_as_instants() -> None:
    # By wall-clock text the order would be 07:30, 14:00, 19:00; by instant it is 11:00 UTC
    # (19:00+0800), 12:30 UTC (07:30-0500), 13:00 UTC (14:00+0100).
    created = parse_jira_datetime("2024-01-15T10:00:00.000+0000")
    work = parse_jira_datetime("2024-01-15T19:00:00.000+0800")
    review = parse_jira_datetime("2024-01-15T07:30:00.000-0500")
    done = parse_jira_datetime("2024-01-15T14:00:00.000+0100")
    transitions = [
        Transition("2", review, PROGRESS_ID, REVIEW_ID),
        Transition("3", done, REVIEW_ID, DONE_ID),
        Transition("1", work, TODO_ID, PROGRESS_ID),
    ]

    metrics, rows = compute_workflow(created, transitions, CATEGORIES)

    assert [r.external_id for r in rows] == ["1", "2", "3"]
    assert [r.time_in_status_seconds for r in rows] == [3600.0, 5400.0, 1800.0]
    assert metrics.work_first_started_at == datetime(2024, 1, 15, 11, 0, tzinfo=UTC)
    assert metrics.work_last_completed_at == datetime(2024, 1, 15, 13, 0, tzinfo=UTC)
    assert metrics.total_work_time_seconds == 5400.0
    assert metrics.total_review_time_seconds == 1800.0
    assert metrics.total_cycle_time_seconds == 7200.0
    assert metrics.total_lead_time_seconds == 10800.0


def test_rows_keep_the_column_names_of_the_changelogs_table() -> None:
    _, rows = compute_workflow(CREATED, [tr("100", 2, TODO_ID, DONE_ID)], CATEGORIES)

    assert rows[0].as_row() == {
        "external_id": "100",
        "from_status_id": TODO_ID,
        "to_status_id": DONE_ID,
        "transition_start_date": CREATED,
        "transition_change_date": at(2),
        "time_in_status_seconds": 7200.0,
    }


def test_a_category_outside_the_five_is_refused() -> None:
    with pytest.raises(ValueError, match="'In Progress', which is not a flow category"):
        compute_workflow(CREATED, [tr("1", 1, TODO_ID, "77")], {**CATEGORIES, "77": "In Progress"})
    with pytest.raises(ValueError, match="not a flow category"):
        compute_workflow(CREATED, [], CATEGORIES, default="wip")


def test_naive_creation_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        compute_workflow(datetime(2024, 1, 15, 10, 0), [], CATEGORIES)


@pytest.mark.parametrize(
    ("jira_key", "expected"),
    [
        ("new", "todo"),
        ("indeterminate", "in_progress"),
        ("done", "done"),
        ("undefined", "todo"),
        (None, "todo"),
    ],
)
def test_default_flow_category(jira_key: str | None, expected: str) -> None:
    assert default_flow_category(jira_key) == expected


@pytest.mark.parametrize(
    ("raw", "instant", "offset_hours"),
    [
        ("2024-01-15T10:00:00.000+0800", datetime(2024, 1, 15, 2, 0, tzinfo=UTC), 8),
        ("2024-01-15T10:00:00+08:00", datetime(2024, 1, 15, 2, 0, tzinfo=UTC), 8),
        ("2024-01-15T02:00:00.000Z", datetime(2024, 1, 15, 2, 0, tzinfo=UTC), 0),
        ("2024-01-14T21:30:00.250-0430", datetime(2024, 1, 15, 2, 0, 0, 250000, tzinfo=UTC), -4.5),
        (1705284000000, datetime(2024, 1, 15, 2, 0, tzinfo=UTC), 0),
        (1705284000123, datetime(2024, 1, 15, 2, 0, 0, 123000, tzinfo=UTC), 0),
    ],
)
def test_parse_jira_datetime(raw: str | int, instant: datetime, offset_hours: float) -> None:
    parsed = parse_jira_datetime(raw)

    assert parsed == instant
    assert parsed.tzinfo == timezone(timedelta(hours=offset_hours))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("yesterday", "not a Jira timestamp: 'yesterday'"),
        ("", "not a Jira timestamp: ''"),
        ("2024-13-01T00:00:00.000+0000", "not a Jira timestamp"),
        ("2024-01-15T10:00:00.000", "has no UTC offset"),
        (True, "expected a timestamp string or epoch milliseconds"),
        (10**20, "epoch milliseconds out of range"),
    ],
)
def test_parse_jira_datetime_refuses_garbage(raw: str | int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_jira_datetime(raw)
