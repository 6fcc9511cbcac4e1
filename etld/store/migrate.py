"""Migrations: numbered, append-only SQL files applied under a blocking advisory lock.

`sql/migrations/NNNN_name.sql` files are applied in order, each in its own
transaction, and recorded in `schema_migrations` with a checksum. Several
processes may migrate at once (two `etld migrate`, or daemons starting
together): the advisory lock makes them take turns, and the later ones find
nothing left to do. A database that knows a migration this code does not is
refused: running old code on a newer schema silently corrupts data.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from etld.errors import MigrationError
from etld.logs import get_logger
from etld.store.paths import sql_dir
from etld.store.pool import connect

log = get_logger(__name__)

# Any fixed 64-bit number works; this one spells "etld.mig" so it is recognisable
# in pg_locks.
MIGRATION_LOCK_KEY = 0x65746C642E6D6967 - (1 << 63)
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


def load_migrations(directory: Path | None = None) -> list[Migration]:
    directory = directory or sql_dir() / "migrations"
    found: list[Migration] = []
    for file in sorted(directory.glob("*.sql")):
        match = _FILE.match(file.name)
        if not match:
            raise MigrationError(f"{file.name}: migration files are named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], file.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version in {directory}")
    return found


@dataclass(frozen=True)
class SchemaState:
    applied: dict[int, tuple[str, str]]  # version -> (name, checksum)
    known: list[Migration]

    @property
    def pending(self) -> list[Migration]:
        return [m for m in self.known if m.version not in self.applied]

    def check(self) -> None:
        """Raise when the database is ahead of this code or an applied file was edited."""
        known = {m.version: m for m in self.known}
        newest_known = max(known, default=0)
        unknown = sorted(v for v in self.applied if v not in known)
        if unknown:
            version = unknown[-1]
            name = self.applied[version][0]
            raise MigrationError(
                f"the database schema is at migration {version:04d}_{name}, newer than this "
                f"etld (it knows up to {newest_known:04d}); upgrade etld before starting it"
            )
        for version, (name, checksum) in self.applied.items():
            if known[version].checksum != checksum:
                raise MigrationError(
                    f"migration {version:04d}_{name} changed after it was applied; "
                    "applied migrations are never edited, add a new one instead"
                )


async def read_state(conn: asyncpg.Connection, known: list[Migration]) -> SchemaState:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    applied: dict[int, tuple[str, str]] = {}
    if exists:
        rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
        applied = {r["version"]: (r["name"], r["checksum"]) for r in rows}
    return SchemaState(applied, known)


async def migrate(url: str, *, timeout: float = 10.0, directory: Path | None = None) -> list[str]:
    """Apply pending migrations; returns the labels applied (empty when up to date)."""
    known = load_migrations(directory)
    conn = await connect(url, timeout)
    try:
        # Session-level lock: held across the per-file transactions, released on close.
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        await conn.execute(_BOOKKEEPING)
        state = await read_state(conn, known)
        state.check()
        applied: list[str] = []
        for migration in state.pending:
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            log.info("migration applied", migration=migration.label)
            applied.append(migration.label)
        return applied
    finally:
        await conn.close()


async def schema_is_current(conn: asyncpg.Connection) -> bool:
    """True when every known migration is applied and none is unknown (for /ready)."""
    state = await read_state(conn, load_migrations())
    try:
        state.check()
    except MigrationError:
        return False
    return not state.pending


async def ensure_database(url: str, *, timeout: float = 10.0) -> bool:
    """Create the database named in `url` if it does not exist; True when created.

    Connects to the server's `postgres` database to do it, so a fresh machine needs
    no manual `createdb`.
    """
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name:
        return False
    admin_url = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))
    conn = await connect(admin_url, timeout)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        quoted = '"' + name.replace('"', '""') + '"'
        try:
            await conn.execute(f"CREATE DATABASE {quoted}")
        except asyncpg.DuplicateDatabaseError:
            return False  # another process created it first
        log.info("database created", database=name)
        return True
    finally:
        await conn.close()
