"""The asyncpg pool: orjson codecs for json/jsonb, and a one-line error when unreachable."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import orjson

from etld.errors import StartupError, redact_url, url_host

_JSONB_VERSION = b"\x01"  # the only binary jsonb format PostgreSQL has


def _encode_jsonb(value: Any) -> bytes:
    return _JSONB_VERSION + orjson.dumps(value)


def _decode_jsonb(data: bytes) -> Any:
    if data[:1] != _JSONB_VERSION:
        raise ValueError(f"unsupported jsonb wire format version {data[:1]!r}")
    return orjson.loads(memoryview(data)[1:])


async def _init_connection(conn: asyncpg.Connection) -> None:
    # Binary format: json travels as its UTF-8 text and jsonb as a version byte before it,
    # so orjson's bytes go out and come in without a detour through str. orjson is several
    # times faster than the stdlib json codec.
    await conn.set_type_codec(
        "json",
        encoder=orjson.dumps,
        decoder=orjson.loads,
        schema="pg_catalog",
        format="binary",
    )
    await conn.set_type_codec(
        "jsonb",
        encoder=_encode_jsonb,
        decoder=_decode_jsonb,
        schema="pg_catalog",
        format="binary",
    )


async def connect(url: str, timeout: float) -> asyncpg.Connection:
    """A single connection with the same codecs as the pool (listeners, migrations)."""
    try:
        conn = await asyncio.wait_for(asyncpg.connect(url, timeout=timeout), timeout)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise StartupError(describe_pg_failure(url, exc)) from exc
    await _init_connection(conn)
    return conn


async def create_pool(
    url: str, *, min_size: int, max_size: int, timeout: float, command_timeout: float
) -> asyncpg.Pool:
    try:
        pool = await asyncio.wait_for(
            asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                timeout=timeout,
                command_timeout=command_timeout,
                init=_init_connection,
            ),
            timeout,
        )
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise StartupError(describe_pg_failure(url, exc)) from exc
    assert pool is not None
    return pool


def describe_pg_failure(url: str, exc: BaseException) -> str:
    reason = "timed out" if isinstance(exc, TimeoutError) else (str(exc) or type(exc).__name__)
    return f"cannot reach PostgreSQL at {url_host(url)} ({redact_url(url)}): {reason}"


def record_to_dict(record: Any) -> dict[str, Any]:
    return dict(record.items())
