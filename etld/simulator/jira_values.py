"""Per-issue content of the simulated Jira: summaries, ADF descriptions and custom field values.

Each generator draws from an RNG seeded by the issue alone, so a value can be rebuilt on demand
(for a response or for the ground truth) without being stored. Custom field values cover every
shape an ETL meets on real sites: option objects, option arrays, numbers, strings, users, teams,
dates, datetimes, sprint arrays, cascading selects with a child, ADF rich text, string arrays and
nulls.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from etld.simulator.jira_catalog import Catalog, IssueType, Project
from etld.simulator.jira_fields import CustomField
from etld.simulator.jira_render import API, iso_utc, jira_time, option_json, user_json

Json = dict[str, Any]

_VERBS = (
    "Fix",
    "Add",
    "Improve",
    "Refactor",
    "Remove",
    "Investigate",
    "Document",
    "Migrate",
    "Speed up",
)
_OBJECTS = (
    "login flow",
    "CSV export",
    "search index",
    "billing page",
    "rate limiter",
    "audit log",
    "notification service",
    "dashboard widget",
    "bulk import",
    "user settings",
    "webhook retries",
    "session handling",
)
_TAILS = (
    "",
    "",
    " on mobile",
    " for large tenants",
    " after upgrade",
    " under load",
    " for admins",
)
_SENTENCES = (
    "Customers report that the {obj} fails intermittently.",
    "The {obj} should keep working when the upstream service is slow.",
    "Steps to reproduce: open the {obj}, change a value and save twice.",
    "Expected result: no error is shown and the change is persisted.",
    "This blocks the rollout planned for the next release.",
    "See the linked incident for logs and timings.",
    "Acceptance: metrics for the {obj} stay within the agreed budget.",
)
LABELS = ("backend", "frontend", "tech-debt", "customer", "security", "performance", "ux", "infra")
_DAY_MS = 86_400_000
_SPRINT_MS = 14 * _DAY_MS
_SPRINT_EPOCH_MS = 1_577_664_000_000  # a Monday (2019-12-30T00:00Z): sprint boundaries
_VERSIONS = ("1.0", "1.1", "2.0", "2.1", "3.0")


def summary(rng: random.Random) -> str:
    return f"{rng.choice(_VERBS)} {rng.choice(_OBJECTS)}{rng.choice(_TAILS)}"


def description(rng: random.Random) -> tuple[Json | None, str | None]:
    """An ADF document and its plain text (blocks joined by newlines), or (None, None)."""
    if rng.random() < 0.15:
        return None, None
    obj = rng.choice(_OBJECTS)
    blocks: list[Json] = []
    lines: list[str] = []
    for _ in range(rng.randint(1, 3)):
        text = rng.choice(_SENTENCES).format(obj=obj)
        if rng.random() < 0.3:
            head, _, rest = text.partition(" ")
            content = [
                {"type": "text", "text": head + " ", "marks": [{"type": "strong"}]},
                {"type": "text", "text": rest},
            ]
        else:
            content = [{"type": "text", "text": text}]
        blocks.append({"type": "paragraph", "content": content})
        lines.append(text)
    if rng.random() < 0.3:
        items = [rng.choice(LABELS) for _ in range(rng.randint(1, 3))]
        blocks.append(
            {
                "type": "bulletList",
                "content": [
                    {"type": "listItem", "content": [{"type": "paragraph", "content": [_text(i)]}]}
                    for i in items
                ],
            }
        )
        lines.extend(items)
    return {"type": "doc", "version": 1, "content": blocks}, "\n".join(lines)


def _text(text: str) -> Json:
    return {"type": "text", "text": text}


def adf_paragraphs(*texts: str) -> Json:
    return {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [_text(t)]} for t in texts],
    }


@dataclass(frozen=True, slots=True)
class ValueContext:
    """What a custom field value may depend on besides the RNG."""

    catalog: Catalog
    base: str
    tz: tzinfo
    now_ms: int
    project_index: int
    project: Project
    issue_type: IssueType
    created_ms: int


def custom_values(seed: int, ctx: ValueContext) -> dict[str, Any]:
    """Every custom field of the site for one issue: a value, or None when unset/not in context."""
    rng = random.Random(seed)
    out: dict[str, Any] = {}
    for cf in ctx.catalog.custom_fields:
        if rng.random() >= cf.fill or not cf.applies_to(ctx.issue_type.name):
            out[cf.id] = None
        else:
            out[cf.id] = _GENERATORS[cf.kind](cf, rng, ctx)
    return out


def _option(cf: CustomField, rng: random.Random, ctx: ValueContext) -> Json:
    opt = rng.choice(cf.options)
    return option_json(ctx.base, opt.id, opt.value)


def _options(cf: CustomField, rng: random.Random, ctx: ValueContext) -> list[Json]:
    chosen = rng.sample(cf.options, rng.randint(1, min(3, len(cf.options))))
    return [option_json(ctx.base, o.id, o.value) for o in sorted(chosen, key=lambda o: o.id)]


def _cascading(cf: CustomField, rng: random.Random, ctx: ValueContext) -> Json:
    parent = rng.choice(cf.options)
    out = option_json(ctx.base, parent.id, parent.value)
    if rng.random() < 0.8:  # a cascading select may hold only its parent option
        child = rng.choice(parent.children)
        out["child"] = option_json(ctx.base, child.id, child.value)
    return out


def _story_points(cf: CustomField, rng: random.Random, ctx: ValueContext) -> float:
    return float(rng.choice((1, 2, 3, 5, 8, 13)))


def _float(cf: CustomField, rng: random.Random, ctx: ValueContext) -> float:
    return round(rng.uniform(0, 5000), 1)


def _text_value(cf: CustomField, rng: random.Random, ctx: ValueContext) -> str:
    return f"EXT-{rng.randint(1000, 99999)}"


def _url(cf: CustomField, rng: random.Random, ctx: ValueContext) -> str:
    return f"https://design.example.com/files/{rng.getrandbits(32):08x}"


def _user(cf: CustomField, rng: random.Random, ctx: ValueContext) -> Json:
    return user_json(rng.choice(ctx.catalog.users[:-1]), ctx.base)


def _users(cf: CustomField, rng: random.Random, ctx: ValueContext) -> list[Json]:
    people = rng.sample(ctx.catalog.users[:-1], rng.randint(1, 3))
    return [user_json(u, ctx.base) for u in people]


def _team(cf: CustomField, rng: random.Random, ctx: ValueContext) -> Json:
    team = rng.choice(ctx.catalog.teams)
    return {
        "id": team.id,
        "name": team.name,
        "avatarUrl": "",
        "isVisible": True,
        "isVerified": False,
        "title": team.name,
        "isShared": True,
    }


def _date(cf: CustomField, rng: random.Random, ctx: ValueContext) -> str:
    ms = ctx.created_ms + rng.randint(0, 30) * _DAY_MS
    return datetime.fromtimestamp(ms // 1000, ctx.tz).date().isoformat()


def _datetime(cf: CustomField, rng: random.Random, ctx: ValueContext) -> str:
    ms = ctx.created_ms + rng.randint(1, 60 * 24 * 20) * 60_000
    return jira_time(min(ms, ctx.now_ms), ctx.tz)


def _sprint(cf: CustomField, rng: random.Random, ctx: ValueContext) -> list[Json]:
    """Sprints around the creation date; earlier sprints stay listed when work carried over."""
    number = (ctx.created_ms - _SPRINT_EPOCH_MS) // _SPRINT_MS
    numbers = [number] if rng.random() < 0.7 else [number, number + 1]
    return [_sprint_json(ctx, n) for n in numbers]


def _sprint_json(ctx: ValueContext, number: int) -> Json:
    start = _SPRINT_EPOCH_MS + number * _SPRINT_MS + 9 * 3_600_000
    end = start + _SPRINT_MS - 3_600_000
    board = ctx.project_index + 1
    out: Json = {
        "id": board * 1000 + number % 1000,
        "name": f"{ctx.project.key} Sprint {number % 1000}",
        "state": "closed" if end < ctx.now_ms else "active" if start <= ctx.now_ms else "future",
        "boardId": board,
        "goal": "",
    }
    if out["state"] != "future":
        out["startDate"] = iso_utc(start)
        out["endDate"] = iso_utc(end)
    if out["state"] == "closed":
        out["completeDate"] = iso_utc(end + 1_800_000)
    return out


def _adf(cf: CustomField, rng: random.Random, ctx: ValueContext) -> Json:
    obj = rng.choice(_OBJECTS)
    return adf_paragraphs(f"Given the {obj} is available", "Then the change is visible to users")


def _labels(cf: CustomField, rng: random.Random, ctx: ValueContext) -> list[str]:
    return sorted(rng.sample(LABELS, rng.randint(1, 3)))


def _versions(cf: CustomField, rng: random.Random, ctx: ValueContext) -> list[Json]:
    out = []
    for name in sorted(rng.sample(_VERSIONS, rng.randint(1, 2))):
        vid = str(10500 + _VERSIONS.index(name))
        released = name < "3.0"
        version: Json = {
            "self": f"{ctx.base}{API}/version/{vid}",
            "id": vid,
            "name": name,
            "archived": False,
            "released": released,
        }
        if released:
            version["releaseDate"] = f"2024-{_VERSIONS.index(name) * 2 + 1:02d}-15"
        out.append(version)
    return out


_GENERATORS: dict[str, Callable[[CustomField, random.Random, ValueContext], Any]] = {
    "select": _option,
    "radio": _option,
    "multiselect": _options,
    "checkboxes": _options,
    "cascading": _cascading,
    "story_points": _story_points,
    "float": _float,
    "text": _text_value,
    "url": _url,
    "user": _user,
    "users": _users,
    "team": _team,
    "date": _date,
    "datetime": _datetime,
    "sprint": _sprint,
    "adf": _adf,
    "labels": _labels,
    "versions": _versions,
}
