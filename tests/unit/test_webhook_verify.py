"""Webhook proofs (GitHub signatures, Jira secrets) and what deliveries name."""

from __future__ import annotations

from typing import Any

import pytest

from etld.secrets import SecretError, encrypt_secret
from etld.sources.jira.targets import target_refs, targets_jql
from etld.webhooks.events import github_event, jira_event
from etld.webhooks.verify import (
    github_ok,
    jira_ok,
    seal_webhook_secret,
    signature,
    webhook_secret,
)

SECRET = "a-webhook-secret-of-some-length"
KEY = "k" * 32
BODY = b'{"action": "opened"}'


def integration(**fields: Any) -> dict[str, Any]:
    return {"id": 5, "tenant_id": 2, "settings": {}, "webhook_secret": None, **fields}


def test_github_signature_over_the_raw_body() -> None:
    good = signature(SECRET, BODY)
    assert good.startswith("sha256=")
    assert github_ok(SECRET, BODY, {"X-Hub-Signature-256": good})
    assert github_ok(SECRET, BODY, {"X-Hub-Signature-256": good.upper().replace("SHA", "sha")})
    assert not github_ok(SECRET, BODY + b" ", {"X-Hub-Signature-256": good})
    assert not github_ok("another-secret-entirely", BODY, {"X-Hub-Signature-256": good})
    assert not github_ok(SECRET, BODY, {"X-Hub-Signature-256": good[7:]})  # no sha256=
    assert not github_ok(SECRET, BODY, {})


def test_jira_secret_by_query_bearer_or_signature() -> None:
    assert jira_ok(SECRET, BODY, {}, {"secret": SECRET})
    assert jira_ok(SECRET, BODY, {"Authorization": f"Bearer {SECRET}"}, {})
    assert jira_ok(SECRET, BODY, {"X-Hub-Signature": signature(SECRET, BODY)}, {})
    assert not jira_ok(SECRET, BODY, {}, {})
    assert not jira_ok(SECRET, BODY, {}, {"secret": SECRET[:-1]})
    assert not jira_ok(SECRET, BODY, {"Authorization": f"Basic {SECRET}"}, {"secret": SECRET})
    # A signature header, when sent, must hold: the query secret does not stand in for it.
    assert not jira_ok(SECRET, BODY, {"X-Hub-Signature": "sha256=00"}, {"secret": SECRET})


def test_secrets_from_the_environment_or_sealed_in_the_row() -> None:
    named = integration(settings={"webhook_secret_env": "HOOK"})
    assert webhook_secret(named, KEY, {"HOOK": SECRET}) == SECRET
    assert webhook_secret(named, KEY, {}) is None
    assert webhook_secret(named, KEY, {"HOOK": "short"}) is None  # too short to trust
    sealed = integration(webhook_secret=seal_webhook_secret(KEY, 2, 5, SECRET))
    assert webhook_secret(sealed, KEY, {}) == SECRET
    assert webhook_secret(sealed, "another key entirely", {}) is None
    assert webhook_secret(integration(id=6, webhook_secret=sealed["webhook_secret"]), KEY) is None
    # A credentials ciphertext copied into the column is not a webhook secret.
    copied = integration(webhook_secret=encrypt_secret(KEY, 2, 5, SECRET))
    assert webhook_secret(copied, KEY, {}) is None
    assert webhook_secret(integration(), KEY, {}) is None
    with pytest.raises(SecretError):
        seal_webhook_secret(KEY, 2, 5, "short")


def test_jira_events_name_their_issue() -> None:
    updated = {"webhookEvent": "jira:issue_updated", "issue": {"id": "10042", "key": "proj-7"}}
    event = jira_event(updated, {"X-Atlassian-Webhook-Identifier": "d1"})
    assert event.name == "jira:issue_updated"
    assert event.delivery_id == "d1"
    assert [(t.key, t.body) for t in event.targets] == [
        ("issue:10042", {"kind": "issue", "id": "10042", "key": "PROJ-7"})
    ]
    worklog = {"webhookEvent": "worklog_created", "worklog": {"issueId": "10001"}}
    assert [t.key for t in jira_event(worklog, {}).targets] == ["issue:10001"]
    deleted = {"webhookEvent": "jira:issue_deleted", "issue": {"id": "1", "key": "A-1"}}
    assert jira_event(deleted, {}).targets == []
    assert jira_event({"webhookEvent": "project_created"}, {}).targets == []
    assert jira_event({"issue": {"id": "1; DROP", "key": "not a key"}}, {}).targets == []


def test_github_events_name_their_pull_request() -> None:
    repo = {"full_name": "Acme/API"}
    pr = {"action": "synchronize", "repository": repo, "pull_request": {"number": 12, "id": 99}}
    event = github_event(pr, {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "g1"})
    assert event.name == "pull_request.synchronize"
    assert [(t.key, t.body) for t in event.targets] == [
        (
            "pull_request:acme/api#12",
            {"kind": "pull_request", "repository": "Acme/API", "number": 12, "id": "99"},
        )
    ]
    comment = {"action": "created", "repository": repo, "issue": {"number": 3, "pull_request": {}}}
    headers = {"X-GitHub-Event": "issue_comment"}
    assert github_event(comment, headers).targets == []  # an empty pull_request link: an issue
    comment["issue"] = {"number": 3, "pull_request": {"url": "x"}}
    assert [t.key for t in github_event(comment, headers).targets] == ["pull_request:acme/api#3"]
    assert github_event({"zen": "hi"}, {"X-GitHub-Event": "ping"}).targets == []
    bad = {"repository": {"full_name": "../../etc"}, "pull_request": {"number": 1}}
    assert github_event(bad, {"X-GitHub-Event": "pull_request"}).targets == []


def test_targeted_jql() -> None:
    config = {
        "targets": [
            {"kind": "issue", "id": "10002", "key": "A-2"},
            {"kind": "issue", "key": "b-9"},
            {"kind": "issue", "id": "10002"},
            {"kind": "pull_request", "repository": "a/b", "number": 1},
            {"kind": "issue", "id": "1) OR (1=1"},
        ]
    }
    refs = target_refs(config)
    assert refs == ["10002", "B-9"]
    assert targets_jql(refs) == "(id in (10002) OR key in (B-9)) ORDER BY updated ASC, id ASC"
    assert targets_jql(["7"]) == "id in (7) ORDER BY updated ASC, id ASC"
