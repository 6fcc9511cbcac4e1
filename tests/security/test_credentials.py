"""Credentials: sealed at rest and bound to their row, never returned, masked, never logged,
and the daemon refuses to start without the key that opens them.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from etld.config import parse_config
from etld.secrets import SecretError, decrypt_secret, encrypt_secret, integration_secret
from etld.web.app import create_app
from tests.chaos.harness import (
    TOKEN,
    TOKEN_ENV,
    USER,
    WorkerProcess,
    consumers_ready,
    controller,
    jira_site,
    raw_config,
    to_toml,
    wait_for,
)
from tests.integration.test_api_jobs import World, build_world, web_config

ROOT = Path(__file__).resolve().parents[2]
SECRET_KEY = "credentials-test-key-4242424242"
PLAIN = "jira-api-token-SUPERSECRET-1a2b"

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def world(pool: asyncpg.Pool, db_url: str) -> World:
    return await build_world(pool, web_config(db_url, security={"secret_key": SECRET_KEY}))


@pytest.fixture
async def client(world: World, aiohttp_client: AiohttpClient) -> Client:
    return await aiohttp_client(create_app(world.daemon))


async def _create(client: Client, world: World) -> int:
    resp = await client.post(
        "/app/etl/integrations",
        json={
            "name": "sealed",
            "provider": "jira",
            "base_url": "https://sealed.example.com",
            "username": "etl@example.com",
            "token": PLAIN,
        },
        headers=world.auth("alpha"),
    )
    text = await resp.text()
    assert resp.status in (200, 201), text
    assert PLAIN not in text
    return int((await resp.json())["id"])


async def test_credentials_are_sealed_at_rest_and_bound_to_their_row(
    world: World, client: Client, pool: asyncpg.Pool
) -> None:
    integration_id = await _create(client, world)
    alpha, beta = world.tenants["alpha"], world.tenants["beta"]
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM integrations WHERE id = $1", integration_id)
        beta_integration = await conn.fetchval(
            "SELECT integration_id FROM etl_jobs WHERE id = $1", world.jobs["beta"]
        )
        # Nothing in the row, in any column, holds the token in clear.
        dump = await conn.fetchval(
            "SELECT row_to_json(i)::text FROM integrations i WHERE id = $1", integration_id
        )
    blob = bytes(row["credentials"])
    assert PLAIN.encode() not in blob
    assert PLAIN not in dump
    assert row["credentials_hint"] == "…" + PLAIN[-4:]
    assert decrypt_secret(SECRET_KEY, alpha, integration_id, blob) == PLAIN
    # Two seals of one token differ (a fresh nonce each time).
    assert encrypt_secret(SECRET_KEY, alpha, integration_id, PLAIN) != blob

    # The ciphertext moved onto another tenant's row, or another integration, is refused.
    for tenant_id, other in ((beta, beta_integration), (alpha, beta_integration)):
        with pytest.raises(SecretError, match="do not decrypt"):
            decrypt_secret(SECRET_KEY, tenant_id, other, blob)
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE integrations SET credentials = $2 WHERE id = $1", beta_integration, blob
        )
    with pytest.raises(SecretError, match="do not decrypt"):
        integration_secret(
            tenant_id=beta,
            integration_id=beta_integration,
            settings={},
            credentials=blob,
            secret_key=SECRET_KEY,
        )
    # A wrong key, and a tampered byte, are refused the same way.
    with pytest.raises(SecretError):
        decrypt_secret("another-key-of-enough-length", alpha, integration_id, blob)
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(SecretError):
        decrypt_secret(SECRET_KEY, alpha, integration_id, tampered)


async def test_no_route_returns_a_credential(world: World, client: Client) -> None:
    integration_id = await _create(client, world)
    resp = await client.get("/app/etl/openapi.json", headers=world.auth("alpha"))
    paths: dict[str, dict[str, Any]] = (await resp.json())["paths"]
    gets = [p.replace("{integration_id}", str(integration_id)) for p, ops in paths.items()]
    gets = [p for p, (_, ops) in zip(gets, paths.items(), strict=True) if "get" in ops]
    checked = 0
    for who in ("alpha", "service"):
        for path in gets:
            query = f"?tenant_id={world.tenants['alpha']}" if who == "service" else ""
            resp = await client.get(path + query, headers=world.auth(who))
            text = await resp.text()
            assert PLAIN not in text, path
            assert PLAIN[:-4] not in text, path  # not even in part
            checked += 1
    assert checked >= 20
    resp = await client.get(f"/app/etl/integrations/{integration_id}", headers=world.auth("alpha"))
    shown = await resp.json()
    assert shown["credentials_hint"] == "…" + PLAIN[-4:]  # masked: the last 4 only
    assert shown["has_credentials"] is True
    assert "token" not in shown
    assert "credentials" not in shown


def _toml(db_url: str, amqp_url: str, port: int, secret_key: str | None) -> str:
    key = f'[security]\nsecret_key = "{secret_key}"\n' if secret_key else ""
    return (
        f'[database]\nurl = "{db_url}"\n[rabbitmq]\nurl = "{amqp_url}"\n[web]\nport = {port}\n'
        f'[daemon]\nconnect_timeout = 5.0\n[logging]\nformat = "json"\n'
        f"[embeddings]\nenabled = false\n{key}"
    )


async def test_the_daemon_refuses_to_start_without_the_key(
    world: World, client: Client, db_url: str, amqp_url: str, tmp_path: Path
) -> None:
    await _create(client, world)
    config = tmp_path / "etld.toml"
    config.write_text(_toml(db_url, amqp_url, 0, None))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETLD_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "etld", "--config", str(config), "run", "--role", "workers",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    lines = [line for line in err.decode().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("etld: error: ETLD_SECRET_KEY is not set"), lines[0]
    assert "1 integration(s)" in lines[0]


async def test_a_sync_never_logs_the_token(
    db_url: str,
    amqp_url: str,
    aiohttp_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A full sync at debug level, its token sealed in the database: no log line holds it,
    nor the Basic header built from it."""
    site = await jira_site(aiohttp_server, 200)
    raw = raw_config(db_url, amqp_url, site.base_url)
    del raw["integrations"][0]["token_env"]  # the sealed credential is the only source
    raw["logging"] = {"level": "debug", "format": "json"}
    raw["security"] = {"secret_key": SECRET_KEY}
    path = tmp_path / "etld.toml"
    path.write_text(to_toml(raw))
    config = parse_config(raw)
    workers = WorkerProcess(path, tmp_path / "workers.log")
    async with controller(raw, monkeypatch=monkeypatch) as ctl:
        monkeypatch.delenv(TOKEN_ENV)
        async with ctl.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT id, tenant_id FROM integrations WHERE name = 'jira'")
            await conn.execute(
                "UPDATE integrations SET credentials = $2 WHERE id = $1",
                row["id"],
                encrypt_secret(SECRET_KEY, row["tenant_id"], row["id"], TOKEN),
            )
        try:
            await workers.start()
            await wait_for(lambda: consumers_ready(amqp_url, config), 30, "the workers")
            await ctl.start_full_sync()
            run = await ctl.wait_for_end(60)
            assert run["outcome"] == "FINISHED", run["error"]
        finally:
            await workers.stop()
    text = workers.log_text()
    assert '"level":"debug"' in text  # debug lines were really written
    basic = base64.b64encode(f"{USER}:{TOKEN}".encode()).decode()
    for needle in (TOKEN, basic, SECRET_KEY):
        assert needle not in text, needle
