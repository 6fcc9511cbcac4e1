"""The GitHub source: repositories, pull requests with their commits and reviews, review and
conversation comments, PR timing figures and links to Jira work items. Registered as provider
"github" on import."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from etld.sources.base import Source, Step, register_source
from etld.sources.github.steps_comments import CommentsStep
from etld.sources.github.steps_pulls import PullRequestsStep
from etld.sources.github.steps_repos import RepositoriesStep


class GitHubSource(Source):
    provider = "github"

    def steps(self, job_config: dict[str, Any]) -> Sequence[Step]:
        return [RepositoriesStep(), PullRequestsStep(), CommentsStep()]


register_source("github", GitHubSource)
