"""What gets embedded for a record: the text, its hash, and the source type of its payload.

The most telling parts come first (title, then type and status, labels and mapped custom
fields), the long free text last, because the tokenizer truncates at `max_length` tokens.
An unchanged text is not embedded again: the worker compares its sha256 with the bridge
row's, and also checks that the row was made by the same model and variant.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

# work_items columns holding mapped custom fields; a fixed allow-list, never input.
FIELD_SLOTS = ("team", *(f"custom_field_{n:02d}" for n in range(1, 21)))
TABLES = ("work_items", "pull_requests")
_PROVIDER_SOURCE_TYPES = {"jira": "JIRA", "github": "GITHUB"}
_SPACES = re.compile(r"[ \t]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_BRANCH_SEPARATORS = re.compile(r"[-_/.]+")


def source_type(provider: str, integration_name: str) -> str:
    """JIRA or GITHUB for the built-in sources; a custom source is named by its integration."""
    return _PROVIDER_SOURCE_TYPES.get(provider, integration_name)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _clean(value: Any) -> str:
    if value is None:
        return ""
    text = _SPACES.sub(" ", str(value).replace("\r\n", "\n")).strip()
    return _BLANK_LINES.sub("\n\n", text)


def work_item_text(row: Mapping[str, Any], field_names: Mapping[str, str]) -> str:
    """Summary, type and status, labels, mapped custom fields, then the description."""
    lines = [_clean(row["summary"])]
    kind = " · ".join(p for p in (_clean(row["type_name"]), _clean(row["status_name"])) if p)
    if kind:
        lines.append(kind)
    labels = [_clean(label) for label in row["labels"] or () if _clean(label)]
    if labels:
        lines.append("Labels: " + ", ".join(labels))
    for slot in FIELD_SLOTS:
        value = _clean(row[slot])
        if value:
            lines.append(f"{field_names.get(slot, slot.replace('_', ' '))}: {value}")
    description = _clean(row["description"])
    if description:
        lines.append(description)
    return "\n".join(line for line in lines if line)


def pull_request_text(row: Mapping[str, Any]) -> str:
    """Title, the head branch read as words, then the body."""
    lines = [_clean(row["title"])]
    branch = _clean(_BRANCH_SEPARATORS.sub(" ", row["head_ref"] or ""))
    if branch:
        lines.append(f"Branch: {branch}")
    body = _clean(row["body"])
    if body:
        lines.append(body)
    return "\n".join(line for line in lines if line)


def record_text(table: str, row: Mapping[str, Any], field_names: Mapping[str, str]) -> str:
    if table == "work_items":
        return work_item_text(row, field_names)
    return pull_request_text(row)
