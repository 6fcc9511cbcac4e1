"""Integration pages: list, create, edit, test connection, activate/deactivate.

Tokens are write-only: the forms have an empty password field (left empty on edit, the
stored token stays) and pages show only the hint, the token's last 4 characters.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import MultiDict

from etld import integrations as integ
from etld import probe
from etld.web.errors import not_found
from etld.web.keys import DAEMON
from etld.web.ui.common import form_of, page_links, paging, pool_of, redirect, render, tenant_of

_ID = r"{integration_id:\d{1,18}}"
_TEXT_FIELDS = ("name", "provider", "base_url", "username", "token", "projects",
                "repositories", "organization")  # fmt: skip


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/integrations", list_page)
    r.add_get("/integrations/new", new_page)
    r.add_post("/integrations", create)
    r.add_get(f"/integrations/{_ID}/edit", edit_page)
    r.add_post(f"/integrations/{_ID}", update)
    r.add_post(f"/integrations/{_ID}/test", test)
    r.add_post(f"/integrations/{_ID}/active", set_active)


async def list_page(request: web.Request) -> web.Response:
    limit, offset = paging(request)
    items = await integ.list_integrations(pool_of(request), tenant_of(request), limit, offset)
    return await render(
        request,
        "integrations.html",
        {"integrations": items, "pages": page_links(request, limit, offset, len(items))},
    )


async def new_page(request: web.Request) -> web.Response:
    return await _form_page(request, None, {"active": True})


async def create(request: web.Request) -> web.Response:
    form = await form_of(request)
    data = _changes_from(form, creating=True)
    tenant_id = tenant_of(request)
    try:
        changes = integ.parse_changes(data, creating=True)
        new_id = await integ.create_integration(
            pool_of(request), tenant_id, changes, _secret_key(request)
        )
    except integ.IntegrationError as exc:
        return await _form_page(request, None, _echo(form), error=str(exc), status=422)
    return redirect(
        request,
        "/integrations",
        "ok",
        f"Integration {changes.name} created with its job (id {new_id}). "
        "Test the connection, then run the job from the dashboard.",
    )


async def edit_page(request: web.Request) -> web.Response:
    current = await _owned(request)
    return await _form_page(request, current, current)


async def update(request: web.Request) -> web.Response:
    current = await _owned(request)
    form = await form_of(request)
    data = _changes_from(form, creating=False)
    try:
        changes = integ.parse_changes(data, creating=False)
        await integ.update_integration(
            pool_of(request), current["tenant_id"], current["id"], changes, _secret_key(request)
        )
    except integ.IntegrationError as exc:
        values = {**current, **_echo(form)}
        return await _form_page(request, current, values, error=str(exc), status=422)
    return redirect(request, "/integrations", "ok", f"Integration {current['name']} saved.")


async def test(request: web.Request) -> web.Response:
    current = await _owned(request)
    result = await probe.test_connection(
        pool_of(request), current["tenant_id"], current["id"], _secret_key(request)
    )
    if result is None:
        raise not_found("no such integration")
    kind = "ok" if result.ok else "error"
    word = "succeeded" if result.ok else "failed"
    text = f"Connection test of {current['name']} {word}: {result.message} ({result.elapsed_ms} ms)"
    return redirect(request, "/integrations", kind, text)


async def set_active(request: web.Request) -> web.Response:
    current = await _owned(request)
    active = (await form_of(request)).get("active") == "true"
    await integ.set_active(pool_of(request), current["tenant_id"], current["id"], active)
    word = "activated" if active else "deactivated; its job is skipped until reactivated"
    return redirect(request, "/integrations", "ok", f"Integration {current['name']} {word}.")


# -- helpers -----------------------------------------------------------------------------------


async def _form_page(
    request: web.Request,
    current: dict[str, Any] | None,
    values: dict[str, Any],
    *,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    shown = dict(values)
    shown.pop("token", None)  # never echoed back, not even the one just typed
    for key in ("projects", "repositories"):
        if isinstance(shown.get(key), list):
            shown[key] = ", ".join(shown[key])
    return await render(
        request,
        "integration_form.html",
        {
            "current": current,
            "values": shown,
            "providers": integ.providers(),
            "error": error,
            "has_secret_key": bool(request.app[DAEMON].config.security.secret_key),
        },
        status=status,
    )


def _changes_from(form: MultiDict[str], *, creating: bool) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key in _TEXT_FIELDS:
        if key in form:
            data[key] = form[key]
    if not creating:
        data.pop("provider", None)
    # Checkboxes: absent means unchecked.
    data["allow_private_network"] = form.get("allow_private_network") == "on"
    data["active"] = form.get("active") == "on"
    return data


def _echo(form: MultiDict[str]) -> dict[str, Any]:
    values: dict[str, Any] = {k: form[k] for k in _TEXT_FIELDS if k in form and k != "token"}
    values["allow_private_network"] = form.get("allow_private_network") == "on"
    values["active"] = form.get("active") == "on"
    return values


async def _owned(request: web.Request) -> dict[str, Any]:
    found = await integ.get_integration(
        pool_of(request), int(request.match_info["integration_id"]), tenant_of(request)
    )
    if found is None:
        raise not_found("no such integration")
    return found


def _secret_key(request: web.Request) -> str:
    return request.app[DAEMON].config.security.secret_key
