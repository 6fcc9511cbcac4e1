"""Prometheus metrics, registered once in the default registry and served by /metrics.

Labels are bounded on purpose: stage and tier come from the config, `kind`
from a fixed set of dead-letter causes. Per-message values such as tenant ids
never become labels; they belong in logs.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# The tier label of etl.jobs, which serves every tier.
NO_TIER = "none"

MESSAGES_HANDLED = Counter(
    "etld_messages_handled_total",
    "Messages whose handler finished and which were acked.",
    ["stage", "tier"],
)
MESSAGES_RETRIED = Counter(
    "etld_messages_retried_total",
    "Messages sent to a delay queue for another attempt.",
    ["stage", "tier"],
)
MESSAGES_DEAD_LETTERED = Counter(
    "etld_messages_dead_lettered_total",
    "Messages dead-lettered, by cause: malformed, rejected, exhausted, no_handler, broker.",
    ["stage", "tier", "kind"],
)
HANDLER_SECONDS = Histogram(
    "etld_handler_seconds",
    "Time spent in stage handlers, whatever the outcome.",
    ["stage", "tier"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
MESSAGES_IN_FLIGHT = Gauge(
    "etld_messages_in_flight",
    "Deliveries being handled by this process, as last sampled.",
    ["stage", "tier"],
)
QUEUE_MESSAGES = Gauge(
    "etld_queue_messages",
    "Messages ready for delivery in a queue, as last sampled.",
    ["queue"],
)
QUEUE_UNACKED = Gauge(
    "etld_queue_unacked",
    "Messages delivered but not yet acked in a queue (needs the management API).",
    ["queue"],
)
QUEUE_CONSUMERS = Gauge(
    "etld_queue_consumers",
    "Consumers attached to a queue across all daemons, as last sampled.",
    ["queue"],
)
PUBLISHED = Counter(
    "etld_published_total",
    "Messages published and confirmed by the broker.",
    ["exchange"],
)
PUBLISH_FAILURES = Counter(
    "etld_publish_failures_total",
    "Publishes that were not confirmed: timeout, broker nack, unroutable or connection lost.",
    ["exchange", "cause"],
)
BROKER_RECONNECTS = Counter(
    "etld_broker_reconnects_total",
    "Times the RabbitMQ connection was re-established after being lost.",
)
WORKER_RESTARTS = Counter(
    "etld_worker_restarts_total",
    "Consumer restarts requested through `etld workers restart`.",
    ["stage", "tier"],
)


def tier_label(tier: str | None) -> str:
    return tier or NO_TIER
