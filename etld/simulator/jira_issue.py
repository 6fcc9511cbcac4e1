"""JSON rendering of simulated issues, their changelogs and their dev-status, per request.

Nothing here is stored: each response is built from the issue's derived state. A `Renderer` is
bound to one site and one base URL and memoises the objects every issue shares (users, statuses,
issue types, projects), so a page of 100 issues costs little more than its own field values.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from etld.simulator.jira_data import JiraSite
from etld.simulator.jira_history import History, IssueRecord, IssueState
from etld.simulator.jira_render import (
    API,
    DEV_FIELD_ID,
    dev_summary,
    field_name,
    field_schema,
    issue_type_json,
    jira_time,
    project_ref_json,
    status_json,
    user_json,
)

Json = dict[str, Any]
ISSUE_EXPAND = "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations"
EMBEDDED_CHANGELOG_CAP = 100  # Jira embeds at most this many histories, newest first


@dataclass(frozen=True, slots=True)
class FieldSelection:
    """The `fields` parameter, parsed. `ids_only` is /search/jql's default answer."""

    ids_only: bool
    everything: bool
    names: frozenset[str]
    excluded: frozenset[str]

    def wants(self, fid: str) -> bool:
        return fid not in self.excluded and (self.everything or fid in self.names)


def parse_fields(values: Iterable[str], *, default_all: bool) -> FieldSelection:
    """`*all`, `*navigable`, ids, and `-id` exclusions, from repeated and comma-joined values."""
    tokens = [t.strip() for v in values for t in v.split(",") if t.strip()]
    if not tokens:
        return FieldSelection(not default_all, default_all, frozenset(), frozenset())
    everything = any(t in ("*all", "*navigable") for t in tokens)
    names = frozenset(t for t in tokens if not t.startswith(("-", "*")))
    excluded = frozenset(t[1:] for t in tokens if t.startswith("-"))
    if not names and not everything and excluded:
        everything = True  # `-description` alone means "all navigable fields but description"
    ids_only = not everything and names <= {"id"}
    return FieldSelection(ids_only, everything, names, excluded)


class Renderer:
    def __init__(self, site: JiraSite, base: str) -> None:
        self.site = site
        self.base = base
        catalog = site.catalog
        self.users = [user_json(u, base) for u in catalog.users]
        self.user_zones = [ZoneInfo(u.time_zone) for u in catalog.users]
        self.statuses = {sid: status_json(s, base) for sid, s in catalog.statuses.items()}
        self.types = {tid: issue_type_json(t, base) for tid, t in catalog.issue_types.items()}
        self.projects = [project_ref_json(p, base) for p in catalog.projects]
        self.priorities = {
            pid: {
                "self": f"{base}{API}/priority/{pid}",
                "iconUrl": f"{base}/images/icons/priorities/{name.lower()}.svg",
                "name": name,
                "id": pid,
            }
            for pid, name in catalog.priorities
        }
        self.resolutions = {
            rid: {
                "self": f"{base}{API}/resolution/{rid}",
                "id": rid,
                "description": "",
                "name": name,
            }
            for rid, name in catalog.resolutions
        }

    # -- issues -----------------------------------------------------------------------------
    def issue(
        self, rec: IssueRecord, fields: FieldSelection, expand: set[str], *, bare_id: bool = False
    ) -> Json:
        """An issue; with `bare_id` (search) an ids-only selection gives just `{"id": ...}`."""
        if bare_id and fields.ids_only and "changelog" not in expand:
            return {"id": str(rec.issue_id)}
        state = self.site.state(rec)
        key = self.site.key_of(rec)
        out: Json = {
            "expand": ISSUE_EXPAND,
            "id": str(rec.issue_id),
            "self": f"{self.base}{API}/issue/{rec.issue_id}",
            "key": key,
        }
        values = self.fields(rec, state, fields)
        if "names" in expand:
            out["names"] = {fid: field_name(self.site.catalog, fid) for fid in values}
        if "schema" in expand:
            out["schema"] = {fid: field_schema(self.site.catalog, fid) for fid in values}
        out["fields"] = values
        if "changelog" in expand:
            out["changelog"] = self.embedded_changelog(state)
        return out

    def fields(self, rec: IssueRecord, state: IssueState, sel: FieldSelection) -> Json:
        tz = self.site.tz
        users = self.users
        values: Json = {}

        def put(fid: str, make: Any) -> None:
            if sel.wants(fid):
                values[fid] = make() if callable(make) else make

        put("summary", state.summary)
        put("description", state.description)
        put("issuetype", self.types[rec.itype])
        put("project", self.projects[rec.project])
        put("status", self.statuses[state.status])
        put("priority", self.priorities[state.priority])
        put("assignee", users[state.assignee] if state.assignee is not None else None)
        put("reporter", users[state.reporter])
        put("creator", users[state.reporter])
        put("labels", list(state.labels))
        put("created", lambda: jira_time(rec.created, tz))
        put("updated", lambda: jira_time(rec.updated, tz))
        put("resolution", self.resolutions[state.resolution] if state.resolution else None)
        put(
            "resolutiondate",
            lambda: jira_time(state.resolved_at, tz) if state.resolved_at else None,
        )
        put("statuscategorychangedate", lambda: jira_time(state.category_changed_at, tz))
        parent = self.site.parent_of(rec)
        if parent is not None:
            put("parent", lambda: self.parent(parent))
        if sel.everything or any(f.startswith("customfield_") for f in sel.names):
            for fid, value in self.site.custom_values(rec, self.base).items():
                put(fid, value)
            put(DEV_FIELD_ID, lambda: dev_summary([pr.status for pr in state.pull_requests]))
        return values

    def parent(self, rec: IssueRecord) -> Json:
        state = self.site.state(rec)
        return {
            "id": str(rec.issue_id),
            "key": self.site.key_of(rec),
            "self": f"{self.base}{API}/issue/{rec.issue_id}",
            "fields": {
                "summary": state.summary,
                "status": self.statuses[state.status],
                "priority": self.priorities[state.priority],
                "issuetype": self.types[rec.itype],
            },
        }

    # -- changelogs -------------------------------------------------------------------------
    def history(
        self, h: History, *, epoch_ms: bool = False, only: frozenset[str] | None = None
    ) -> Json | None:
        """One changelog entry; `only` keeps items of those field ids (None if nothing is left)."""
        items = []
        for field, ftype, fid, frm, frm_s, to, to_s in h.items:
            if only is not None and fid not in only:
                continue
            item: Json = {"field": field, "fieldtype": ftype}
            if fid is not None:
                item["fieldId"] = fid
            item.update({"from": frm, "fromString": frm_s, "to": to, "toString": to_s})
            items.append(item)
        if not items:
            return None
        created: Any = h.at if epoch_ms else jira_time(h.at, self.user_zones[h.author])
        return {"id": str(h.id), "author": self.users[h.author], "created": created, "items": items}

    def embedded_changelog(self, state: IssueState) -> Json:
        newest = state.histories[::-1][:EMBEDDED_CHANGELOG_CAP]
        histories = [self.history(h) for h in newest]
        return {
            "startAt": 0,
            "maxResults": len(histories),
            "total": len(state.histories),
            "histories": histories,
        }

    # -- dev-status -------------------------------------------------------------------------
    def pull_requests(self, rec: IssueRecord) -> list[Json]:
        state = self.site.state(rec)
        key = self.site.key_of(rec)
        out = []
        for pr in state.pull_requests:
            repo_url = f"https://github.com/{pr.repo}"
            author = self.site.catalog.users[pr.author]
            out.append(
                {
                    "author": {
                        "name": author.name,
                        "avatar": self.users[pr.author]["avatarUrls"]["48x48"],
                    },
                    "id": f"#{pr.number}",
                    "name": f"{key} {state.summary}",
                    "commentCount": pr.number % 5,
                    "source": {"branch": pr.branch, "url": f"{repo_url}/tree/{pr.branch}"},
                    "destination": {"branch": "main", "url": f"{repo_url}/tree/main"},
                    "reviewers": [],
                    "status": pr.status,
                    "url": pr.url,
                    "lastUpdate": jira_time(pr.updated, self.site.tz),
                    "repositoryId": str(abs(hash_repo(pr.repo))),
                    "repositoryName": pr.repo,
                    "repositoryUrl": repo_url,
                }
            )
        return out


def hash_repo(repo: str) -> int:
    """A stable numeric id for a repository name (Python's hash() is salted per process)."""
    value = 0
    for ch in repo:
        value = (value * 131 + ord(ch)) % 1_000_000_007
    return value
