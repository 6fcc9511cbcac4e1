"""The configuration side of a simulated Jira site: projects, issue types, statuses, workflows,
users, teams and custom field definitions.

It mirrors the Jira facts an ETL has to cope with: issue type ids shared by classic projects
while a team-managed project owns project-scoped types and statuses whose *names* repeat the
global ones; statuses in all three categories, including ones a tenant maps to backlog and
review; custom fields whose ids differ per site (their order is shuffled by the seed) and whose
names are not unique (see `jira_fields`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from etld.simulator.jira_fields import CustomField, custom_field_definitions

# Jira's four status categories; "undefined" exists but no status of ours uses it.
_CATEGORIES = {
    "undefined": (1, "No Category", "medium-gray"),
    "new": (2, "To Do", "blue-gray"),
    "done": (3, "Done", "green"),
    "indeterminate": (4, "In Progress", "yellow"),
}
_PROJECT_KEYS = ("PROJ", "CORE", "OPS", "WEB", "DATA", "MOB", "SEC", "INFRA", "PAY", "HR")
_PROJECT_NAMES = ("Product", "Core Platform", "Operations", "Website", "Data", "Mobile", "Security")
_FIRST = ("Ada", "Bruno", "Chen", "Dara", "Emil", "Fatima", "Goran", "Hana", "Ivo", "Jun", "Kemal")
_LAST = ("Novak", "Silva", "Okafor", "Lindqvist", "Tanaka", "Moreau", "Haddad", "Kowalski", "Ruiz")
_USER_ZONES = (
    "Europe/Berlin",
    "Asia/Shanghai",
    "America/New_York",
    "Asia/Kolkata",
    "UTC",
    "Australia/Sydney",
    "America/Los_Angeles",
)
_TEAMS = ("Platform", "Payments", "Growth", "Mobile Squad", "SRE")


@dataclass(frozen=True, slots=True)
class StatusCategory:
    id: int
    key: str
    name: str
    color: str


@dataclass(frozen=True, slots=True)
class Status:
    id: str
    name: str
    description: str
    category: StatusCategory
    icon: str
    project_id: str | None = None  # set for team-managed (project-scoped) statuses


@dataclass(frozen=True, slots=True)
class IssueType:
    id: str
    name: str
    description: str
    hierarchy_level: int
    avatar_id: int
    project_id: str | None = None  # set for team-managed (project-scoped) types
    entity_id: str | None = None

    @property
    def subtask(self) -> bool:
        return self.hierarchy_level < 0


@dataclass(frozen=True, slots=True)
class Workflow:
    """A status graph: `moves[status]` lists (next status, weight); issues start at `initial`."""

    id: str
    name: str
    initial: str
    moves: Mapping[str, tuple[tuple[str, float], ...]]

    @property
    def statuses(self) -> tuple[str, ...]:
        return tuple(self.moves)


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    key: str
    name: str
    team_managed: bool
    issue_types: tuple[IssueType, ...]
    type_weights: tuple[float, ...]
    workflows: Mapping[str, Workflow]  # issue type id -> workflow


@dataclass(frozen=True, slots=True)
class User:
    account_id: str
    name: str
    email: str | None  # None: hidden by the user's privacy settings
    time_zone: str
    account_type: str = "atlassian"


@dataclass(frozen=True, slots=True)
class Team:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Catalog:
    categories: tuple[StatusCategory, ...]
    statuses: Mapping[str, Status]
    issue_types: Mapping[str, IssueType]
    projects: tuple[Project, ...]
    custom_fields: tuple[CustomField, ...]
    users: tuple[User, ...]  # the last one is the automation app user
    teams: tuple[Team, ...]
    priorities: tuple[tuple[str, str], ...] = (
        ("1", "Highest"),
        ("2", "High"),
        ("3", "Medium"),
        ("4", "Low"),
        ("5", "Lowest"),
    )
    resolutions: tuple[tuple[str, str], ...] = (
        ("10000", "Done"),
        ("10001", "Won't Do"),
        ("10002", "Duplicate"),
        ("10003", "Cannot Reproduce"),
    )
    project_by_key: dict[str, Project] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for p in self.projects:
            self.project_by_key[p.key] = p


def _category(key: str) -> StatusCategory:
    cid, name, color = _CATEGORIES[key]
    return StatusCategory(cid, key, name, color)


def _statuses() -> dict[str, Status]:
    icon = "/images/icons/statuses/{}.png"
    rows = [
        ("1", "Open", "new", "The issue is open and ready for the assignee to start work on it."),
        ("10000", "To Do", "new", "Work that has not been started."),
        ("10001", "Backlog", "new", "Waiting to be prioritised."),
        ("10002", "Selected for Development", "new", "Planned for the coming sprint."),
        ("4", "Reopened", "new", "The resolution was not correct; the issue is open again."),
        ("3", "In Progress", "indeterminate", "This issue is being actively worked on."),
        ("10003", "In Review", "indeterminate", "Waiting for code review."),
        ("10004", "QA", "indeterminate", "Being verified by quality assurance."),
        ("10005", "Blocked", "indeterminate", "Work cannot continue until something else happens."),
        ("5", "Resolved", "done", "A resolution has been taken, waiting for verification."),
        ("6", "Closed", "done", "The issue is considered finished."),
        ("10006", "Done", "done", "Work is complete."),
    ]
    out = {
        sid: Status(sid, name, desc, _category(cat), icon.format(cat))
        for sid, name, cat, desc in rows
    }
    return out


def _scoped_statuses(project_id: str, first_id: int) -> dict[str, Status]:
    # Team-managed projects own statuses whose names collide with the global ones.
    rows = [
        ("To Do", "new"),
        ("In Progress", "indeterminate"),
        ("In Review", "indeterminate"),
        ("Done", "done"),
    ]
    out = {}
    for i, (name, cat) in enumerate(rows):
        sid = str(first_id + i)
        out[sid] = Status(
            sid, name, "", _category(cat), f"/images/icons/statuses/{cat}.png", project_id
        )
    return out


def _flow(wid: str, name: str, initial: str, moves: dict[str, list[tuple[str, float]]]) -> Workflow:
    return Workflow(wid, name, initial, {s: tuple(m) for s, m in moves.items()})


# Every graph has reopen moves (done -> open statuses) and back-to-backlog moves.
_SOFTWARE = {
    "10001": [("10002", 0.75), ("10006", 0.25)],
    "10002": [("3", 0.8), ("10001", 0.2)],
    "3": [("10003", 0.6), ("10005", 0.15), ("10001", 0.1), ("10002", 0.15)],
    "10005": [("3", 0.85), ("10001", 0.15)],
    "10003": [("10006", 0.6), ("3", 0.4)],
    "10006": [("3", 0.5), ("10001", 0.2), ("10002", 0.3)],
}
_BUG = {
    "1": [("3", 0.7), ("10001", 0.2), ("6", 0.1)],
    "10001": [("1", 0.8), ("6", 0.2)],
    "3": [("10003", 0.6), ("1", 0.2), ("10001", 0.2)],
    "10003": [("10004", 0.6), ("3", 0.4)],
    "10004": [("5", 0.7), ("4", 0.3)],
    "5": [("6", 0.6), ("4", 0.4)],
    "6": [("4", 1.0)],
    "4": [("3", 0.8), ("10001", 0.2)],
}
_SIMPLE = {
    "10000": [("3", 0.9), ("10006", 0.1)],
    "3": [("10006", 0.7), ("10000", 0.3)],
    "10006": [("3", 0.6), ("10000", 0.4)],
}


def _team_flow(project_key: str, ids: list[str]) -> Workflow:
    todo, doing, review, done = ids
    moves = {
        todo: [(doing, 0.85), (done, 0.15)],
        doing: [(review, 0.6), (todo, 0.4)],
        review: [(done, 0.65), (doing, 0.35)],
        done: [(doing, 0.6), (todo, 0.4)],
    }
    return _flow(
        f"{project_key}-simplified",
        f"Software Simplified Workflow for Project {project_key}",
        todo,
        moves,
    )


def _global_types() -> dict[str, IssueType]:
    rows = [
        ("10000", "Epic", "A big user story that needs to be broken down.", 1, 10307),
        ("10001", "Story", "Functionality or a feature expressed as a user goal.", 0, 10315),
        ("3", "Task", "A small, distinct piece of work.", 0, 10318),
        ("1", "Bug", "A problem or error.", 0, 10303),
        ("5", "Sub-task", "A small piece of work that's part of a larger task.", -1, 10316),
    ]
    return {r[0]: IssueType(*r) for r in rows}


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _uuid(rng: random.Random) -> str:
    h = _hex(rng, 32)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def _users(rng: random.Random) -> tuple[User, ...]:
    firsts = list(_FIRST)
    rng.shuffle(firsts)
    users = []
    for i, first in enumerate(firsts[:10]):
        last = _LAST[(i * 7) % len(_LAST)]
        # Both Atlassian account id formats occur on real sites.
        account = _hex(rng, 24) if i % 3 else f"712020:{_uuid(rng)}"
        email = None if i % 4 == 3 else f"{first.lower()}.{last.lower()}@example.com"
        users.append(User(account, f"{first} {last}", email, _USER_ZONES[i % len(_USER_ZONES)]))
    users.append(User(f"557058:{_uuid(rng)}", "Automation for Jira", None, "UTC", "app"))
    return tuple(users)


def _projects(
    count: int, statuses: dict[str, Status], types: dict[str, IssueType]
) -> list[Project]:
    software = _flow("10100", "Software Workflow", "10001", _SOFTWARE)
    bug = _flow("10101", "Bug Workflow", "1", _BUG)
    simple = _flow("10102", "Simple Workflow", "10000", _SIMPLE)
    classic_flows = {"10000": simple, "10001": software, "3": software, "1": bug, "5": software}
    projects = []
    for i in range(count):
        pid = str(10000 + i)
        key = _PROJECT_KEYS[i] if i < len(_PROJECT_KEYS) else f"P{i}"
        name = _PROJECT_NAMES[i] if i < len(_PROJECT_NAMES) else f"Project {i}"
        if count >= 3 and i == count - 1:
            projects.append(_team_managed(pid, key, name, statuses, types, 10200 + 10 * i))
            continue
        ptypes = tuple(types[t] for t in ("10000", "10001", "3", "1", "5"))
        weights = (0.05, 0.35, 0.3, 0.2, 0.1) if i % 2 == 0 else (0.08, 0.2, 0.42, 0.3, 0.0)
        projects.append(Project(pid, key, name, False, ptypes, weights, classic_flows))
    return projects


def _team_managed(
    pid: str,
    key: str,
    name: str,
    statuses: dict[str, Status],
    types: dict[str, IssueType],
    first: int,
) -> Project:
    scoped = _scoped_statuses(pid, first)
    statuses.update(scoped)
    flow = _team_flow(key, list(scoped))
    ptypes = []
    for j, (tname, level) in enumerate((("Epic", 1), ("Task", 0), ("Bug", 0), ("Subtask", -1))):
        tid = str(first + 5 + j)
        itype = IssueType(
            tid, tname, f"{tname} of {name}", level, 10400 + j, pid, f"ent-{pid}-{tid}"
        )
        types[tid] = itype
        ptypes.append(itype)
    return Project(
        pid, key, name, True, tuple(ptypes), (0.1, 0.5, 0.3, 0.1), {t.id: flow for t in ptypes}
    )


def build_catalog(rng: random.Random, projects: int, custom_fields: int) -> Catalog:
    if projects < 1:
        raise ValueError("a site needs at least one project")
    statuses = _statuses()
    types = _global_types()
    project_list = _projects(projects, statuses, types)
    categories = tuple(_category(k) for k in _CATEGORIES)
    users = _users(rng)
    teams = tuple(Team(_uuid(rng), name) for name in _TEAMS)
    return Catalog(
        categories,
        statuses,
        types,
        tuple(project_list),
        custom_field_definitions(rng, custom_fields),
        users,
        teams,
    )
