"""The Jira Cloud source: projects, statuses, issues with changelogs, development status,
and the on-demand custom fields sync. Registered as provider "jira" on import."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from etld.sources.base import Source, Step, register_source
from etld.sources.jira.steps_dev import DevStatusStep
from etld.sources.jira.steps_issues import IssuesStep
from etld.sources.jira.steps_meta import CustomFieldsStep, ProjectsStep, StatusesStep


class JiraSource(Source):
    provider = "jira"

    def steps(self, job_config: dict[str, Any]) -> Sequence[Step]:
        if job_config.get("targets"):
            return [IssuesStep()]  # a webhook run: the issues events named (see targets.py)
        regular: list[Step] = [ProjectsStep(), StatusesStep(), IssuesStep(), DevStatusStep()]
        if job_config.get("custom_fields_sync"):
            # Fields first, so the issues of the same run are read with what was discovered.
            return [CustomFieldsStep(), *regular]
        return regular

    def supports_targets(self) -> bool:
        return True

    def all_steps(self) -> Sequence[Step]:
        return [*self.steps({}), CustomFieldsStep()]


register_source("jira", JiraSource)
