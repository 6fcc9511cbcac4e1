"""The daemon's parts: a component starts, stops taking work, drains, and closes.

The daemon calls the phases in order on every component (see etld/daemon.py);
subclasses override the ones they need.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable


class Component:
    """A part of the daemon. Subclasses override the phases they need."""

    name = "component"

    async def start(self) -> None:
        """Acquire resources and begin work; raise StartupError on failure."""

    async def stop_taking_work(self) -> None:
        """Phase 1: accept nothing new (cancel consumers, close listeners)."""

    async def drain(self) -> None:
        """Phase 2: return when in-flight work is done; cancelled at the grace deadline."""

    async def close(self) -> None:
        """Phase 3: cancel what is left and release resources."""


class CallbackComponent(Component):
    """A component built from plain callables, for simple resources."""

    def __init__(
        self,
        name: str,
        start: Callable[[], Awaitable[None]] | None = None,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.name = name
        self._start = start
        self._close = close

    async def start(self) -> None:
        if self._start is not None:
            await self._start()

    async def close(self) -> None:
        if self._close is not None:
            await self._close()
