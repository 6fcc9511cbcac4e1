"""Message formats, queue naming and the retry schedule (pure functions, no services)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from etld.broker.backoff import retry_delay
from etld.broker.topology import Topology, delay_name, parse_queue, stage_queue
from etld.config import parse_config
from etld.messages import (
    EmbeddingMessage,
    ExtractionMessage,
    InvalidMessage,
    JobMessage,
    TransformMessage,
    parse_message,
)

# The reference's examples, verbatim.
JOB = {
    "job_id": 123,
    "tenant_id": 1,
    "integration_id": 456,
    "job_type": "jira_sync",
    "config": {"full_sync": False, "batch_size": 50, "include_custom_fields": True},
    "scheduled_at": "2024-01-15T10:00:00Z",
    "priority": 1,
    "retry_count": 0,
    "max_retries": 3,
}
EXTRACTION = {
    "tenant_id": 1,
    "integration_id": 456,
    "job_id": 123,
    "type": "jira_dev_status_fetch",
    "provider": "Jira",
    "last_sync_date": "2025-10-21T14:00:00",
    "first_item": True,
    "last_item": False,
    "last_job_item": False,
    "issue_id": "2035047",
    "issue_key": "BEX-7997",
}
TRANSFORM = {
    "tenant_id": 1,
    "integration_id": 456,
    "job_id": 123,
    "type": "jira_dev_status",
    "provider": "jira",
    "last_sync_date": "2025-10-21T14:00:00",
    "first_item": False,
    "last_item": True,
    "last_job_item": True,
    "raw_data_id": 789,
}
EMBEDDING = {
    "tenant_id": 1,
    "table_name": "work_items",
    "external_id": "PROJ-123",
    "operation": "insert",
    "job_id": 123,
    "first_item": False,
    "last_item": True,
    "last_job_item": True,
}


@pytest.mark.parametrize(
    ("kind", "data", "cls"),
    [
        ("job", JOB, JobMessage),
        ("extraction", EXTRACTION, ExtractionMessage),
        ("transform", TRANSFORM, TransformMessage),
        ("embedding", EMBEDDING, EmbeddingMessage),
    ],
)
def test_reference_examples_parse_and_round_trip(
    kind: str, data: dict[str, Any], cls: type
) -> None:
    message = parse_message(kind, data)
    assert isinstance(message, cls)
    assert message.to_dict() == data


def test_extras_are_kept_and_orchestration_keys_typed() -> None:
    message = parse_message(
        "extraction", {**EXTRACTION, "run_id": 9, "step": "issues", "tier": "premium"}
    )
    assert isinstance(message, ExtractionMessage)
    assert (message.run_id, message.step, message.tier) == (9, "issues", "premium")
    assert message.extra == {"issue_id": "2035047", "issue_key": "BEX-7997"}
    with pytest.raises(
        InvalidMessage, match="field 'run_id' must be a positive integer, got string"
    ):
        parse_message("extraction", {**EXTRACTION, "run_id": "9"})


def test_job_defaults_and_embedding_normalisation() -> None:
    job = parse_message(
        "job", {k: JOB[k] for k in ("job_id", "tenant_id", "integration_id", "job_type")}
    )
    assert isinstance(job, JobMessage)
    assert (job.config, job.priority, job.retry_count, job.max_retries) == ({}, 0, 0, None)
    embedding = parse_message("embedding", {**EMBEDDING, "external_id": 42})
    assert isinstance(embedding, EmbeddingMessage)
    assert embedding.external_id == "42"


@pytest.mark.parametrize(
    ("kind", "data", "reason"),
    [
        ("embedding", {**EMBEDDING, "operation": "upsert"},
         "must be one of insert, update, delete, got 'upsert'"),
        ("transform", {**TRANSFORM, "raw_data_id": True},
         "field 'raw_data_id' must be a positive integer, got boolean"),
        ("job", {**JOB, "config": []}, "field 'config' must be an object, got array"),
        ("job", {**JOB, "job_type": " "},
         "field 'job_type' must be a non-empty string, got an empty one"),
        ("job", {**JOB, "scheduled_at": "soon"},
         "field 'scheduled_at' must be an ISO-8601 timestamp"),
        ("nonsense", JOB, "unknown message type 'nonsense'"),
        ("job", None, "message body must be a JSON object, got null"),
    ],
)  # fmt: skip
def test_invalid_messages_name_the_problem(kind: str, data: Any, reason: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_message(kind, data)
    assert reason in caught.value.reason


def test_queue_names() -> None:
    assert stage_queue("jobs") == "etl.jobs"
    assert stage_queue("embedding", "premium") == "embedding_queue_premium"
    assert parse_queue("transform_queue_free") == ("transform", "free")
    assert parse_queue("etl.jobs") == ("jobs", None)
    assert parse_queue("etl.failed") is None
    with pytest.raises(ValueError, match="needs a tier"):
        stage_queue("extraction")
    assert [delay_name(s) for s in (0.05, 1, 30, 120, 600, 1.5)] == [
        "etl.delay.50ms",
        "etl.delay.1s",
        "etl.delay.30s",
        "etl.delay.2m",
        "etl.delay.10m",
        "etl.delay.1500ms",
    ]


def test_topology_declares_reference_arguments() -> None:
    config = parse_config(
        {"rabbitmq": {"queue_type": "quorum"}, "pipeline": {"tiers": ["free", "premium"]}}
    )
    queues = {spec.name: spec.arguments for spec in Topology(config).all_queues()}
    assert queues["etl.jobs"] == {
        "x-message-ttl": 3_600_000,
        "x-dead-letter-exchange": "etl.dlx",
        "x-dead-letter-routing-key": "failed",
        "x-queue-type": "quorum",
    }
    assert queues["etl.failed"] == {
        "x-message-ttl": 86_400_000,
        "x-max-length": 1000,
        "x-queue-type": "quorum",
    }
    assert queues["etl.delay.5s"]["x-message-ttl"] == 5000
    assert queues["etl.delay.5s"]["x-dead-letter-exchange"] == ""
    assert {"extraction_queue_premium", "transform_queue_free", "embedding_queue_free"} <= set(
        queues
    )
    assert Topology(config).delay_for(3) == ("etl.delay.5s", 5.0)
    assert Topology(config).delay_for(5000) == ("etl.delay.10m", 600.0)


def test_retry_delays_grow_cap_and_only_shrink_with_jitter() -> None:
    delays = (1.0, 5.0, 30.0)
    rng = random.Random(7)
    for attempt, base in ((1, 1.0), (2, 5.0), (3, 30.0), (9, 30.0)):
        for _ in range(50):
            assert base * 0.8 <= retry_delay(attempt, delays, 0.2, rng) <= base
    assert retry_delay(2, delays, 0.0) == 5.0
