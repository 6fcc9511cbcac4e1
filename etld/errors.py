"""Exceptions shared across etld, and URL redaction for messages that name a host."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


class EtldError(Exception):
    """Base class: an error etld explains to its user in one line."""


class StartupError(EtldError):
    """A dependency could not be reached or prepared at start; the daemon exits 1."""


class MigrationError(EtldError):
    """The database schema cannot be brought to the version this code expects."""


def redact_url(url: str) -> str:
    """The URL with any password replaced by `***`, safe to print and log."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def url_host(url: str) -> str:
    """`host:port` of a URL, for one-line error messages."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<unparseable URL>"
    host = parts.hostname or "localhost"
    return f"{host}:{port}" if port else host
