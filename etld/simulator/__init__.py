"""Protocol-faithful API simulators (Jira Cloud for now) for the demo, tests and benchmarks."""

from __future__ import annotations

from etld.simulator.faults import ApiCallCounter, Fault, FaultKind, FaultPlan
from etld.simulator.jira import create_jira_app, serve_jira
from etld.simulator.jira_data import JiraSite, generate_site
from etld.simulator.jira_history import IssueTruth, PullRequest, StatusTransition

__all__ = [
    "ApiCallCounter",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "IssueTruth",
    "JiraSite",
    "PullRequest",
    "StatusTransition",
    "create_jira_app",
    "generate_site",
    "serve_jira",
]
