"""PostgreSQL access: the connection pool, named SQL and migrations."""

from __future__ import annotations
