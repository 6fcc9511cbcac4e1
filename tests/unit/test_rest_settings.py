"""REST source settings: a valid description parses; a broken one is refused with key paths,
by the settings parser and by the configuration loader (what `etld check-config` prints)."""

from __future__ import annotations

from typing import Any

import pytest

from etld.config import ConfigError, parse_config
from etld.sources.rest.extract import newest
from etld.sources.rest.model import dig
from etld.sources.rest.settings import RestSettingsError, parse_settings
from etld.sources.rest.transform import mapped_row, parse_time, raw_table
from etld.workers.errors import Reject


def valid() -> dict[str, Any]:
    return {
        "auth": {"type": "header", "header": "X-Api-Key"},
        "headers": {"Accept": "application/json"},
        "streams": [
            {
                "name": "tickets",
                "path": "/tickets",
                "params": {"state": "all", "archived": False},
                "records": "data.items",
                "primary_key": "id",
                "pagination": {"type": "page", "size_param": "per_page", "size": 50},
                "incremental": {"field": "updated_at", "param": "since"},
                "mapping": {"summary": "title", "status": "state.name", "labels": "tags"},
            },
            {
                "name": "events",
                "path": "/events",
                "primary_key": "uuid",
                "pagination": {"type": "link"},
            },
        ],
    }


def config_with(settings: Any) -> dict[str, Any]:
    return {
        "tenants": [{"name": "acme"}],
        "integrations": [
            {"tenant": "acme", "name": "jira", "provider": "jira"},
            {"tenant": "acme", "name": "github", "provider": "github"},
            {"tenant": "acme", "name": "tickets", "provider": "rest", "settings": settings},
        ],
    }


def test_valid_settings_parse() -> None:
    parsed = parse_settings(valid())
    tickets, events = parsed.streams
    assert tickets.step_name == "rest_tickets"
    assert tickets.params == (("state", "all"), ("archived", "false"))
    assert tickets.pagination.type == "page"
    assert tickets.pagination.start == 1
    assert tickets.incremental is not None
    assert tickets.incremental.param == "since"
    assert dict(tickets.mapping or ()) == {
        "summary": "title",
        "status": "state.name",
        "labels": "tags",
    }
    assert events.mapping is None
    assert events.records == ""
    assert parsed.auth.header == "X-Api-Key"
    assert parse_config(config_with(valid())).integrations[2].provider == "rest"


def test_bad_pagination_type_is_reported_with_its_key_path() -> None:
    settings = valid()
    settings["streams"][0]["pagination"]["type"] = "pages"
    with pytest.raises(ConfigError) as caught:
        parse_config(config_with(settings))
    assert caught.value.problems == [
        "integrations[2].settings.streams[0].pagination.type: expected one of page, offset, "
        'cursor, link, next_url, got "pages"'
    ]


def test_every_problem_is_reported_at_once() -> None:
    settings: dict[str, Any] = {
        "auth": {"type": "oauth"},
        "colour": "blue",
        "streams": [
            {"name": "Bad-Name", "path": "https://elsewhere.example/x", "primary_key": ""},
            {
                "name": "two",
                "path": "/two",
                "primary_key": "id",
                "pagination": {"type": "offset", "cursor_field": "x"},
                "incremental": {"field": "updated"},
                "mapping": {"summary": "title", "owner": "user.login"},
            },
            {
                "name": "three",
                "path": "/three",
                "primary_key": "id",
                "pagination": {"type": "cursor"},
                "mapping": {"summary": "name"},
            },
        ],
    }
    with pytest.raises(RestSettingsError) as caught:
        parse_settings(settings)
    problems = caught.value.problems
    expected = [
        "settings.colour: unknown key",
        'settings.auth.type: expected one of none, bearer, basic, header, got "oauth"',
        "settings.streams[0].name: expected lower-case letters, digits and _ (at most 40), "
        'got "Bad-Name"',
        "settings.streams[0].path: expected a path below the base URL, "
        'got "https://elsewhere.example/x"',
        'settings.streams[0].primary_key: expected dotted path such as data.items, got ""',
        "settings.streams[1].pagination.cursor_field: unknown key",
        "settings.streams[1].pagination.size: required for offset pagination",
        "settings.streams[1].incremental.param: required",
        "settings.streams[1].mapping.owner: not a work_items column a mapping may fill",
        "settings.streams[2].pagination.cursor_field: required",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in problems), (line, problems)
    assert len(problems) == len(expected), problems


def test_streams_are_required_and_only_one_may_map_into_work_items() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_with({}))
    assert caught.value.problems == [
        "integrations[2].settings.streams: expected a non-empty array of tables "
        "([[...streams]]), got None"
    ]
    settings = valid()
    settings["streams"][1]["mapping"] = {"summary": "title"}
    settings["streams"].append(dict(settings["streams"][1]))
    with pytest.raises(RestSettingsError) as refused:
        parse_settings(settings)
    assert any("duplicate stream" in p for p in refused.value.problems)
    assert any("only one stream of an integration may map" in p for p in refused.value.problems)


def test_other_providers_settings_are_not_checked_as_rest() -> None:
    raw = config_with(valid())
    raw["integrations"][0]["settings"] = {"streams": "not checked for jira"}
    assert parse_config(raw).integrations[0].settings["streams"] == "not checked for jira"


def test_dotted_paths_and_cursor_order() -> None:
    answer = {"data": {"items": [{"id": 1, "tags": ["a", "b"]}]}, "links": {"next": None}}
    assert dig(answer, "data.items.0.tags.1") == "b"
    assert dig(answer, "data.missing.x") is None
    assert dig(answer, "") is answer
    assert newest(None, "2024-01-02T00:00:00Z") == "2024-01-02T00:00:00Z"
    assert newest("2024-01-02T00:00:00Z", "2024-01-01T23:00:00-02:00") == (
        "2024-01-01T23:00:00-02:00"
    )
    assert newest(9, 10) == 10
    assert newest(10, None) == 10


def test_mapped_rows_convert_values() -> None:
    record = {
        "id": 7,
        "title": "Fix it",
        "state": {"name": "Open"},
        "tags": "a, b",
        "at": 1_700_000_000_000,
        "points": "3",
        "meta": {"b": 1, "a": 2},
    }
    mapping = (
        ("summary", "title"),
        ("status", "state.name"),
        ("labels", "tags"),
        ("updated", "at"),
        ("story_points", "points"),
        ("custom_field_01", "meta"),
    )
    row = mapped_row("7", record, mapping)
    assert row["key"] == "7"
    assert row["summary"] == "Fix it"
    assert row["status"] == "Open"
    assert row["labels"] == ["a", "b"]
    assert row["updated"] == "2023-11-14T22:13:20+00:00"
    assert row["story_points"] == 3.0
    assert row["custom_field_01"] == '{"a":2,"b":1}'
    assert row["source_hash"] == mapped_row("7", dict(record), mapping)["source_hash"]
    assert parse_time("2024-05-01T10:00:00") is not None
    assert parse_time("yesterday") is None


def test_raw_table_names_come_from_validated_parts_only() -> None:
    assert raw_table(12, "tickets") == '"rest_12_tickets"'
    with pytest.raises(Reject):
        raw_table(12, 'x"; DROP TABLE tenants; --')
