"""The simulator's JQL subset: grammar, date literals, ordering, errors."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from etld.simulator.jira_jql import BoolOp, Clause, JqlError, parse_jql

BERLIN = ZoneInfo("Europe/Berlin")
NOW_MS = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1000)


def parse(text: str):  # type: ignore[no-untyped-def]
    return parse_jql(text, tz=BERLIN, now_ms=NOW_MS)


def test_project_and_updated_with_order() -> None:
    query = parse('project = PROJ AND updated >= "2024-01-15 10:00" ORDER BY updated ASC')
    assert isinstance(query.where, BoolOp)
    assert query.where.op == "and"
    project, updated = query.where.parts
    assert project == Clause("project", "=", ("PROJ",))
    # 10:00 in Berlin (winter, +01:00) is 09:00 UTC.
    expected = int(datetime(2024, 1, 15, 9, 0, tzinfo=UTC).timestamp() * 1000)
    assert updated == Clause("updated", ">=", (expected,))
    assert query.order == (("updated", False),)


def test_slash_dates_summer_time_and_relative() -> None:
    summer = parse("updated >= '2024/07/01 12:30'").where
    assert summer == Clause(
        "updated", ">=", (int(datetime(2024, 7, 1, 10, 30, tzinfo=UTC).timestamp() * 1000),)
    )
    day = parse("created < 2024-07-01").where
    assert day == Clause(
        "created", "<", (int(datetime(2024, 6, 30, 22, tzinfo=UTC).timestamp() * 1000),)
    )
    assert parse("updated > -15m").where == Clause("updated", ">", (NOW_MS - 15 * 60_000,))


def test_in_lists_keys_ids_and_precedence() -> None:
    query = parse('key in (PROJ-1, "CORE-2") OR id in (10001) AND project not in (OPS)')
    assert isinstance(query.where, BoolOp)
    assert query.where.op == "or"
    left, right = query.where.parts
    assert left == Clause("key", "in", ("PROJ-1", "CORE-2"))
    assert isinstance(right, BoolOp)
    assert right.op == "and"
    assert right.parts[1] == Clause("project", "not in", ("OPS",))


def test_parentheses_not_and_multi_order() -> None:
    query = parse("NOT (project = A OR project = B) order by key desc, id")
    assert isinstance(query.where, BoolOp)
    assert query.where.op == "not"
    assert query.order == (("key", True), ("id", False))


def test_order_only_is_unbounded() -> None:
    query = parse("ORDER BY key")
    assert query.where is None
    assert query.order == (("key", False),)


@pytest.mark.parametrize(
    "text",
    [
        "project =",
        "project PROJ",
        "project = PROJ AND",
        "project = PROJ ORDER key",
        "(project = PROJ",
        "project = PROJ)",
        'updated >= "15.01.2024"',
        "updated in (2024-01-01)",
        "project > PROJ",
        "summary ~ foo",
        "assignee = me",
        "project = PROJ ORDER BY summary",
    ],
)
def test_errors(text: str) -> None:
    with pytest.raises(JqlError):
        parse(text)
