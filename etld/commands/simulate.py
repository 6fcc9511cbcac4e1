"""`etld simulate`: serve a simulated Jira (or GitHub) site for demos and trials."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import sys
from collections.abc import Awaitable, Callable
from typing import Any

GITHUB_MODULE = "etld.simulator.github"
READY_WAIT = 600.0  # generating a very large site takes a while before the port opens


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="serve a simulated Jira or GitHub API on this machine",
        description=(
            "Serve a generated, deterministic site behind the real REST endpoints until "
            "Ctrl-C. Point an integration at the printed URL (with allow_private_network = "
            "true, since it is a local address)."
        ),
    )
    parser.set_defaults(no_config=True)
    sub = parser.add_subparsers(dest="provider", metavar="PROVIDER", required=True)

    jira = sub.add_parser("jira", help="a Jira Cloud site")
    _common(jira, port=8089)
    jira.add_argument("--issues", type=int, default=1000, help="issues to generate (default 1000)")
    jira.add_argument("--user", default=None, help="the only accepted username (default: any)")
    jira.set_defaults(func=cmd_jira, no_config=True)

    github = sub.add_parser("github", help="a GitHub organization (when available)")
    _common(github, port=8090)
    github.add_argument(
        "--prs", type=int, default=500, help="pull requests to generate (default 500)"
    )
    github.set_defaults(func=cmd_github, no_config=True)


def _common(parser: argparse.ArgumentParser, port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=port, help=f"port (default {port})")
    parser.add_argument("--seed", type=int, default=1, help="generation seed (default 1)")
    parser.add_argument("--token", default=None, help="the only accepted token (default: any)")


def _check(args: argparse.Namespace, count: int, what: str) -> str | None:
    if not 1 <= args.port <= 65535:
        return "--port must be between 1 and 65535"
    if count < 0:
        return f"--{what} must be >= 0"
    return None


def cmd_jira(args: argparse.Namespace) -> int:
    problem = _check(args, args.issues, "issues")
    if problem:
        print(f"etld: simulate jira: {problem}", file=sys.stderr)
        return 2
    from etld.simulator import serve_jira

    url = f"http://{_url_host(args.host)}:{args.port}"
    if args.user or args.token:
        hint = f"username {args.user or '(any)'}, API token {args.token or '(any)'}"
    else:
        hint = "any username and API token are accepted"
    lines = [
        f"Jira simulator: {url}  ({args.issues:,} issues, seed {args.seed})",
        f"  credentials  {hint}",
        "  in etld.toml:",
        "    [[integrations]]",
        '    tenant = "<tenant>"',
        '    name = "jira-sim"',
        '    provider = "jira"',
        f'    base_url = "{url}"',
        f'    username = "{args.user or "etl@example.com"}"',
        '    token_env = "JIRA_SIM_TOKEN"',
        "    allow_private_network = true",
        "  stop         Ctrl-C",
    ]
    serve = serve_jira(args.host, args.port, args.issues, args.seed, args.user, args.token)
    return _serve(serve, args.host, args.port, lines)


def cmd_github(args: argparse.Namespace) -> int:
    problem = _check(args, args.prs, "prs")
    if problem:
        print(f"etld: simulate github: {problem}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(GITHUB_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name not in (GITHUB_MODULE, "etld.simulator"):
            raise
        print(
            "etld: simulate github: the GitHub simulator is not part of this etld version "
            f"({GITHUB_MODULE} is missing)",
            file=sys.stderr,
        )
        return 1
    url = f"http://{_url_host(args.host)}:{args.port}"
    hint = f"token {args.token}" if args.token else "any token is accepted"
    lines = [
        f"GitHub simulator: {url}  ({args.prs:,} pull requests, seed {args.seed})",
        f"  credentials  {hint}",
        "  stop         Ctrl-C",
    ]
    serve = module.serve_github(args.host, args.port, args.prs, args.seed, args.token)
    return _serve(serve, args.host, args.port, lines)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _serve(serve: Awaitable[None], host: str, port: int, banner: list[str]) -> int:
    """Run the server until Ctrl-C; print the banner once the port accepts connections."""

    async def main() -> None:
        server = asyncio.ensure_future(serve)
        ready = asyncio.create_task(_announce_when_open(host, port, banner, print))
        try:
            await server
        finally:
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ready

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print("simulator stopped")
    except OSError as exc:
        print(f"etld: simulate: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


async def _announce_when_open(
    host: str, port: int, banner: list[str], say: Callable[[str], None]
) -> None:
    connect_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_WAIT
    while loop.time() < deadline:
        try:
            _, writer = await asyncio.open_connection(connect_host, port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        for line in banner:
            say(line)
        sys.stdout.flush()
        return
