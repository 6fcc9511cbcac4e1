"""Jira issue keys mentioned by a pull request, and the link rows they make.

A key is a project key (a letter, then letters, digits or underscores) and a number, e.g.
PROJ-12. Branches are usually written in lower case (`feature/proj-12-login`), so keys are
matched regardless of case and upper-cased; a candidate that names no work item of the
tenant (`UTF-8`, `throttling-347`) is dropped when the links are resolved in SQL, which is
also what makes a key of an unknown project harmless.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_KEY = re.compile(r"(?<![A-Za-z0-9_])([A-Za-z][A-Za-z0-9_]{0,29})-([1-9][0-9]{0,9})(?![0-9])")
_MAX_KEYS = 50  # per text: a changelog pasted into a body is not fifty links
Json = dict[str, Any]


def jira_keys(text: Any) -> list[str]:
    """Distinct candidate keys in `text`, upper-cased, in order of appearance."""
    if not isinstance(text, str) or not text:
        return []
    found = dict.fromkeys(f"{m.group(1).upper()}-{m.group(2)}" for m in _KEY.finditer(text))
    return list(found)[:_MAX_KEYS]


def link_rows(
    pull_request_id: int,
    repository: str,
    number: int,
    url: str | None,
    texts: Iterable[tuple[str, Any]],
) -> list[Json]:
    """One row per (key, source) for `texts` given as (link source, text)."""
    rows: dict[tuple[str, str], Json] = {}
    for source, text in texts:
        for key in jira_keys(text):
            rows.setdefault(
                (key, source),
                {
                    "pull_request_id": pull_request_id,
                    "repository": repository,
                    "number": number,
                    "url": url,
                    "key": key,
                    "source": source,
                },
            )
    return list(rows.values())
