"""Metrics computed from source data during transformation."""

from __future__ import annotations

from etld.metrics.workflow import (
    CHANGELOG_COLUMNS,
    FLOW_CATEGORIES,
    METRIC_COLUMNS,
    ChangelogRow,
    FlowCategory,
    Transition,
    WorkflowMetrics,
    compute_workflow,
    default_flow_category,
    parse_jira_datetime,
)

__all__ = [
    "CHANGELOG_COLUMNS",
    "FLOW_CATEGORIES",
    "METRIC_COLUMNS",
    "ChangelogRow",
    "FlowCategory",
    "Transition",
    "WorkflowMetrics",
    "compute_workflow",
    "default_flow_category",
    "parse_jira_datetime",
]
