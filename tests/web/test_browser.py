"""The admin UI in headless Chromium against a real daemon, PostgreSQL, RabbitMQ and the
Jira simulator: sign in, add an integration, run its job and watch the dashboard grid move
from idle to running to finished without a reload, map a custom field, requeue a dead
letter, sign out. A screenshot of every page lands in test-artifacts/.

Chromium is Debian's package (`apt-get install chromium`), driven by Playwright for Python;
the tests skip, saying why, only when no Chromium binary is installed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestServer

from etld import dlq
from etld.config import Config
from etld.daemon import Daemon
from etld.passwords import hash_password
from etld.simulator import create_jira_app, generate_site
from etld.store.queries import SQL

CHROMIUM = os.environ.get("ETLD_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
USER, PASSWORD = "ui-admin", "browser-test-password"
JIRA_USER, JIRA_TOKEN = "bot@acme.com", "jira-token-7781"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"no Chromium at {CHROMIUM}: install Debian's package (apt-get install chromium)",
)

# Records every state each grid cell of a card shows, in order, as the DOM changes.
WATCH_GRID = """
(jobId) => {
  const card = document.querySelector(`.job[data-job="${jobId}"]`);
  window.__cells = {};
  window.__overall = [];
  const snap = () => {
    card.querySelectorAll("td.cell").forEach((td) => {
      const key = td.closest("tr").dataset.step + "/" + td.dataset.stage;
      const seen = (window.__cells[key] = window.__cells[key] || []);
      if (seen[seen.length - 1] !== td.textContent) seen.push(td.textContent);
    });
    const overall = card.querySelector("[data-overall]").textContent;
    if (window.__overall[window.__overall.length - 1] !== overall) window.__overall.push(overall);
  };
  snap();
  new MutationObserver(snap).observe(card, {subtree: true, childList: true, characterData: true,
                                            attributes: true});
  window.__notReloaded = true;
}
"""


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def runs_done(pool: asyncpg.Pool, job_id: int, count: int) -> bool:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT outcome FROM etl_job_runs WHERE job_id = $1", job_id)
    return len(rows) >= count and all(r["outcome"] != "RUNNING" for r in rows)


@pytest.fixture
async def jira() -> AsyncIterator[str]:
    server = TestServer(
        create_jira_app(
            generate_site(24, 5, projects=2, custom_fields=8), user=JIRA_USER, token=JIRA_TOKEN
        )
    )
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
async def daemon(make_config: Callable[..., Config]) -> AsyncIterator[Daemon]:
    config = make_config(
        tenants=[{"name": "acme", "tier": "premium"}],
        workers={"premium": {"extraction": 2, "transform": 2, "embedding": 0}},
        security={"secret_key": "browser-test-secret-key-0123456789"},
        scheduler={"enabled": False},
    )
    daemon = Daemon(config, frozenset({"workers", "web"}))
    await daemon.start()
    assert daemon.pool is not None
    async with daemon.pool.acquire() as conn:
        tenant_id = await conn.fetchval(SQL["seed.tenant_id_by_name"], "acme")
        await conn.fetchval(
            SQL["users.insert_user"], tenant_id, USER, "UI Admin", hash_password(PASSWORD), "admin"
        )
    yield daemon
    await daemon.shutdown()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS
        )
        yield chromium
        await chromium.close()


async def test_admin_ui_end_to_end(daemon: Daemon, jira: str, browser: Any) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    pool = daemon.pool
    assert pool is not None
    base = f"http://127.0.0.1:{daemon.services['web_port']}"
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    async def shot(name: str) -> None:
        await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    # Sign in (a page behind the login goes to the form, then back).
    await page.goto(f"{base}/integrations")
    assert page.url.startswith(f"{base}/login")
    await shot("01-login")
    await page.fill("input[name=username]", USER)
    await page.fill("input[name=password]", "not the password")
    await page.click("button[type=submit]")
    assert "Wrong username or password" in await page.content()
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/integrations")

    # Add the Jira integration against the simulator, then test its connection.
    await page.click("text=Add an integration")
    await page.fill("input[name=name]", "jira-sim")
    await page.select_option("select[name=provider]", "jira")
    await page.fill("input[name=base_url]", jira)
    await page.fill("input[name=username]", JIRA_USER)
    await page.fill("input[name=token]", JIRA_TOKEN)
    await page.check("input[name=allow_private_network]")
    await shot("02-integration-form")
    await page.click("button:has-text('Create integration and job')")
    await page.wait_for_url(f"{base}/integrations")
    assert "created with its job" in await page.inner_text(".flash")
    assert JIRA_TOKEN not in await page.content()
    assert "…7781" in await page.content()
    await page.click("button:has-text('Test connection')")
    await page.wait_for_url(f"{base}/integrations")
    assert "connected to Jira" in await page.inner_text(".flash.ok")
    await shot("03-integrations")

    # Run the job from the dashboard and watch its grid, live.
    async with pool.acquire() as conn:
        job_id = await conn.fetchval("SELECT id FROM etl_jobs WHERE name = 'jira-sim'")
    await page.click("nav >> text=Jobs")
    await page.wait_for_selector("[data-live-state].on")
    await shot("04-dashboard-before")
    await page.evaluate(WATCH_GRID, job_id)
    await page.click(f".job[data-job='{job_id}'] button[data-run-now]")
    await page.wait_for_function(
        f"document.querySelector(\".job[data-job='{job_id}'] [data-overall]\")"
        ".textContent === 'FINISHED'",
        timeout=60_000,
    )
    cells: dict[str, list[str]] = await page.evaluate("window.__cells")
    overall: list[str] = await page.evaluate("window.__overall")
    assert await page.evaluate("window.__notReloaded") is True
    assert overall[-1] == "FINISHED", overall
    assert "RUNNING" in overall, overall
    first = next(k for k in cells if k.endswith("/extraction"))
    assert cells[first][:3] == ["idle", "running", "finished"], cells
    assert all(states[-1] == "finished" for states in cells.values()), cells
    await page.wait_for_selector(f".job[data-job='{job_id}'] [data-last-run]:has-text('FINISHED')")
    await shot("05-dashboard-finished")
    await page.click(f".job[data-job='{job_id}'] >> text=History")
    assert "FINISHED" in await page.inner_text("table.data")
    await shot("06-job-history")

    # Discover custom fields, then map one.
    await page.click("nav >> text=Custom fields")
    await page.click("button:has-text('Queue for Extraction & Transform')")
    assert "Custom fields sync queued" in await page.inner_text(".flash")
    await wait_until(lambda: runs_done(pool, job_id, 2), 60, "the custom fields sync")
    await page.reload()
    field_value = await page.eval_on_selector(
        "select[name=custom_field_01] option:nth-child(2)", "o => o.value"
    )
    await page.select_option("select[name=custom_field_01]", field_value)
    await shot("07-custom-fields")
    await page.click("button:has-text('Apply mapping')")
    assert "Mapping saved" in await page.inner_text(".flash")
    assert (
        await page.eval_on_selector("select[name=custom_field_01]", "s => s.value") == field_value
    )
    await wait_until(lambda: runs_done(pool, job_id, 3), 60, "the re-transform")

    # A dead letter of this tenant, requeued from the queues page.
    async with pool.acquire() as conn:
        tenant_id = await conn.fetchval("SELECT tenant_id FROM etl_jobs WHERE id = $1", job_id)
        item = await conn.fetchrow(
            "SELECT i.queue, i.message FROM etl_run_items i JOIN etl_job_runs r ON r.id = i.run_id"
            " WHERE r.job_id = $1 AND i.stage = 'transform' LIMIT 1",
            job_id,
        )
    letter = dlq.NewDeadLetter(
        queue=item["queue"],
        reason="transform failed: simulated",
        body=orjson.dumps(item["message"]),
        tenant_id=tenant_id,
        job_id=job_id,
        stage="transform",
        attempts=4,
        error="ValueError: simulated",
    )
    dead_id = await dlq.record(pool, letter)
    await page.click("nav >> text=Queues")
    row = page.locator(f"tr[data-dead='{dead_id}']")
    assert "transform failed: simulated" in await row.inner_text()
    await shot("08-queues")
    await row.locator("button:has-text('Requeue')").click()
    assert f"Dead letter {dead_id} requeued" in await page.inner_text(".flash")
    assert (await dlq.get_dead_letter(pool, dead_id)).status == "requeued"  # type: ignore[union-attr]

    # The other pages render in the same layout.
    await page.click("nav >> text=Work items")
    await shot("09-work-items")
    await page.click("table.data a >> nth=0")
    assert "Workflow metrics" in await page.content()
    await shot("10-work-item")
    await page.click("nav >> text=Statuses & types")
    assert "Work item types" in await page.content()
    await shot("11-statuses")
    await page.goto(f"{base}/no-such-page")
    await shot("12-not-found")

    # Sign out: the session cookie is gone and pages want a login again.
    await page.click("button:has-text('Sign out')")
    await page.wait_for_url(f"{base}/login")
    assert "You are signed out" in await page.content()
    await shot("13-signed-out")
    await page.goto(f"{base}/queues")
    assert page.url.startswith(f"{base}/login")
    assert errors == []
    await context.close()
