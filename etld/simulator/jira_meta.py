"""Configuration endpoints of the simulated Jira: projects, statuses, fields, issue types,
create metadata (the deprecated map form and its paginated per-project replacements), myself."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from etld.simulator.jira_catalog import Catalog, IssueType, Project
from etld.simulator.jira_fields import CustomField
from etld.simulator.jira_render import (
    API,
    SYSTEM_FIELDS,
    all_fields_json,
    avatar_urls,
    category_json,
    issue_type_json,
    jira_time,
    option_json,
    project_json,
    status_json,
)
from etld.simulator.jira_web import (
    USER,
    BadRequest,
    NotFound,
    base_of,
    int_param,
    json_response,
    list_param,
    paged,
    site_of,
)

Json = dict[str, Any]
CREATEMETA_MAX = 200
# System fields on every create screen (parent only for sub-task types).
_CREATE_SYSTEM = (
    "summary",
    "issuetype",
    "project",
    "description",
    "reporter",
    "assignee",
    "priority",
    "labels",
)
_ARRAY_OPS = ["add", "set", "remove"]


def _project(request: web.Request) -> Project:
    wanted = request.match_info["project"]
    for project in site_of(request).projects:
        if wanted in (project.id, project.key) or wanted.upper() == project.key:
            return project
    raise NotFound(f"No project could be found with key '{wanted}'.")


async def project_search(request: web.Request) -> web.Response:
    site = site_of(request)
    expand = set(list_param(request, "expand"))
    keys = {k.upper() for k in list_param(request, "keys")}
    ids = set(list_param(request, "id"))
    text = request.query.get("query", "").lower()
    order = request.query.get("orderBy", "key")
    by_name = order.lstrip("+-") == "name"  # other orderings fall back to the key
    projects = sorted(site.projects, key=lambda p: p.name if by_name else p.key)
    if order.startswith("-"):
        projects.reverse()
    chosen = [
        p
        for p in projects
        if (not keys or p.key in keys)
        and (not ids or p.id in ids)
        and (not text or text in p.key.lower() or text in p.name.lower())
    ]
    insights = _insights(request) if "insight" in expand else {}
    base = base_of(request)
    values = [
        project_json(p, base, insight=insights.get(p.id), issue_types="issueTypes" in expand)
        for p in chosen
    ]
    return json_response(
        paged(request, values, default_max=50, cap=100, path=f"{API}/project/search")
    )


def _insights(request: web.Request) -> dict[str, tuple[int, str | None]]:
    site = site_of(request)
    counts = [0] * len(site.projects)
    latest = [0] * len(site.projects)
    for rec in site.records():
        if not rec.deleted:
            counts[rec.project] += 1
            latest[rec.project] = max(latest[rec.project], rec.updated)
    return {
        p.id: (counts[i], jira_time(latest[i], site.tz) if latest[i] else None)
        for i, p in enumerate(site.projects)
    }


async def project_get(request: web.Request) -> web.Response:
    return json_response(project_json(_project(request), base_of(request), issue_types=True))


async def project_statuses(request: web.Request) -> web.Response:
    project = _project(request)
    site, base = site_of(request), base_of(request)
    out = []
    for itype in project.issue_types:
        workflow = project.workflows[itype.id]
        out.append(
            {
                "self": f"{base}{API}/issueType/{itype.id}",
                "id": itype.id,
                "name": itype.name,
                "subtask": itype.subtask,
                "statuses": [
                    status_json(site.catalog.statuses[s], base) for s in workflow.statuses
                ],
            }
        )
    return json_response(out)


async def statuses(request: web.Request) -> web.Response:
    base = base_of(request)
    return json_response([status_json(s, base) for s in site_of(request).statuses])


async def status_categories(request: web.Request) -> web.Response:
    base = base_of(request)
    return json_response([category_json(c, base) for c in site_of(request).status_categories])


async def fields(request: web.Request) -> web.Response:
    return json_response(all_fields_json(site_of(request).catalog))


async def issue_types(request: web.Request) -> web.Response:
    base = base_of(request)
    return json_response([issue_type_json(t, base) for t in site_of(request).issue_types])


async def myself(request: web.Request) -> web.Response:
    site, base = site_of(request), base_of(request)
    user = request.get(USER, "etl@example.com")
    account = account_id(user)
    return json_response(
        {
            "self": f"{base}{API}/user?accountId={account}",
            "accountId": account,
            "accountType": "atlassian",
            "emailAddress": user,
            "avatarUrls": avatar_urls(base, f"/secure/useravatar?ownerId={account}"),
            "displayName": user.split("@")[0],
            "active": True,
            "timeZone": site.timezone,
            "locale": "en_US",
            "groups": {"size": 1, "items": []},
            "applicationRoles": {"size": 1, "items": []},
            "expand": "groups,applicationRoles",
        }
    )


def account_id(user: str) -> str:
    """A stable 24-hex-digit account id for an API user name."""
    value = 0
    for ch in user:
        value = (value * 257 + ord(ch)) % (1 << 88)
    return f"5f{value:022x}"


# -- create metadata -----------------------------------------------------------------------
def _create_fields(catalog: Catalog, project: Project, itype: IssueType, base: str) -> list[Json]:
    out = [_system_create_field(catalog, fid, project, base) for fid in _CREATE_SYSTEM]
    if itype.subtask:
        out.append(_system_create_field(catalog, "parent", project, base, required=True))
    out.extend(
        _custom_create_field(cf, base) for cf in catalog.custom_fields if cf.applies_to(itype.name)
    )
    return out


def _system_create_field(
    catalog: Catalog, fid: str, project: Project, base: str, *, required: bool | None = None
) -> Json:
    name, schema, _ = SYSTEM_FIELDS[fid]
    out: Json = {
        "required": fid in ("summary", "issuetype", "project", "reporter")
        if required is None
        else required,
        "schema": schema,
        "name": name,
        "key": fid,
        "fieldId": fid,
        "hasDefaultValue": fid in ("priority", "reporter"),
        "operations": _ARRAY_OPS if schema["type"] == "array" else ["set"],
    }
    if fid == "issuetype":
        out["allowedValues"] = [issue_type_json(t, base) for t in project.issue_types]
    elif fid == "priority":
        out["allowedValues"] = [
            {"self": f"{base}{API}/priority/{pid}", "name": pname, "id": pid}
            for pid, pname in (
                ("1", "Highest"),
                ("2", "High"),
                ("3", "Medium"),
                ("4", "Low"),
                ("5", "Lowest"),
            )
        ]
    elif fid in ("assignee", "reporter"):
        out["autoCompleteUrl"] = f"{base}{API}/user/search?query="
    elif fid == "labels":
        out["autoCompleteUrl"] = f"{base}{API}/label/suggest?query="
    return out


def _custom_create_field(cf: CustomField, base: str) -> Json:
    out: Json = {
        "required": False,
        "schema": dict(cf.schema),
        "name": cf.name,
        "key": cf.id,
        "fieldId": cf.id,
        "hasDefaultValue": False,
        "operations": _ARRAY_OPS if cf.schema["type"] == "array" else ["set"],
    }
    if cf.options:
        out["allowedValues"] = [_option_value(o, base) for o in cf.options]
    return out


def _option_value(option: Any, base: str) -> Json:
    out = option_json(base, option.id, option.value)
    if option.children:
        out["children"] = [option_json(base, c.id, c.value) for c in option.children]
    return out


def _createmeta_page(request: web.Request, items: list[Json]) -> tuple[list[Json], int, int]:
    start = int_param(request, "startAt", 0)
    size = int_param(request, "maxResults", 50, minimum=1)
    if size > CREATEMETA_MAX:
        raise BadRequest(
            f"Parameter 'maxResults' must not exceed the limit '{CREATEMETA_MAX}'",
            extra={"httpStatusCode": {"empty": False, "present": True}},
        )
    return items[start : start + size], start, size


async def createmeta_issue_types(request: web.Request) -> web.Response:
    project, base = _project(request), base_of(request)
    page, start, size = _createmeta_page(
        request, [issue_type_json(t, base) for t in project.issue_types]
    )
    return json_response(
        {
            "issueTypes": page,
            "maxResults": size,
            "startAt": start,
            "total": len(project.issue_types),
        }
    )


async def createmeta_fields(request: web.Request) -> web.Response:
    project, base = _project(request), base_of(request)
    type_id = request.match_info["type"]
    itype = next((t for t in project.issue_types if t.id == type_id), None)
    if itype is None:
        raise NotFound(
            f"Issue type with id '{type_id}' is not available in project '{project.key}'."
        )
    items = _create_fields(site_of(request).catalog, project, itype, base)
    page, start, size = _createmeta_page(request, items)
    return json_response(
        {"fields": page, "maxResults": size, "startAt": start, "total": len(items)}
    )


async def createmeta_deprecated(request: web.Request) -> web.Response:
    site, base = site_of(request), base_of(request)
    project_ids, project_keys = (
        set(list_param(request, "projectIds")),
        list_param(request, "projectKeys"),
    )
    keys = {k.upper() for k in project_keys}
    type_ids, type_names = (
        set(list_param(request, "issuetypeIds")),
        set(list_param(request, "issuetypeNames")),
    )
    with_fields = "projects.issuetypes.fields" in list_param(request, "expand")
    projects = []
    for project in site.projects:
        if (project_ids or keys) and project.id not in project_ids and project.key not in keys:
            continue
        types = []
        for itype in project.issue_types:
            if (
                (type_ids or type_names)
                and itype.id not in type_ids
                and itype.name not in type_names
            ):
                continue
            entry = issue_type_json(itype, base)
            entry["expand"] = "fields"
            if with_fields:
                entry["fields"] = {
                    f["key"]: {k: v for k, v in f.items() if k != "fieldId"}
                    for f in _create_fields(site.catalog, project, itype, base)
                }
            types.append(entry)
        projects.append(
            {
                "expand": "issuetypes",
                "self": f"{base}{API}/project/{project.id}",
                "id": project.id,
                "key": project.key,
                "name": project.name,
                "avatarUrls": avatar_urls(base, f"/secure/projectavatar?pid={project.id}"),
                "issuetypes": types,
            }
        )
    return json_response({"expand": "projects", "projects": projects})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{API}/myself", myself)
    r.add_get(f"{API}/project/search", project_search)
    r.add_get(f"{API}/project/{{project}}", project_get)
    r.add_get(f"{API}/project/{{project}}/statuses", project_statuses)
    r.add_get(f"{API}/status", statuses)
    r.add_get(f"{API}/statuscategory", status_categories)
    r.add_get(f"{API}/field", fields)
    r.add_get(f"{API}/issuetype", issue_types)
    r.add_get(f"{API}/issue/createmeta", createmeta_deprecated)
    r.add_get(f"{API}/issue/createmeta/{{project}}/issuetypes", createmeta_issue_types)
    r.add_get(f"{API}/issue/createmeta/{{project}}/issuetypes/{{type}}", createmeta_fields)
