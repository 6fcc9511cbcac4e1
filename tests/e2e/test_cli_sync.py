"""`etld sync` as a user runs it: a subprocess with a config file, against the simulator
served by the test on 127.0.0.1, judged by its exit code and what it prints."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from etld.simulator import FaultPlan, create_jira_app, generate_site

USER, TOKEN = "etl@example.com", "cli-token"
TOKEN_ENV = "ETLD_CLI_JIRA_TOKEN"
ROOT = Path(__file__).resolve().parents[2]

Etld = Callable[..., Awaitable[tuple[int, str, str]]]


@pytest.fixture(autouse=True)
def quiet_logs() -> Any:
    with capture_logs() as logs:
        yield logs


def write_config(path: Path, db_url: str, amqp_url: str, base_url: str) -> Path:
    path.write_text(
        f"""
[database]
url = "{db_url}"
max_connections = 5

[rabbitmq]
url = "{amqp_url}"
retry_delays = [0.05, 0.1, 0.2]

[scheduler]
enabled = false

[embeddings]
enabled = false

[workers.free]
extraction = 2
transform = 2
embedding = 0

[[tenants]]
name = "acme"
tier = "free"

[[integrations]]
tenant = "acme"
name = "jira"
provider = "jira"
base_url = "{base_url}"
username = "{USER}"
token_env = "{TOKEN_ENV}"
allow_private_network = true
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
async def etld(
    tmp_path: Path, db_url: str, amqp_url: str, aiohttp_server: Any
) -> Callable[..., Awaitable[tuple[int, str, str]]]:
    """Serve a 120-issue site that only takes TOKEN; run `etld sync` with a given token."""
    site = generate_site(120, 5, now=datetime(2025, 3, 1, tzinfo=UTC))
    app = create_jira_app(
        site, user=USER, token=TOKEN, faults=FaultPlan(requests_per_second=10_000)
    )
    server = await aiohttp_server(app)
    base_url = str(server.make_url("")).rstrip("/")
    config = write_config(tmp_path / "etld.toml", db_url, amqp_url, base_url)

    async def run(*args: str, token: str = TOKEN) -> tuple[int, str, str]:
        env = {**os.environ, TOKEN_ENV: token, "PYTHONPATH": str(ROOT)}
        env.pop("ETLD_CONFIG", None)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "etld",
            "--config",
            str(config),
            "sync",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=str(tmp_path),
        )
        out, err = await asyncio.wait_for(proc.communicate(), 90)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    run.base_url = base_url  # type: ignore[attr-defined]
    return run


async def test_a_sync_finishes_and_prints_its_summary(etld: Etld) -> None:
    code, out, err = await etld("--tenant", "acme", "--integration", "jira", "--full")
    assert code == 0, (out, err)
    assert "run 1 started: acme/jira (jira, full)" in out
    assert "Issues & Changelogs" in out
    assert "transform finished" in out
    assert "run 1 of acme/jira (jira): FINISHED" in out
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert lines["work_items"] == ["120"]
    assert lines["projects"] == ["3"]
    assert int(lines["changelogs"][0].replace(",", "")) > 120
    assert "dead letters   0" in out
    assert "api calls" in out


async def test_refused_credentials_exit_1_with_the_reason(etld: Etld) -> None:
    code, out, err = await etld(
        "--tenant", "acme", "--integration", "jira", "--timeout", "30", token="wrong"
    )
    assert code == 1, (out, err)
    base_url = etld.base_url  # type: ignore[attr-defined]
    assert f"Jira rejected the credentials for {base_url}" in err
    assert "FAILED" in out
    assert "dead letters   1" in out


async def test_unknown_names_are_usage_errors(etld: Etld) -> None:
    code, out, err = await etld("--tenant", "acme", "--integration", "nope")
    assert code == 2, (out, err)
    assert "tenant 'acme' has no integration named 'nope' (integrations: jira)" in err
    assert out == ""
    code, _, err = await etld("--tenant", "nobody", "--integration", "jira")
    assert code == 2
    assert "no tenant named 'nobody' (tenants: acme)" in err
