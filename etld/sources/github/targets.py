"""Targeted runs: the pull requests webhook events named, each read by itself.

A webhook run's configuration carries `targets`, e.g. `{"kind": "pull_request", "repository":
"acme/api", "number": 12, "id": "4242"}`. Such a run has two steps, the pull requests step and
the comments step, and for each target they read:

- `GET /repos/{owner}/{name}/pulls/{n}`: an old name of a renamed repository redirects, and
  the answer's `base.repo` tells the repository's id and current name;
- every page of `/pulls/{n}/commits` and `/pulls/{n}/reviews`;
- then, in the comments step, every page of `/pulls/{n}/comments` (review comments) and
  `/issues/{n}/comments` (the conversation).

No repository list and no repository-wide list is read, and no window applies, so nothing a
later incremental run starts from moves (the job's `last_sync_date` stays where polling left
it, and nothing is soft-deleted). The answers are stored as the usual page types and loaded by
the usual transforms, so an answer older than what is loaded changes nothing, and Jira keys are
linked as in polling. List pages use and record ETags as polling does: an unchanged list
answers 304 and keeps what is loaded.

A pull request gone since the event (404), or of a repository the integration's syncs have not
loaded (outside its configured repositories, or new), is skipped with a warning: polling, the
source of truth, decides about those.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from etld.logs import get_logger
from etld.sources.base import StepContext
from etld.sources.checkpoints import load_checkpoint
from etld.sources.github.api import Json, list_url
from etld.sources.github.steps_repos import repo_ref
from etld.sources.http import ApiClient, HttpStatusError, MalformedResponse
from etld.store.queries import SQL

log = get_logger(__name__)

CHECKPOINT = "github_targets"  # the pulls step's progress, and the pull requests it found


def targeted(config: Mapping[str, Any]) -> bool:
    """Whether a run with this configuration is a webhook run of named items."""
    return bool(config.get("targets"))


def target_refs(config: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(repository, number) of each pull request target, each once (names compared without
    case, as GitHub does), in order."""
    refs: dict[tuple[str, int], tuple[str, int]] = {}
    for target in config.get("targets") or ():
        if not isinstance(target, Mapping) or target.get("kind") != "pull_request":
            continue
        repository, number = target.get("repository"), target.get("number")
        if not isinstance(repository, str) or repository.strip("/").count("/") != 1:
            continue
        if not isinstance(number, int) or isinstance(number, bool) or number <= 0:
            continue
        full = repository.strip("/")
        refs.setdefault((full.lower(), number), (full, number))
    return list(refs.values())


async def fetch_pull(
    ctx: StepContext, api: ApiClient, repository: str, number: int
) -> tuple[Json, Json] | None:
    """The repository (id and current name) and `GET /pulls/{n}` answer of a target, or None
    when it is to be skipped."""
    url = list_url(api, f"/repos/{repository}/pulls/{number}", ())
    try:
        answer = await api.get_page(url)
    except HttpStatusError as exc:
        if exc.status != 404:
            raise
        log.warning("github pull request not found", repository=repository, number=number)
        return None
    pr = answer.data
    if not isinstance(pr, dict) or "id" not in pr or pr.get("number") != number:
        raise MalformedResponse(f"GitHub returned a malformed pull request: {url}")
    base = pr.get("base")
    repo = repo_ref(base.get("repo") if isinstance(base, dict) else None, url)
    async with ctx.pool.acquire() as conn:
        known = await conn.fetchval(
            SQL["github.repository_id"], ctx.run.tenant_id, ctx.integration.id, repo["id"]
        )
    if known is None:
        log.warning(
            "github pull request of a repository not synced, skipped",
            repository=repo["full_name"],
            number=number,
        )
        return None
    return repo, pr


async def found_pulls(ctx: StepContext) -> list[Json]:
    """The pull requests the pulls step found: `{"repository": {id, full_name}, "number"}`."""
    cp = await load_checkpoint(ctx.pool, ctx.run.run_id, CHECKPOINT)
    return list(cp["found"]) if cp is not None else []
