"""What a verified delivery names: its event and the items (targets) to fetch again.

Jira: `webhookEvent` with the `issue` it concerns (issue and comment events) or the issue id
of a worklog; a deleted issue names nothing (the next full sync soft-deletes it). GitHub: the
`X-GitHub-Event` header; pull request, review, review comment and review thread events, and
comments on a pull request's conversation, name that pull request. Anything else is recorded
and names nothing. Targets are keyed (`issue:10001`, `pull_request:acme/api#12`) so repeats of
one item collapse into one pending target.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]

_JIRA_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*-[0-9]{1,12}$")
_REPO = re.compile(r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")
_PR_EVENTS = frozenset(
    {
        "pull_request",
        "pull_request_review",
        "pull_request_review_comment",
        "pull_request_review_thread",
    }
)


@dataclass(frozen=True)
class Target:
    key: str
    body: Json


@dataclass(frozen=True)
class Event:
    name: str
    delivery_id: str | None
    targets: list[Target] = field(default_factory=list)


def _text(value: Any, limit: int = 200) -> str:
    return str(value)[:limit] if value is not None else ""


def jira_event(payload: Json, headers: Any) -> Event:
    name = _text(payload.get("webhookEvent")) or "unknown"
    delivery = headers.get("X-Atlassian-Webhook-Identifier")
    issue = payload.get("issue")
    issue_id, key = "", ""
    if isinstance(issue, dict):
        issue_id, key = _text(issue.get("id")), _text(issue.get("key"))
    elif isinstance(payload.get("worklog"), dict):
        issue_id = _text(payload["worklog"].get("issueId"))
    if name == "jira:issue_deleted" or not (issue_id.isdigit() or _JIRA_KEY.match(key)):
        return Event(name, delivery)
    body: Json = {"kind": "issue"}
    if issue_id.isdigit():
        body["id"] = issue_id
    if _JIRA_KEY.match(key):
        body["key"] = key.upper()
    ref = body.get("id") or body["key"]
    return Event(name, delivery, [Target(f"issue:{ref}", body)])


def github_event(payload: Json, headers: Any) -> Event:
    name = _text(headers.get("X-GitHub-Event")) or "unknown"
    action = payload.get("action")
    label = f"{name}.{action}" if isinstance(action, str) and action else name
    delivery = headers.get("X-GitHub-Delivery")
    repo = payload.get("repository")
    full_name = _text(repo.get("full_name")) if isinstance(repo, dict) else ""
    number: Any = None
    pr_id: Any = None
    if name in _PR_EVENTS and isinstance(payload.get("pull_request"), dict):
        number, pr_id = payload["pull_request"].get("number"), payload["pull_request"].get("id")
    elif name == "issue_comment" and isinstance(payload.get("issue"), dict):
        issue = payload["issue"]
        if issue.get("pull_request"):  # a comment on a pull request's conversation
            number = issue.get("number")
    valid = isinstance(number, int) and not isinstance(number, bool) and number > 0
    if not valid or not _REPO.match(full_name):
        return Event(label, delivery)
    body: Json = {"kind": "pull_request", "repository": full_name, "number": number}
    if isinstance(pr_id, int):
        body["id"] = str(pr_id)
    return Event(label, delivery, [Target(f"pull_request:{full_name.lower()}#{number}", body)])
