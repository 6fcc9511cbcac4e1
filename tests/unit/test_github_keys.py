"""Jira keys in pull request texts: where they are found, how they are spelled, and the rows
they make (resolved against work items later, in SQL)."""

from __future__ import annotations

import pytest

from etld.sources.github.links import jira_keys, link_rows


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("PROJ-12: fix the login", ["PROJ-12"]),
        ("feature/proj-12-login", ["PROJ-12"]),  # branches are written in lower case
        ("Closes CORE-7 and OPS-3, see CORE-7", ["CORE-7", "OPS-3"]),
        ("[DATA_2-41] numbers", ["DATA_2-41"]),
        ("handles UTF-8", ["UTF-8"]),  # a candidate; no work item has the key, so no link
        ("v1-2 is fine, PROJ-0 and -5 are not keys", ["V1-2"]),
        ("1PROJ-3 x_PROJ-4", ["X_PROJ-4"]),
        ("", []),
        (None, []),
    ],
)
def test_keys_are_found_and_upper_cased(text: str | None, keys: list[str]) -> None:
    assert jira_keys(text) == keys


def test_link_rows_are_one_per_key_and_source() -> None:
    rows = link_rows(
        7,
        "acme/api",
        12,
        "https://github.com/acme/api/pull/12",
        [("title", "PROJ-1 x"), ("body", "PROJ-1 and PROJ-1, PROJ-2"), ("branch", None)],
    )
    assert [(r["key"], r["source"]) for r in rows] == [
        ("PROJ-1", "title"),
        ("PROJ-1", "body"),
        ("PROJ-2", "body"),
    ]
    assert {(r["pull_request_id"], r["repository"], r["number"]) for r in rows} == {
        (7, "acme/api", 12)
    }
