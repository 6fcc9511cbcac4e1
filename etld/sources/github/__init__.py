"""The GitHub source: repositories, pull requests with their commits and reviews, review and
conversation comments, PR timing figures and links to Jira work items; webhook runs read only the
pull requests they name. Registered as provider "github" on import."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from etld.sources.base import Source, Step, register_source
from etld.sources.github.steps_comments import CommentsStep
from etld.sources.github.steps_pulls import PullRequestsStep
from etld.sources.github.steps_repos import RepositoriesStep
from etld.sources.github.targets import targeted


class GitHubSource(Source):
    provider = "github"

    def steps(self, job_config: dict[str, Any]) -> Sequence[Step]:
        if targeted(job_config):
            # A webhook run: the pull requests events named, then their comments (targets.py).
            return [PullRequestsStep(), CommentsStep()]
        return [RepositoriesStep(), PullRequestsStep(), CommentsStep()]

    def supports_targets(self) -> bool:
        return True


register_source("github", GitHubSource)
