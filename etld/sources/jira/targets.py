"""Targeted runs: the issues webhook events named, fetched by one search instead of a window.

A webhook run's configuration carries `targets`, e.g. `{"kind": "issue", "id": "10001",
"key": "PROJ-1"}`. The issues step then searches `id in (...)` (or `key in (...)` for
targets without an id), never a full sync: nothing is soft-deleted and `last_sync_date`
stays where polling left it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*-[0-9]+$")
ORDER = " ORDER BY updated ASC, id ASC"


def target_refs(config: Mapping[str, Any]) -> list[str]:
    """The issue ids (or keys, without an id) of a run's targets, each once, in order."""
    refs: list[str] = []
    for target in config.get("targets") or ():
        if not isinstance(target, Mapping) or target.get("kind", "issue") != "issue":
            continue
        issue_id, key = str(target.get("id") or ""), str(target.get("key") or "")
        if issue_id.isdigit():
            refs.append(issue_id)
        elif _KEY.match(key):
            refs.append(key.upper())
    return list(dict.fromkeys(refs))


def targets_jql(refs: Sequence[str]) -> str:
    ids = [r for r in refs if r.isdigit()]
    keys = [r for r in refs if not r.isdigit() and _KEY.match(r)]
    parts = []
    if ids:
        parts.append(f"id in ({', '.join(ids)})")
    if keys:
        parts.append(f"key in ({', '.join(keys)})")
    if not parts:
        raise ValueError("no issue targets")
    where = parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"
    return where + ORDER
