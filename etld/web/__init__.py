"""The admin web UI, JSON API and WebSocket feed, served inside the daemon's loop."""

from __future__ import annotations
