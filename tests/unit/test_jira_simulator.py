"""The generated Jira site: determinism, sizes, catalog facts, value shapes, ground truth."""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from etld.simulator import JiraSite, generate_site
from etld.simulator.jira_issue import Renderer, parse_fields

NOW = datetime(2025, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def site() -> JiraSite:
    return generate_site(400, 11, now=NOW)


def _fingerprint(site: JiraSite) -> list[tuple[Any, ...]]:
    return [
        (
            t.key,
            t.id,
            t.status_id,
            t.summary,
            t.updated,
            t.transitions,
            t.custom_fields,
            t.pull_requests,
        )
        for t in site.issues()
    ]


def test_same_seed_gives_the_same_site() -> None:
    first, second = generate_site(150, 5, now=NOW), generate_site(150, 5, now=NOW)
    assert _fingerprint(first) == _fingerprint(second)
    assert [cf.id for cf in first.custom_fields] == [cf.id for cf in second.custom_fields]
    assert _fingerprint(generate_site(150, 6, now=NOW)) != _fingerprint(first)


def test_custom_field_ids_move_with_the_seed() -> None:
    names = [
        [cf.kind for cf in generate_site(0, seed, now=NOW).custom_fields] for seed in (1, 2, 3)
    ]
    assert len({tuple(n) for n in names}) > 1


@pytest.mark.parametrize("count", [0, 1, 19, 20, 137])
def test_exactly_n_issues(count: int) -> None:
    site = generate_site(count, 3, now=NOW)
    keys = site.issue_keys()
    assert len(site) == count == len(keys) == len(set(keys))
    ids = [site.issue(k).id for k in keys]
    assert len(set(ids)) == count


def test_heavy_changelogs_exist() -> None:
    assert any(t.history_count > 100 for t in generate_site(20, 9, now=NOW).issues())
    site = generate_site(300, 9, now=NOW)
    heavy = [t for t in site.issues() if t.history_count > 100]
    assert len(heavy) >= 3  # at least 1 %


def test_transitions_average_near_the_requested_mean() -> None:
    site = generate_site(1500, 4, now=NOW, transitions_avg=6)
    mean = sum(len(t.transitions) for t in site.issues()) / len(site)
    assert 5.0 <= mean <= 7.0


def test_catalog_facts(site: JiraSite) -> None:
    categories = {s.category.key for s in site.statuses}
    assert categories == {"new", "indeterminate", "done"}
    names = {s.name for s in site.statuses}
    assert {"Backlog", "In Review", "In Progress", "Done", "Reopened"} <= names
    assert all(s.id.isdigit() for s in site.statuses)
    # Team-managed projects repeat global status and type names under other ids.
    scoped_status = [s for s in site.statuses if s.project_id is not None]
    assert scoped_status
    assert any(s.name == "Done" for s in scoped_status)
    classic = [p for p in site.projects if not p.team_managed]
    shared = set.intersection(*({t.id for t in p.issue_types} for p in classic))
    assert {"1", "3", "10001"} <= shared
    scoped_types = [t for t in site.issue_types if t.project_id is not None]
    assert any(t.name == "Task" for t in scoped_types)
    assert [cf.id for cf in site.custom_fields] == [f"customfield_{10001 + i}" for i in range(20)]
    field_names = Counter(cf.name for cf in site.custom_fields)
    assert max(field_names.values()) > 1  # names are not unique


def test_most_issues_end_done_like_a_real_backlog(site: JiraSite) -> None:
    statuses = {s.id: s for s in site.statuses}
    done = sum(statuses[t.status_id].category.key == "done" for t in site.issues())
    assert 0.4 * len(site) < done < 0.85 * len(site)


def test_workflows_have_reopen_and_back_to_backlog_moves(site: JiraSite) -> None:
    statuses = {s.id: s for s in site.statuses}
    moves = [tr for t in site.issues() for tr in t.transitions]
    reopened = [
        m
        for m in moves
        if statuses[m.from_status].category.key == "done"
        and statuses[m.to_status].category.key != "done"
    ]
    to_backlog = [m for m in moves if statuses[m.to_status].name == "Backlog"]
    assert reopened
    assert to_backlog


def test_changelog_mixes_items_without_field_id(site: JiraSite) -> None:
    fields: Counter[tuple[str, bool]] = Counter()
    for rec in site.records():
        for history in site.state(rec).histories:
            for item in history.items:
                fields[item[0], item[2] is None] += 1
    assert fields["Workflow", True]
    assert fields["RemoteIssueLink", True]
    assert fields["Link", True]
    assert fields["assignee", False]
    assert fields["priority", False]
    assert fields["labels", False]
    assert fields["resolution", False]


_JIRA_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4}$")


def _shape(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        if re.fullmatch(r"\d{4}-\d\d-\d\d", value):
            return "date"
        return "datetime" if _JIRA_TIME.match(value) else "string"
    if isinstance(value, dict):
        if value.get("type") == "doc":
            return "adf"
        if "child" in value:
            return "cascading"
        if "accountId" in value:
            return "user"
        if "isVisible" in value:
            return "team"
        return "option" if "value" in value else "object"
    if isinstance(value, list) and value:
        inner = value[0]
        if isinstance(inner, str):
            return "strings"
        if "state" in inner and "boardId" in inner:
            return "sprints"
        if "accountId" in inner:
            return "users"
        return "options" if "value" in inner else "objects"
    return "other"


def test_custom_fields_cover_every_value_shape(site: JiraSite) -> None:
    shapes = Counter(_shape(v) for t in site.issues() for v in t.custom_fields.values())
    expected = {"option", "options", "number", "string", "user", "users", "team", "date"}
    expected |= {"datetime", "sprints", "cascading", "adf", "strings", "null", "objects"}
    assert expected <= set(shapes), shapes


def test_description_text_matches_the_adf(site: JiraSite) -> None:
    renderer = Renderer(site, "http://sim")
    checked = 0
    for rec in site.records()[:60]:
        issue = renderer.issue(rec, parse_fields(["description"], default_all=False), set())
        doc, text = issue["fields"]["description"], site.issue(str(rec.issue_id)).description_text
        if doc is None:
            assert text is None
            continue
        words = _adf_text(doc)
        assert text is not None
        assert words == text.replace("\n", "")
        checked += 1
    assert checked > 30


def _adf_text(node: Any) -> str:
    if isinstance(node, dict):
        return str(node.get("text", "")) + "".join(_adf_text(c) for c in node.get("content", []))
    return ""


def test_ground_truth_is_consistent(site: JiraSite) -> None:
    for truth in list(site.issues())[:80]:
        assert truth.key.split("-")[0] == truth.project_key
        assert truth.created <= truth.updated <= NOW
        if truth.transitions:
            assert truth.transitions[-1].to_status == truth.status_id
            assert all(
                a.to_status == b.from_status
                for a, b in zip(truth.transitions, truth.transitions[1:], strict=False)
            )
            assert all(
                a.at < b.at for a, b in zip(truth.transitions, truth.transitions[1:], strict=False)
            )
        for pr in truth.pull_requests:
            assert pr.url == f"https://github.com/{pr.repo}/pull/{pr.number}"
            assert pr.status in ("OPEN", "MERGED", "DECLINED")
    assert any(t.pull_requests for t in site.issues())
    assert any(t.parent_key for t in site.issues())


def test_touch_delete_and_add_change_the_ground_truth() -> None:
    site = generate_site(30, 2, now=NOW)
    key = site.issue_keys()[0]
    before = site.issue(key)
    at = NOW + timedelta(days=1)
    site.touch([key], at=at, transition=True)
    after = site.issue(key)
    assert after.summary != before.summary
    assert after.updated == at
    assert len(after.transitions) == len(before.transitions) + 1
    assert after.transitions[-1].at == at
    site.touch([key], at=at + timedelta(hours=1), to_status=after.transitions[-1].from_status)
    assert site.issue(key).status_id == after.transitions[-1].from_status
    site.delete([key])
    assert key not in site
    assert len(site) == 29
    with pytest.raises(KeyError):
        site.issue(key)
    added = site.add_issues(5, at=at + timedelta(hours=2))
    assert len(site) == 34
    assert set(added) <= set(site.issue_keys())
    assert all(site.issue(k).updated == at + timedelta(hours=2) for k in added)


def test_generation_is_fast() -> None:
    started = time.perf_counter()
    site = generate_site(10_000, 1)
    assert len(site) == 10_000
    assert time.perf_counter() - started < 3
