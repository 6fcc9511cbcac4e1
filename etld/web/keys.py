"""Typed application keys shared by the web modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from etld.daemon import Daemon

DAEMON: web.AppKey[Daemon] = web.AppKey("daemon")
