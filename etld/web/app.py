"""Application factory and the web component that serves it inside the daemon."""

from __future__ import annotations

from aiohttp import web

from etld.component import Component
from etld.daemon import Daemon
from etld.errors import StartupError
from etld.logs import get_logger
from etld.web import (
    api_integrations,
    api_jobs,
    api_mappings,
    api_queues,
    api_search,
    health,
    openapi,
    webhooks,
    ws,
)
from etld.web.auth import require_auth, setup_auth
from etld.web.errors import json_errors
from etld.web.events import setup_events
from etld.web.keys import DAEMON
from etld.web.ui import html_errors, limit_body, setup_ui, ui_auth

log = get_logger(__name__)


def create_app(daemon: Daemon) -> web.Application:
    # json_errors is outermost so that auth refusals are rendered as JSON too; html_errors
    # does the same for the pages (each leaves the other's paths alone).
    app = web.Application(
        client_max_size=daemon.config.web.max_body_bytes,
        middlewares=[json_errors, html_errors, limit_body, require_auth, ui_auth],
    )
    app[DAEMON] = daemon
    setup_auth(app)
    setup_ui(app)  # after setup_auth: the session resolver joins its list
    # The status listener runs from app startup to cleanup, so it starts and stops
    # with the web component's runner (and with a test client) without extra wiring.
    setup_events(app, daemon.config.database.url, daemon.config.daemon.connect_timeout)
    health.add_routes(app)
    api_jobs.add_routes(app)
    api_mappings.add_routes(app)
    api_queues.add_routes(app)
    api_search.add_routes(app)
    api_integrations.add_routes(app)
    openapi.add_routes(app)
    webhooks.add_routes(app)
    ws.add_routes(app)
    return app


class WebComponent(Component):
    name = "web"

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        cfg = self.daemon.config.web
        self.runner = web.AppRunner(
            create_app(self.daemon), access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self.runner.setup()
        site = web.TCPSite(self.runner, cfg.host, cfg.port)
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror}") from exc
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else cfg.port
        self.daemon.services["web_port"] = self.port
        log.info("web server listening", url=f"http://{cfg.host}:{self.port}")

    async def stop_taking_work(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
