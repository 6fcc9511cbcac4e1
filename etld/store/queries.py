"""Named SQL: `sql/queries/<area>.sql` files of `-- name: x` blocks, loaded once.

Python code asks for `SQL["area.x"]`; no SQL strings live in Python apart from
migration bookkeeping. A missing name fails loudly at first use.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path

from etld.store.paths import sql_dir

_NAME = re.compile(r"^--\s*name:\s*([a-z0-9_]+)\s*$", re.MULTILINE)


def parse_query_file(text: str, area: str) -> dict[str, str]:
    """Split one file into `{area.name: sql}`; text before the first name is a header."""
    out: dict[str, str] = {}
    parts = _NAME.split(text)
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        key = f"{area}.{name}"
        if key in out:
            raise ValueError(f"duplicate query name {key}")
        out[key] = body.strip().rstrip(";")
    return out


class QueryBook(Mapping[str, str]):
    """All named queries of a directory."""

    def __init__(self, directory: Path) -> None:
        self._queries: dict[str, str] = {}
        for file in sorted(directory.glob("*.sql")):
            self._queries.update(parse_query_file(file.read_text(encoding="utf-8"), file.stem))

    def __getitem__(self, key: str) -> str:
        try:
            return self._queries[key]
        except KeyError:
            raise KeyError(f"no SQL query named {key!r} in sql/queries") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._queries)

    def __len__(self) -> int:
        return len(self._queries)


@cache
def _book() -> QueryBook:
    return QueryBook(sql_dir() / "queries")


class _LazyBook(Mapping[str, str]):
    """Loads the files on first use, so importing a module costs no disk reads."""

    def __getitem__(self, key: str) -> str:
        return _book()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(_book())

    def __len__(self) -> int:
        return len(_book())


SQL: Mapping[str, str] = _LazyBook()
