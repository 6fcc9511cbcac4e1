"""The configuration steps: projects & issue types, statuses & relations, custom fields.

Each stores the API's answers verbatim, one raw page per answer (project statuses and create
metadata wrapped with the project they belong to, which the answer itself does not name).
Page keys are deterministic, so a retried extraction stores nothing twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from etld.logs import get_logger
from etld.sources.base import ExtractOutput, RawPage, Step, StepContext, TransformOutput
from etld.sources.http import ApiClient, HttpStatusError
from etld.sources.jira import transform_meta as tm
from etld.sources.jira.api import (
    API,
    JiraOptions,
    expect_list,
    jira_session,
    offset_pages,
)
from etld.store.queries import SQL
from etld.workers.errors import Reject

log = get_logger(__name__)

Loader = Callable[[StepContext, RawPage, TransformOutput], Awaitable[int]]
Json = dict[str, Any]

PROJECTS = "jira_projects"
STATUSES = "jira_statuses"
PROJECT_STATUSES = "jira_project_statuses"
FIELDS = "jira_fields"
CREATEMETA = "jira_createmeta"
CREATEMETA_LEGACY = "jira_createmeta_legacy"
_KEYS_PER_SEARCH = 50  # /project/search takes at most 50 keys


class JiraStep(Step):
    """A step whose transform dispatches on the stored page's type."""

    loaders: Mapping[str, Loader] = {}

    async def transform(self, ctx: StepContext, page: RawPage, out: TransformOutput) -> int:
        loader = self.loaders.get(page.type)
        if loader is None:
            raise Reject(
                f"step {self.name} cannot transform raw page {page.id} of type {page.type!r}"
            )
        return await loader(ctx, page, out)


def _meta(load: Callable[[StepContext, RawPage], Awaitable[int]]) -> Loader:
    async def loader(ctx: StepContext, page: RawPage, out: TransformOutput) -> int:
        return await load(ctx, page)

    return loader


async def project_pages(api: ApiClient, opts: JiraOptions, expand: bool) -> list[tuple[str, Json]]:
    """(page key, /project/search answer) for the configured projects, or all of them."""
    keys = opts.projects
    groups = [keys[i : i + _KEYS_PER_SEARCH] for i in range(0, len(keys), _KEYS_PER_SEARCH)]
    out = []
    for g, group in enumerate(groups or [()]):
        params: list[tuple[str, str | int]] = [("orderBy", "key")]
        if expand:
            params.append(("expand", "issueTypes"))
        params.extend(("keys", k) for k in group)
        async for page in offset_pages(api, f"{API}/project/search", params, size=50):
            out.append((f"g{g}:s{page.get('startAt', 0)}", page))
    return out


class ProjectsStep(JiraStep):
    name = "jira_projects_and_issue_types"
    display_name = "Projects & Types"
    loaders = {PROJECTS: _meta(tm.load_projects)}

    async def extract(self, ctx: StepContext, message: dict[str, Any], out: ExtractOutput) -> None:
        opts = JiraOptions.of(ctx)
        async with jira_session(ctx, out) as api:
            for key, page in await project_pages(api, opts, expand=True):
                await out.store_page(PROJECTS, page, key, item_count=len(page["values"]))


class StatusesStep(JiraStep):
    name = "jira_statuses_and_relationships"
    display_name = "Statuses & Relations"
    loaders = {
        STATUSES: _meta(tm.load_statuses),
        PROJECT_STATUSES: _meta(tm.load_project_statuses),
    }

    async def extract(self, ctx: StepContext, message: dict[str, Any], out: ExtractOutput) -> None:
        opts = JiraOptions.of(ctx)
        # The projects step ran (and loaded) before this one: its table says which projects.
        async with ctx.pool.acquire() as conn:
            rows = await conn.fetch(
                SQL["jira.active_projects"], ctx.run.tenant_id, ctx.integration.id
            )
        projects = [(r["external_id"], r["key"]) for r in rows]
        if opts.projects:
            projects = [p for p in projects if p[1] in opts.projects]
        async with jira_session(ctx, out) as api:
            statuses = expect_list(await api.get(f"{API}/status"), "/status")
            await out.store_page(STATUSES, statuses, "status", item_count=len(statuses))
            for project_id, key in projects:
                path = f"{API}/project/{key}/statuses"
                try:
                    answer = expect_list(await api.get(path), path)
                except HttpStatusError as exc:
                    if exc.status != 404:
                        raise
                    # Deleted (or hidden from us) since the projects step listed it.
                    log.warning("project gone, its statuses skipped", project=key)
                    continue
                payload = {"project": {"id": project_id, "key": key}, "issue_types": answer}
                await out.store_page(
                    PROJECT_STATUSES, payload, f"project:{project_id}", item_count=len(answer)
                )


class CustomFieldsStep(JiraStep):
    name = "jira_custom_fields"
    display_name = "Custom Fields"
    loaders = {
        FIELDS: _meta(tm.load_custom_fields),
        CREATEMETA: _meta(tm.load_custom_fields),
        CREATEMETA_LEGACY: _meta(tm.load_custom_fields),
    }

    async def extract(self, ctx: StepContext, message: dict[str, Any], out: ExtractOutput) -> None:
        opts = JiraOptions.of(ctx)
        async with jira_session(ctx, out) as api:
            fields = expect_list(await api.get(f"{API}/field"), "/field")
            await out.store_page(FIELDS, fields, "field", item_count=len(fields))
            projects = [
                (str(p["id"]), str(p["key"]))
                for _, page in await project_pages(api, opts, expand=False)
                for p in page["values"]
            ]
            legacy: list[str] = []
            for project_id, key in projects:
                payload = await _createmeta(api, project_id, key)
                if payload is None:
                    legacy.append(key)
                    continue
                count = sum(len(p["fields"]) for pages in payload["fields"].values() for p in pages)
                await out.store_page(CREATEMETA, payload, f"project:{project_id}", item_count=count)
            if legacy:
                # Servers without the per-project endpoints still answer the deprecated form.
                params: list[tuple[str, str | int]] = [("expand", "projects.issuetypes.fields")]
                params.extend(("projectKeys", k) for k in legacy)
                answer = await api.get(f"{API}/issue/createmeta", params)
                await out.store_page(CREATEMETA_LEGACY, answer, "legacy:" + ",".join(legacy))


async def _createmeta(api: ApiClient, project_id: str, key: str) -> Json | None:
    """A project's create metadata from the paginated endpoints; None when they are missing."""
    base = f"{API}/issue/createmeta/{key}/issuetypes"
    try:
        types = [p async for p in offset_pages(api, base, items="issueTypes", size=200)]
    except HttpStatusError as exc:
        if exc.status == 404:
            return None
        raise
    fields: dict[str, list[Json]] = {}
    for page in types:
        for itype in page["issueTypes"]:
            tid = str(itype.get("id"))
            fields[tid] = [
                p async for p in offset_pages(api, f"{base}/{tid}", items="fields", size=200)
            ]
    return {"project": {"id": project_id, "key": key}, "issuetypes": types, "fields": fields}
