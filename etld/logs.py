"""Logging: structlog configured once, JSON lines (orjson) off a TTY, console on one.

Per-message context (stage, tier, tenant, job, message id) is bound through
contextvars by the consumer runner, so every line a handler logs carries it.
Values under secret-looking keys are masked before rendering.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog

_SECRET_WORDS = ("password", "secret", "token", "authorization", "credential", "api_key")


def _mask_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        lowered = key.lower()
        if any(word in lowered for word in _SECRET_WORDS) and event[key] not in (None, ""):
            event[key] = "***"
    return event


def _is_control(ch: str) -> bool:
    # C0 and C1 controls (0x9b starts an escape sequence on some terminals), DEL, and the
    # Unicode line and paragraph separators some viewers break lines on.
    code = ord(ch)
    return code < 32 or 0x7F <= code <= 0x9F or code in (0x2028, 0x2029)


def _escape_controls(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # On the console a newline or escape sequence inside a value could forge a log line;
    # JSON output is already safe because orjson escapes them. Values that are not strings
    # are rendered with repr(), which escapes them too.
    for key, value in event.items():
        if isinstance(value, str) and any(_is_control(ch) for ch in value):
            event[key] = "".join(
                ch.encode("unicode_escape").decode("ascii") if _is_control(ch) else ch
                for ch in value
            )
    return event


class _Stderr:
    """Resolves sys.stderr at each write, so a replaced stream (tests, daemons) is honoured."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _orjson_dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog and the stdlib root logger (used by libraries) in one place."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    numeric = getattr(logging, level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _mask_secrets,
    ]
    renderer: Any
    if use_json:
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        shared.append(structlog.processors.format_exc_info)
    else:
        shared.append(_escape_controls)
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr, force=True)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
