"""The REST source's settings in typed form, and dotted paths into JSON answers.

`settings.py` builds these from an integration's raw settings; they import nothing from
etld, so the configuration loader can use them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

PAGINATION_TYPES = ("page", "offset", "cursor", "link", "next_url")
AUTH_TYPES = ("none", "bearer", "basic", "header")
RESET_FORMATS = ("epoch", "iso")
TEXT_TARGETS = (
    "key",
    "summary",
    "description",
    "status",
    "type",
    "priority",
    "assignee",
    "assignee_account_id",
    "reporter",
    "parent_key",
    "resolution",
    "team",
    *(f"custom_field_{n:02d}" for n in range(1, 21)),
)
TIME_TARGETS = ("created", "updated", "resolved")
# work_items columns a mapping may fill: a fixed allow-list, never taken from input.
MAPPING_TARGETS = (
    *TEXT_TARGETS,
    *TIME_TARGETS,
    "labels",
    "due_date",
    "story_points",
    "code_changed",
)
STREAM_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
# Keys other parts of etld keep in an integration's settings, accepted next to ours.
SHARED_KEYS = frozenset(
    {"token_env", "declared_in_config", "http", "webhook_secret_env", "webhook_window"}
)
MAX_PAGES = 100_000


@dataclass(frozen=True)
class Auth:
    type: str = "none"
    header: str = ""  # the header carrying the secret (type "header")
    prefix: str = ""  # put before the secret in that header
    username: str = ""  # type "basic"; the integration's username when empty


@dataclass(frozen=True)
class Pagination:
    type: str | None = None  # None: one request per run
    param: str = ""
    start: int = 1
    size_param: str = ""
    size: int | None = None
    cursor_field: str = ""
    next_url_field: str = ""
    max_pages: int = 10_000


@dataclass(frozen=True)
class Incremental:
    field: str  # dotted path of the record's cursor value (an update time, a sequence)
    param: str  # the request parameter that receives the stored cursor ("since")
    initial: str | None = None  # sent on the first run, when no cursor is stored yet


@dataclass(frozen=True)
class Stream:
    name: str
    path: str
    params: tuple[tuple[str, str], ...]
    records: str  # dotted path to the list of records; "" when the answer is the list
    primary_key: str
    pagination: Pagination
    incremental: Incremental | None
    mapping: tuple[tuple[str, str], ...] | None  # (work_items column, dotted path)

    @property
    def step_name(self) -> str:
        return f"rest_{self.name}"


@dataclass(frozen=True)
class RateLimit:
    remaining_header: str = "X-RateLimit-Remaining"
    reset_header: str = "X-RateLimit-Reset"
    reset: str = "epoch"
    default_wait: float = 5.0


@dataclass(frozen=True)
class RestSettings:
    auth: Auth
    headers: tuple[tuple[str, str], ...]
    rate_limit: RateLimit
    streams: tuple[Stream, ...]

    def stream(self, name: str) -> Stream | None:
        return next((s for s in self.streams if s.name == name), None)


_MISSING = object()


def dig(value: Any, dotted: str) -> Any:
    """The value at a dotted path (`data.items`, `links.next`, `tags.0`); None when absent."""
    if not dotted:
        return value
    for part in dotted.split("."):
        if isinstance(value, dict):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.isdigit():
            index = int(part)
            value = value[index] if index < len(value) else _MISSING
        else:
            return None
        if value is _MISSING:
            return None
    return value
