"""Jira field values turned into plain data: rich text, custom field values, dev summaries.

Everything here is pure and forgiving: a value of a shape nobody expected becomes JSON text
(logged once per field), never an exception, because one odd field on one issue must not
fail a page of a hundred.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC
from typing import Any

import orjson

from etld.logs import get_logger
from etld.metrics.workflow import parse_jira_datetime

log = get_logger(__name__)

# Blocks whose inline content makes one line of text; every other node with content is a
# container (doc, lists, list items, quotes, panels, tables, expands, layouts).
_TEXT_BLOCKS = frozenset({"paragraph", "heading", "codeBlock"})
_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)$")
_DEV_SUMMARY_MARK = "pullrequest="
_DEV_STATE_COUNT = re.compile(r"pullrequest=\{[^{}]*?stateCount=(\d+)")
_DEV_JSON_COUNT = re.compile(r'"pullrequest":\{"overall":\{"count":(\d+)')
_logged_fields: set[str] = set()

ACCOUNT_IDS = "_account_ids"  # overflow key: field id -> account id(s) of user values


def adf_to_text(value: Any) -> str | None:
    """Plain text of an Atlassian Document Format value: one line per text block."""
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    if not isinstance(value, dict):
        return None
    lines: list[str] = []
    _blocks(value, lines)
    text = "\n".join(lines)
    return text if text.strip() else None


def _blocks(node: Mapping[str, Any], lines: list[str]) -> None:
    kind = node.get("type")
    content = node.get("content")
    children = [c for c in content if isinstance(c, dict)] if isinstance(content, list) else []
    if kind in _TEXT_BLOCKS:
        lines.append("".join(_inline(c) for c in children))
    elif kind == "text" or (not children and "attrs" in node):
        text = _inline(node)
        if text:
            lines.append(text)
    else:
        for child in children:
            _blocks(child, lines)


def _inline(node: Mapping[str, Any]) -> str:
    kind = node.get("type")
    attrs = node.get("attrs") if isinstance(node.get("attrs"), dict) else {}
    assert isinstance(attrs, dict)
    if kind == "text":
        return str(node.get("text") or "")
    if kind == "hardBreak":
        return "\n"
    if kind in ("mention", "status", "emoji"):
        return str(attrs.get("text") or attrs.get("shortName") or "")
    if kind in ("inlineCard", "blockCard"):
        return str(attrs.get("url") or "")
    if kind == "date":
        return str(attrs.get("timestamp") or "")
    content = node.get("content")
    if isinstance(content, list):
        return "".join(_inline(c) for c in content if isinstance(c, dict))
    return ""


def iso_datetime(value: Any) -> str | None:
    """A Jira timestamp as ISO 8601 in UTC, or None when it is not one."""
    try:
        return parse_jira_datetime(value).astimezone(UTC).isoformat()
    except ValueError:
        return None


def normalise(field_id: str, value: Any, schema: Mapping[str, Any] | None = None) -> Any:
    """A custom field value as plain data: option → value, options → list, user → display
    name, team → name, sprints/versions → names, cascading → "parent / child", rich text →
    text, datetimes → ISO (UTC), numbers as numbers; empty → None."""
    stype = str((schema or {}).get("type") or "")
    if isinstance(value, list):
        items = [_scalar(field_id, v, str((schema or {}).get("items") or "")) for v in value]
        kept = [i for i in items if i is not None]
        return kept or None
    return _scalar(field_id, value, stype)


def _scalar(field_id: str, value: Any, stype: str) -> Any:
    # "{}" is how Jira's Development field says "no development information".
    if value is None or value == "" or value == {} or value == "{}":
        return None
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return _string(value, stype)
    if isinstance(value, dict):
        return _object(field_id, value)
    return _unexpected(field_id, value)


def _string(value: str, stype: str) -> Any:
    if _DEV_SUMMARY_MARK in value:
        count = dev_pr_count_of(value)
        if count is not None:
            return count
    if stype == "datetime" or (stype != "date" and _DATETIME.match(value)):
        return iso_datetime(value) or value
    return value


def _object(field_id: str, value: dict[str, Any]) -> Any:
    if value.get("type") == "doc":
        return adf_to_text(value)
    if "accountId" in value:
        return value.get("displayName") or value.get("accountId")
    if "value" in value:
        child = value.get("child")
        if isinstance(child, dict) and child.get("value"):
            return f"{value['value']} / {child['value']}"
        return value["value"]
    if isinstance(value.get("name"), str):  # teams, sprints, versions, components, groups
        return value["name"]
    if isinstance(value.get("title"), str):
        return value["title"]
    return _unexpected(field_id, value)


def _unexpected(field_id: str, value: Any) -> str:
    if field_id not in _logged_fields:
        _logged_fields.add(field_id)
        log.warning("unexpected custom field value kept as JSON", field=field_id)
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def account_ids(value: Any) -> Any:
    """The account id(s) of a user or user-list value, else None."""
    if isinstance(value, dict) and value.get("accountId"):
        return value["accountId"]
    if isinstance(value, list):
        ids = [v["accountId"] for v in value if isinstance(v, dict) and v.get("accountId")]
        return ids or None
    return None


def as_text(value: Any) -> str | None:
    """A normalised value for a text column: lists joined by ", ", whole floats without .0."""
    if value is None:
        return None
    if isinstance(value, list):
        parts = [as_text(v) for v in value]
        return ", ".join(p for p in parts if p is not None) or None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def as_flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value > 0
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("yes", "true", "y", "1", "on"):
            return True
        if lowered in ("no", "false", "n", "0", "off"):
            return False
    if isinstance(value, list):
        return bool(value)
    return None


def dev_pr_count_of(value: str) -> int | None:
    """Pull requests a development summary field reports (its string or JSON form)."""
    for pattern in (_DEV_JSON_COUNT, _DEV_STATE_COUNT):
        found = pattern.search(value)
        if found:
            return int(found.group(1))
    if "pullrequest={}" in value:
        return 0
    return None


def dev_pr_count(fields: Mapping[str, Any]) -> int | None:
    """The issue's pull request count from its development field; None when it has none.

    Jira writes "{}" into the Development field of an issue without development
    information, so an issue showing that and no summary has 0 pull requests.
    """
    empty_summary = False
    for field_id, value in fields.items():
        if field_id.startswith("customfield_") and value == "{}":
            empty_summary = True
        if (
            field_id.startswith("customfield_")
            and isinstance(value, str)
            and _DEV_SUMMARY_MARK in value
        ):
            count = dev_pr_count_of(value)
            if count is not None:
                return count
    return 0 if empty_summary else None
