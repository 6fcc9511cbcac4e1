"""Where the SQL files live: inside the installed package, or beside it in a checkout."""

from __future__ import annotations

import os
from pathlib import Path


def sql_dir() -> Path:
    """`ETLD_SQL_DIR`, else `etld/sql` of an installed wheel, else the checkout's `sql/`."""
    override = os.environ.get("ETLD_SQL_DIR")
    if override:
        return Path(override)
    package = Path(__file__).resolve().parent.parent
    bundled = package / "sql"
    if bundled.is_dir():
        return bundled
    return package.parent / "sql"
