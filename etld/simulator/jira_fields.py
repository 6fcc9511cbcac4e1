"""Custom field definitions of a simulated Jira site.

Real sites differ in which custom field ids hold what, so the kinds are shuffled by the seed
before ids (customfield_10001, ...) are handed out; names repeat (a legacy "Story Points" next to
the board's one), some fields apply only to certain issue types, and one is never filled.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_CF = "com.atlassian.jira.plugin.system.customfieldtypes:"


@dataclass(frozen=True, slots=True)
class Option:
    id: str
    value: str
    children: tuple[Option, ...] = ()


@dataclass(frozen=True, slots=True)
class CustomField:
    """A custom field definition; `kind` selects the value generator in `jira_values`."""

    id: str
    number: int
    name: str
    kind: str
    schema: Mapping[str, Any]
    fill: float  # share of applicable issues with a non-null value
    type_names: frozenset[str] | None = None  # issue type names in the field's context
    options: tuple[Option, ...] = ()

    def applies_to(self, type_name: str) -> bool:
        return self.type_names is None or type_name in self.type_names


# (kind, name, schema type, custom type key, items, fill rate, issue type names or None)
_FIELD_KINDS: tuple[tuple[str, str, str, str, str | None, float, frozenset[str] | None], ...] = (
    ("select", "Severity", "option", _CF + "select", None, 0.8, frozenset({"Bug"})),
    ("multiselect", "Affected Platforms", "array", _CF + "multiselect", "option", 0.6, None),
    (
        "story_points",
        "Story Points",
        "number",
        "com.pyxis.greenhopper.jira:jsw-story-points",
        None,
        0.7,
        None,
    ),
    ("float", "Business Value", "number", _CF + "float", None, 0.5, None),
    ("text", "External Reference", "string", _CF + "textfield", None, 0.4, None),
    ("user", "Tech Lead", "user", _CF + "userpicker", None, 0.5, None),
    ("team", "Team", "team", _CF + "atlassian-team", None, 0.7, None),
    ("date", "Start date", "date", _CF + "datepicker", None, 0.5, None),
    ("datetime", "Deployed At", "datetime", _CF + "datetime", None, 0.3, None),
    ("sprint", "Sprint", "array", "com.pyxis.greenhopper.jira:gh-sprint", "json", 0.7, None),
    ("cascading", "Region", "option-with-child", _CF + "cascadingselect", None, 0.5, None),
    (
        "adf",
        "Acceptance Criteria",
        "string",
        _CF + "textarea",
        None,
        0.5,
        frozenset({"Story", "Task"}),
    ),
    ("labels", "Tags", "array", _CF + "labels", "string", 0.5, None),
    ("users", "Reviewers", "array", _CF + "multiuserpicker", "user", 0.4, None),
    ("url", "Design Link", "string", _CF + "url", None, 0.3, None),
    ("radio", "Risk", "option", _CF + "radiobuttons", None, 0.6, None),
    ("checkboxes", "Flagged", "array", _CF + "multicheckboxes", "option", 0.15, None),
    ("versions", "Target Release", "array", _CF + "multiversion", "version", 0.4, None),
    # Names are not unique on real sites: a legacy field shares its name with the one above.
    ("float", "Story Points", "number", _CF + "float", None, 0.3, None),
    ("text", "Legacy Code", "string", _CF + "textfield", None, 0.0, None),
)
_OPTION_VALUES = {
    "select": ("Critical", "Major", "Minor", "Trivial"),
    "multiselect": ("iOS", "Android", "Web", "Desktop", "API"),
    "radio": ("Low", "Medium", "High"),
    "checkboxes": ("Impediment",),
}
_REGIONS = {
    "EMEA": ("Germany", "France", "Kenya"),
    "AMER": ("USA", "Brazil"),
    "APAC": ("Japan", "India"),
}


def custom_field_definitions(rng: random.Random, count: int) -> tuple[CustomField, ...]:
    specs = [_FIELD_KINDS[i % len(_FIELD_KINDS)] for i in range(count)]
    rng.shuffle(specs)  # the same kind gets a different id on each seed, as on real sites
    fields = []
    for i, (kind, name, stype, custom, items, fill, types) in enumerate(specs):
        number = 10001 + i
        round_ = (i // len(_FIELD_KINDS)) + 1
        label = name if round_ == 1 else f"{name} {round_}"
        schema: dict[str, Any] = {"type": stype, "custom": custom, "customId": number}
        if items:
            schema["items"] = items
        if kind == "team":
            schema["configuration"] = {custom: True}
        fields.append(
            CustomField(
                f"customfield_{number}",
                number,
                label,
                kind,
                schema,
                fill,
                types,
                _options(kind, number),
            )
        )
    return tuple(fields)


def _options(kind: str, number: int) -> tuple[Option, ...]:
    base = (number - 10000) * 100 + 10000
    if kind in _OPTION_VALUES:
        return tuple(Option(str(base + j), v) for j, v in enumerate(_OPTION_VALUES[kind]))
    if kind == "cascading":
        out = []
        for j, (parent, children) in enumerate(_REGIONS.items()):
            kids = tuple(Option(str(base + 10 * (j + 1) + k), c) for k, c in enumerate(children))
            out.append(Option(str(base + j), parent, kids))
        return tuple(out)
    return ()
