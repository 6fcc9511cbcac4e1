"""Hostile payloads from a source, and log injection.

A Jira page whose issues carry control characters and forged log lines in their
summaries, a 2 MB string, wrong types, or nesting thousands of levels deep must not crash
the worker: the run ends (FINISHED, or FAILED with a dead letter that says why), and no
log line is forged: every JSON line parses, and the console renderer escapes control
characters.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog
from aiohttp import web

from etld.config import parse_config
from etld.logs import configure_logging, get_logger
from tests.chaos.harness import (
    WorkerProcess,
    consumers_ready,
    controller,
    jira_site,
    raw_config,
    to_toml,
    wait_for,
)

SEARCH = "/rest/api/3/search/jql"
FORGED = "2025-01-01T00:00:00Z [error    ] FORGED admin password reset"
NASTY = f"ok\n{FORGED}\r\x1b[31mred\x1b[0m\x00\x07\u2028end"


def _hostile(case: str, issues: list[dict[str, Any]]) -> bytes | None:
    """Damage the first issues of a page; returns a raw body when JSON cannot express it."""
    fields = issues[0]["fields"]
    if case == "control_characters":
        for issue in issues[:5]:
            issue["fields"]["summary"] = NASTY
            issue["fields"]["labels"] = [NASTY, "\x1b]0;title\x07"]
    elif case == "huge_string":
        fields["summary"] = "A" * (2 * 1024 * 1024)
        fields["description"] = {"type": "doc", "content": [{"type": "text", "text": "B" * 10**6}]}
    elif case == "wrong_types":
        fields["summary"] = {"not": "text"}
        fields["labels"] = "not-a-list"
        fields["created"] = 12345
        issues[1]["fields"] = "not-an-object"
        issues[2]["id"] = None
    elif case == "deep_nesting":
        fields["description"] = "__DEEP__"
    return None


def hostile_middleware(case: str, damaged: list[int]) -> Any:
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await handler(request)
        if request.path != SEARCH or damaged or not isinstance(response, web.Response):
            return response
        assert isinstance(response.body, bytes)
        page = orjson.loads(response.body)
        if not page.get("issues"):
            return response
        _hostile(case, page["issues"])
        body = orjson.dumps(page)
        if case == "deep_nesting":
            body = body.replace(b'"__DEEP__"', b"[" * 5000 + b"]" * 5000)
        damaged.append(len(body))
        return web.Response(body=body, status=response.status, content_type="application/json")

    return middleware


@pytest.mark.parametrize(
    "case", ["control_characters", "huge_string", "wrong_types", "deep_nesting"]
)
async def test_hostile_pages_never_crash_the_worker_nor_forge_log_lines(
    case: str,
    db_url: str,
    amqp_url: str,
    aiohttp_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    damaged: list[int] = []
    site = await jira_site(aiohttp_server, 120, middlewares=(hostile_middleware(case, damaged),))
    raw = raw_config(db_url, amqp_url, site.base_url)
    raw["logging"] = {"level": "debug", "format": "json"}
    path = tmp_path / "etld.toml"
    path.write_text(to_toml(raw))
    config = parse_config(raw)
    workers = WorkerProcess(path, tmp_path / "workers.log")
    async with controller(raw, monkeypatch=monkeypatch) as ctl:
        try:
            await workers.start()
            await wait_for(lambda: consumers_ready(amqp_url, config), 30, "the workers")
            await ctl.start_full_sync()
            run = await ctl.wait_for_end(90)
            assert damaged, "the hostile page was never served"
            assert workers.running, workers.log_text()[-3000:]
            async with ctl.pool.acquire() as conn:
                letters = await conn.fetch("SELECT reason FROM dead_letters")
            if run["outcome"] == "FAILED":
                assert len(letters) == 1, [r["reason"] for r in letters]
                assert letters[0]["reason"], "a dead letter must say why"
                assert run["error"]
            else:
                assert run["outcome"] == "FINISHED", run["error"]
                assert letters == []
        finally:
            await workers.stop()
    # Lines are split on "\n" only, as log shippers do (U+2028 inside JSON is legal).
    for line in workers.log_text().split("\n"):
        if line.startswith(("--- start", "{")) or not line.strip():
            if line.startswith("{"):
                orjson.loads(line)  # every JSON line is whole: nothing broke out of it
            continue
        pytest.fail(f"a line that is not JSON reached the log: {line[:200]!r}")
    print(
        f"hostile {case}: run {run['outcome']}, dead letters {[r['reason'][:80] for r in letters]}"
    )


def test_console_lines_escape_control_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("info", "console")
    try:
        get_logger("hostile").warning(
            f"summary was {NASTY}", summary=NASTY, nested={"summary": NASTY}, items=[NASTY]
        )
    finally:
        structlog.reset_defaults()
    out = stream.getvalue()
    assert out.count("\n") == 1, out  # one event, one line
    assert "\x1b" not in out
    assert "\r" not in out
    assert "\x00" not in out
    assert "\u2028" not in out
    assert not any(line.startswith(FORGED[:20]) for line in out.splitlines())


def test_json_lines_escape_control_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("info", "json")
    try:
        get_logger("hostile").warning(f"summary was {NASTY}", summary=NASTY)
    finally:
        structlog.reset_defaults()
    lines = stream.getvalue().rstrip("\n").split("\n")
    assert len(lines) == 1
    event = orjson.loads(lines[0])
    assert event["summary"] == NASTY  # escaped on the wire, intact once parsed
