"""JSON shapes of the simulated Jira's configuration objects, in the form the real API returns.

Every function takes the site's `base` URL (scheme and host) because Jira puts absolute `self`
links everywhere; the app passes the request's origin so the links lead back to the simulator.
Timestamps follow Jira: `2024-01-15T10:00:00.000+0800` (no colon in the offset).
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any

import orjson

from etld.simulator.jira_catalog import (
    Catalog,
    IssueType,
    Project,
    Status,
    StatusCategory,
    User,
)
from etld.simulator.jira_fields import CustomField

Json = dict[str, Any]
API = "/rest/api/3"

# System fields served on issues: id -> (name, schema, JQL clause names)
SYSTEM_FIELDS: dict[str, tuple[str, Json, tuple[str, ...]]] = {
    "summary": ("Summary", {"type": "string", "system": "summary"}, ("summary",)),
    "description": ("Description", {"type": "string", "system": "description"}, ("description",)),
    "issuetype": (
        "Issue Type",
        {"type": "issuetype", "system": "issuetype"},
        ("issuetype", "type"),
    ),
    "project": ("Project", {"type": "project", "system": "project"}, ("project",)),
    "status": ("Status", {"type": "status", "system": "status"}, ("status",)),
    "priority": ("Priority", {"type": "priority", "system": "priority"}, ("priority",)),
    "assignee": ("Assignee", {"type": "user", "system": "assignee"}, ("assignee",)),
    "reporter": ("Reporter", {"type": "user", "system": "reporter"}, ("reporter",)),
    "creator": ("Creator", {"type": "user", "system": "creator"}, ("creator",)),
    "labels": ("Labels", {"type": "array", "items": "string", "system": "labels"}, ("labels",)),
    "created": ("Created", {"type": "datetime", "system": "created"}, ("created", "createdDate")),
    "updated": ("Updated", {"type": "datetime", "system": "updated"}, ("updated", "updatedDate")),
    "resolution": ("Resolution", {"type": "resolution", "system": "resolution"}, ("resolution",)),
    "resolutiondate": (
        "Resolved",
        {"type": "datetime", "system": "resolutiondate"},
        ("resolutiondate", "resolved"),
    ),
    "statuscategorychangedate": (
        "Status Category Changed",
        {"type": "datetime", "system": "statuscategorychangedate"},
        ("statusCategoryChangedDate",),
    ),
    "parent": ("Parent", {"type": "issuelink", "system": "parent"}, ("parent",)),
}


def jira_time(ms: int, tz: tzinfo) -> str:
    """Jira's timestamp format in the given zone, e.g. `2024-01-15T10:00:00.000+0100`."""
    dt = datetime.fromtimestamp(ms // 1000, tz)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}{dt:%z}"


def iso_utc(ms: int) -> str:
    """ISO 8601 in UTC with a `Z`, as Jira Software uses for sprint dates."""
    dt = datetime.fromtimestamp(ms // 1000, UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def avatar_urls(base: str, path: str) -> Json:
    return {f"{n}x{n}": f"{base}{path}&size={n}" for n in (48, 24, 16, 32)}


def user_json(user: User, base: str) -> Json:
    out: Json = {
        "self": f"{base}{API}/user?accountId={user.account_id}",
        "accountId": user.account_id,
        "avatarUrls": avatar_urls(base, f"/secure/useravatar?ownerId={user.account_id}"),
        "displayName": user.name,
        "active": True,
        "timeZone": user.time_zone,
        "accountType": user.account_type,
    }
    if user.email is not None:
        out["emailAddress"] = user.email
    return out


def category_json(cat: StatusCategory, base: str) -> Json:
    return {
        "self": f"{base}{API}/statuscategory/{cat.id}",
        "id": cat.id,
        "key": cat.key,
        "colorName": cat.color,
        "name": cat.name,
    }


def status_json(status: Status, base: str, *, category: bool = True) -> Json:
    out: Json = {
        "self": f"{base}{API}/status/{status.id}",
        "description": status.description,
        "iconUrl": base + status.icon,
        "name": status.name,
        "untranslatedName": status.name,
        "id": status.id,
    }
    if category:
        out["statusCategory"] = category_json(status.category, base)
    if status.project_id is not None:
        out["scope"] = {"type": "PROJECT", "project": {"id": status.project_id}}
    return out


def issue_type_json(itype: IssueType, base: str) -> Json:
    out: Json = {
        "self": f"{base}{API}/issuetype/{itype.id}",
        "id": itype.id,
        "description": itype.description,
        "iconUrl": f"{base}{API}/universal_avatar/view/type/issuetype/avatar/{itype.avatar_id}",
        "name": itype.name,
        "untranslatedName": itype.name,
        "subtask": itype.subtask,
        "avatarId": itype.avatar_id,
        "hierarchyLevel": itype.hierarchy_level,
    }
    if itype.project_id is not None:
        out["entityId"] = itype.entity_id
        out["scope"] = {"type": "PROJECT", "project": {"id": itype.project_id}}
    return out


def project_json(
    project: Project,
    base: str,
    *,
    insight: tuple[int, str | None] | None = None,
    issue_types: bool = False,
) -> Json:
    """A project as listed by /project/search; `insight` is (issue count, last update)."""
    out: Json = {
        "expand": "description,lead,issueTypes,url,projectKeys,permissions,insight",
        "self": f"{base}{API}/project/{project.id}",
        "id": project.id,
        "key": project.key,
        "name": project.name,
        "avatarUrls": avatar_urls(base, f"/secure/projectavatar?pid={project.id}"),
        "projectTypeKey": "software",
        "simplified": project.team_managed,
        "style": "next-gen" if project.team_managed else "classic",
        "isPrivate": False,
        "properties": {},
    }
    if not project.team_managed:
        out["projectCategory"] = {
            "self": f"{base}{API}/projectCategory/10000",
            "id": "10000",
            "name": "Engineering",
            "description": "Product engineering projects",
        }
    if insight is not None:
        count, last = insight
        out["insight"] = {"totalIssueCount": count}
        if last is not None:
            out["insight"]["lastIssueUpdateTime"] = last
    if issue_types:
        out["issueTypes"] = [issue_type_json(t, base) for t in project.issue_types]
    return out


def project_ref_json(project: Project, base: str) -> Json:
    """The short project object embedded in issues."""
    return {
        "self": f"{base}{API}/project/{project.id}",
        "id": project.id,
        "key": project.key,
        "name": project.name,
        "projectTypeKey": "software",
        "simplified": project.team_managed,
        "avatarUrls": avatar_urls(base, f"/secure/projectavatar?pid={project.id}"),
    }


def system_field_json(fid: str) -> Json:
    name, schema, clauses = SYSTEM_FIELDS[fid]
    return {
        "id": fid,
        "key": fid,
        "name": name,
        "custom": False,
        "orderable": fid
        not in ("created", "updated", "resolutiondate", "statuscategorychangedate"),
        "navigable": True,
        "searchable": True,
        "clauseNames": list(clauses),
        "schema": schema,
    }


def custom_field_json(cf: CustomField) -> Json:
    return {
        "id": cf.id,
        "key": cf.id,
        "name": cf.name,
        "untranslatedName": cf.name,
        "custom": True,
        "orderable": True,
        "navigable": True,
        "searchable": True,
        "clauseNames": [f"cf[{cf.number}]", cf.name],
        "schema": dict(cf.schema),
    }


# Jira's "Development" field: a custom field whose value is a summary string of the
# issue's development information (empty "{}" when there is none). Clients read it to
# ask the dev-status API only about issues that have pull requests.
DEV_FIELD_ID = "customfield_10000"
DEV_FIELD_NAME = "Development"
DEV_FIELD_SCHEMA: Json = {
    "type": "any",
    "custom": "com.atlassian.jira.plugins.jira-development-integration-plugin:devsummarycf",
    "customId": 10000,
}


def dev_field_json() -> Json:
    return {
        "id": DEV_FIELD_ID,
        "key": DEV_FIELD_ID,
        "name": DEV_FIELD_NAME,
        "untranslatedName": DEV_FIELD_NAME,
        "custom": True,
        "orderable": True,
        "navigable": True,
        "searchable": True,
        "clauseNames": ["development", f"cf[{DEV_FIELD_SCHEMA['customId']}]"],
        "schema": dict(DEV_FIELD_SCHEMA),
    }


def dev_summary(states: list[str]) -> str:
    """The Development field's value for pull requests in `states` (OPEN, MERGED, DECLINED)."""
    if not states:
        return "{}"
    count = len(states)
    state = "OPEN" if "OPEN" in states else states[-1]
    overall = {
        "count": count,
        "lastUpdated": None,
        "stateCount": count,
        "state": state,
        "dataType": "pullrequest",
        "open": state == "OPEN",
    }
    cached = {
        "cachedValue": {
            "errors": [],
            "summary": {
                "pullrequest": {
                    "overall": overall,
                    "byInstanceType": {"GitHub": {"count": count, "name": "GitHub"}},
                }
            },
        },
        "isStale": False,
    }
    summary = orjson.dumps(cached).decode()
    return (
        f"{{pullrequest={{dataType=pullrequest, state={state}, stateCount={count}}}, "
        f"json={summary}}}"
    )


def all_fields_json(catalog: Catalog) -> list[Json]:
    out = [system_field_json(fid) for fid in SYSTEM_FIELDS]
    out.extend(custom_field_json(cf) for cf in catalog.custom_fields)
    out.append(dev_field_json())
    return out


def field_schema(catalog: Catalog, fid: str) -> Json | None:
    if fid in SYSTEM_FIELDS:
        return SYSTEM_FIELDS[fid][1]
    if fid == DEV_FIELD_ID:
        return dict(DEV_FIELD_SCHEMA)
    for cf in catalog.custom_fields:
        if cf.id == fid:
            return dict(cf.schema)
    return None


def field_name(catalog: Catalog, fid: str) -> str | None:
    if fid in SYSTEM_FIELDS:
        return SYSTEM_FIELDS[fid][0]
    if fid == DEV_FIELD_ID:
        return DEV_FIELD_NAME
    for cf in catalog.custom_fields:
        if cf.id == fid:
            return cf.name
    return None


def option_json(base: str, option_id: str, value: str) -> Json:
    return {"self": f"{base}{API}/customFieldOption/{option_id}", "value": value, "id": option_id}


def error_json(*messages: str, errors: dict[str, str] | None = None) -> Json:
    return {"errorMessages": list(messages), "errors": errors or {}}
