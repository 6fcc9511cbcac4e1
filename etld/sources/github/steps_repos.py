"""The repositories step: the repositories a run covers, stored and loaded.

Configured repositories (`repositories`, owner/name) are read one by one with
`GET /repos/{owner}/{name}`, which follows a renamed repository's redirect to its new name;
otherwise every repository of `organization`, of `user`, or of the token's account, page by
page. The run checkpoint collects the repositories found (id and current name), so the later
steps scan exactly those, and an interrupted extraction resumes at the next repository or
page. An answer unchanged since it was last stored (304) is not stored again: its id and name
come from the ETag record.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from etld.logs import get_logger
from etld.sources.base import ExtractOutput, RawPage, Step, StepContext, TransformOutput
from etld.sources.checkpoints import load_checkpoint, save_checkpoint
from etld.sources.github.api import (
    Etags,
    GitHubOptions,
    Json,
    fetch_list,
    github_session,
    list_url,
    parse_time,
)
from etld.sources.http import ApiClient, HttpStatusError, MalformedResponse
from etld.store.queries import SQL
from etld.workers.errors import Reject

log = get_logger(__name__)

Loader = Callable[[StepContext, RawPage, TransformOutput], Awaitable[int]]
REPOSITORIES = "github_repositories"  # a list page
REPOSITORY = "github_repository"  # one repository asked for by name
STEP = "github_repositories"


class GitHubStep(Step):
    """A step whose transform dispatches on the stored page's type."""

    loaders: Mapping[str, Loader] = {}

    async def transform(self, ctx: StepContext, page: RawPage, out: TransformOutput) -> int:
        loader = self.loaders.get(page.type)
        if loader is None:
            raise Reject(
                f"step {self.name} cannot transform raw page {page.id} of type {page.type!r}"
            )
        return await loader(ctx, page, out)


def repo_ref(repo: Any, what: str) -> Json:
    """What later steps need of a repository: its id (stable) and current name."""
    if not isinstance(repo, dict) or "id" not in repo or not repo.get("full_name"):
        raise MalformedResponse(f"GitHub returned a malformed repository in {what}")
    return {"id": str(repo["id"]), "full_name": str(repo["full_name"])}


async def run_repositories(ctx: StepContext) -> list[Json]:
    """The repositories this run covers (those the repositories step found)."""
    cp = await load_checkpoint(ctx.pool, ctx.run.run_id, STEP)
    if cp is not None and cp.get("done"):
        return list(cp["repos"])
    # Only when the step did not run in this run (a hand-made run): what is loaded.
    async with ctx.pool.acquire() as conn:
        rows = await conn.fetch(SQL["github.repositories"], ctx.run.tenant_id, ctx.integration.id)
    return [{"id": r["external_id"], "full_name": r["full_name"]} for r in rows]


class RepositoriesStep(GitHubStep):
    name = STEP
    display_name = "Repositories"

    def __init__(self) -> None:
        self.loaders = {REPOSITORIES: load_repositories, REPOSITORY: load_repository}

    async def extract(self, ctx: StepContext, message: dict[str, Any], out: ExtractOutput) -> None:
        opts = GitHubOptions.of(ctx)
        run_id = ctx.run.run_id
        cp = await load_checkpoint(ctx.pool, run_id, STEP)
        cp = cp or {"done": False, "repos": [], "index": 0, "url": None, "page": 0}
        if cp["done"]:
            return
        etags = Etags(ctx.pool, ctx.integration.id, opts.conditional_requests)
        async with github_session(ctx, out) as api:
            if opts.repositories:
                await self._named(ctx, out, api, etags, opts, cp)
            else:
                await self._listed(ctx, out, api, etags, opts, cp)
        cp["done"] = True
        await save_checkpoint(ctx.pool, run_id, STEP, cp)
        log.info("github repositories", run_id=run_id, count=len(cp["repos"]))

    async def _named(
        self,
        ctx: StepContext,
        out: ExtractOutput,
        api: ApiClient,
        etags: Etags,
        opts: GitHubOptions,
        cp: Json,
    ) -> None:
        while cp["index"] < len(opts.repositories):
            full = opts.repositories[cp["index"]]
            url = list_url(api, f"/repos/{full}", ())
            known = await etags.lookup(url)
            try:
                answer = await api.get_page(url, etag=known.etag if known else None)
            except HttpStatusError as exc:
                if exc.status != 404:
                    raise
                # GitHub answers 404 for a repository the token may not see, too.
                log.warning("github repository not found or not visible", repository=full)
                answer = None
            if answer is not None and answer.not_modified and known is not None:
                _add(cp, known.meta["repo"])
            elif answer is not None:
                ref = repo_ref(answer.data, url)
                await out.store_page(REPOSITORY, answer.data, f"n{cp['index']}", item_count=1)
                if answer.etag:
                    await etags.save([(url, answer.etag, {"repo": ref})])
                _add(cp, ref)
            cp["index"] += 1
            await save_checkpoint(ctx.pool, ctx.run.run_id, STEP, cp)

    async def _listed(
        self,
        ctx: StepContext,
        out: ExtractOutput,
        api: ApiClient,
        etags: Etags,
        opts: GitHubOptions,
        cp: Json,
    ) -> None:
        if opts.organization:
            path, params = f"/orgs/{opts.organization}/repos", [("type", "all")]
        elif opts.user:
            path, params = f"/users/{opts.user}/repos", [("type", "owner")]
        else:
            path, params = (
                "/user/repos",
                [("affiliation", "owner,collaborator,organization_member")],
            )
        url: str | None = cp["url"] or list_url(
            api, path, [*params, ("per_page", opts.page_size), ("page", 1)]
        )
        while url is not None:
            listed = await fetch_list(api, etags, url)
            if listed.items is None:
                refs = list(listed.known.meta["repos"]) if listed.known else []
            else:
                refs = [repo_ref(r, url) for r in listed.items]
                if refs:
                    key = f"p{cp['page']}"
                    await out.store_page(REPOSITORIES, listed.items, key, item_count=len(refs))
                entry = listed.entry(repos=refs)
                if entry is not None:
                    await etags.save([entry])
            for ref in refs:
                _add(cp, ref)
            url = listed.next
            cp["url"], cp["page"] = url, cp["page"] + 1
            await save_checkpoint(ctx.pool, ctx.run.run_id, STEP, cp)


def _add(cp: Json, ref: Json) -> None:
    if all(r["id"] != ref["id"] for r in cp["repos"]):
        cp["repos"].append(ref)


# -- transform -------------------------------------------------------------------------------------


def repository_row(repo: Json) -> Json:
    owner = repo.get("owner")
    return {
        "external_id": str(repo["id"]),
        "full_name": str(repo["full_name"]),
        "owner": owner.get("login") if isinstance(owner, dict) else None,
        "name": repo.get("name"),
        "default_branch": repo.get("default_branch"),
        "private": bool(repo.get("private")),
        "archived": bool(repo.get("archived")),
        "html_url": repo.get("html_url"),
        "description": repo.get("description"),
        "created": parse_time(repo.get("created_at")),
        "updated": parse_time(repo.get("updated_at")),
        "pushed_at": parse_time(repo.get("pushed_at")),
    }


async def load_repositories(ctx: StepContext, page: RawPage, out: TransformOutput) -> int:
    repos = page.payload
    if not isinstance(repos, list) or not all(isinstance(r, dict) for r in repos):
        raise Reject(f"raw page {page.id} ({page.type}): expected a list of repositories")
    return await _load(ctx, page, repos)


async def load_repository(ctx: StepContext, page: RawPage, out: TransformOutput) -> int:
    if not isinstance(page.payload, dict):
        raise Reject(f"raw page {page.id} ({page.type}): expected a repository")
    return await _load(ctx, page, [page.payload])


async def _load(ctx: StepContext, page: RawPage, repos: list[Json]) -> int:
    for repo in repos:
        if "id" not in repo or not repo.get("full_name"):
            raise Reject(f"raw page {page.id} ({page.type}): a repository has no id or name")
    rows = {r["external_id"]: r for r in map(repository_row, repos)}
    async with ctx.pool.acquire() as conn:
        written = await conn.fetch(
            SQL["github.upsert_repositories"],
            ctx.run.tenant_id,
            ctx.integration.id,
            [rows[k] for k in sorted(rows)],
        )
    return len(written)
