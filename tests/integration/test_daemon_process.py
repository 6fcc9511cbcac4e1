"""`etld run` as a real process: ready, SIGTERM exit, unreachable dependencies."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(path: Path, db_url: str, amqp_url: str, port: int, **extra: str) -> Path:
    text = f"""
[database]
url = "{db_url}"
[rabbitmq]
url = "{amqp_url}"
[web]
port = {port}
[daemon]
grace_period = 10.0
connect_timeout = {extra.get("connect_timeout", "5.0")}
[logging]
format = "json"
[embeddings]
enabled = false
"""
    path.write_text(text)
    return path


async def start(config: Path) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETLD_")}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "etld", "--config", str(config), "run",
        cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def wait_ready(port: int, timeout: float = 20.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"http://127.0.0.1:{port}/ready") as resp:
                    if resp.status == 200:
                        body: dict[str, object] = await resp.json()
                        return body
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("daemon never became ready")


async def test_sigterm_exits_zero_within_grace(db_url: str, amqp_url: str, tmp_path: Path) -> None:
    port = free_port()
    proc = await start(write_config(tmp_path / "etld.toml", db_url, amqp_url, port))
    try:
        body = await wait_ready(port)
        assert body["checks"] == {"postgres": "ok", "migrations": "ok", "rabbitmq": "ok"}
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 15)
        assert code == 0
        assert time.monotonic() - started < 10.0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize(
    ("which", "expected"),
    [("rabbitmq", "cannot reach RabbitMQ at 127.0.0.1:"), ("postgres", "cannot reach PostgreSQL")],
)
async def test_unreachable_dependency_one_line_exit_1(
    db_url: str, amqp_url: str, tmp_path: Path, which: str, expected: str
) -> None:
    dead = free_port()  # nothing listens here
    if which == "rabbitmq":
        amqp_url = f"amqp://guest:hunter2@127.0.0.1:{dead}/"
    else:
        db_url = f"postgresql://postgres:hunter2@127.0.0.1:{dead}/etld"
    config = write_config(
        tmp_path / "etld.toml", db_url, amqp_url, free_port(), connect_timeout="2.0"
    )
    started = time.monotonic()
    proc = await start(config)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert time.monotonic() - started < 15
    lines = [line for line in err.decode().splitlines() if line.startswith("etld: error:")]
    assert len(lines) == 1, err.decode()
    assert expected in lines[0]
    assert str(dead) in lines[0]
    assert "hunter2" not in err.decode()  # the password is redacted everywhere
