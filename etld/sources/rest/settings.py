"""The declarative REST source's settings: validated once, with every problem's key path.

An integration with provider "rest" describes its API in `settings`: how to authenticate and
one or more streams, each an endpoint with its pagination, where the records are in an
answer, their primary key, an optional incremental cursor, and either a mapping into
`work_items` or, without one, a raw table of its own. `settings_problems` lists what is
wrong (`streams[0].pagination.type: expected one of page, offset, cursor, link, next_url,
got "pages"`), prefixed by the caller's path, so `etld check-config` and the API report the
same text; `parse_settings` returns the typed form or raises `RestSettingsError`.

This module and `model.py` import nothing else from etld, so the configuration loader can
call them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from etld.sources.rest.model import (
    AUTH_TYPES,
    HEADER_NAME,
    MAPPING_TARGETS,
    MAX_PAGES,
    PAGINATION_TYPES,
    RESET_FORMATS,
    SHARED_KEYS,
    STREAM_NAME,
    Auth,
    Incremental,
    Pagination,
    RateLimit,
    RestSettings,
    Stream,
)

_TOP_KEYS = frozenset({"auth", "headers", "rate_limit", "streams"}) | SHARED_KEYS
_STREAM_KEYS = frozenset(
    {"name", "path", "params", "records", "primary_key", "pagination", "incremental", "mapping"}
)
_PAGINATION_KEYS = {
    "page": {"param", "start", "size_param", "size"},
    "offset": {"param", "size_param", "size"},
    "cursor": {"param", "cursor_field", "size_param", "size"},
    "link": {"size_param", "size"},
    "next_url": {"next_url_field", "size_param", "size"},
}


class RestSettingsError(ValueError):
    """The settings cannot make a REST source; `problems` name each key path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def parse_settings(settings: Mapping[str, Any], path: str = "settings") -> RestSettings:
    """The typed settings, or RestSettingsError listing every problem under `path`."""
    reader = _Reader()
    parsed = reader.settings(settings, path)
    if reader.problems or parsed is None:
        raise RestSettingsError(reader.problems or [f"{path}: expected a table"])
    return parsed


def settings_problems(settings: object, path: str) -> list[str]:
    """Every problem of a REST integration's settings, each prefixed by `path`."""
    reader = _Reader()
    reader.settings(settings, path)
    return reader.problems


# -- dotted paths into JSON ------------------------------------------------------------------


def _show(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)


class _Reader:
    """Walks raw settings, converting what is valid and collecting what is not."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, path: str, expected: str, value: object) -> None:
        self.problems.append(f"{path}: expected {expected}, got {_show(value)}")

    def table(self, value: object, path: str, known: set[str] | frozenset[str]) -> bool:
        if not isinstance(value, dict):
            self.fail(path, "a table", value)
            return False
        for key in value:
            if key not in known:
                self.problems.append(f"{path}.{key}: unknown key")
        return True

    def text(self, raw: Mapping[str, Any], key: str, path: str, default: str | None = None) -> str:
        value = raw.get(key, default)
        if value is None:
            self.problems.append(f"{path}.{key}: required")
            return ""
        if not isinstance(value, str) or (default is None and not value.strip()):
            self.fail(f"{path}.{key}", "non-empty string", value)
            return ""
        return value

    def dotted(self, raw: Mapping[str, Any], key: str, path: str, *, empty_ok: bool = False) -> str:
        value = raw.get(key, "" if empty_ok else None)
        if value is None:
            self.problems.append(f"{path}.{key}: required")
            return ""
        if not isinstance(value, str) or (value and any(not p for p in value.split("."))):
            self.fail(f"{path}.{key}", "dotted path such as data.items", value)
            return ""
        if not value and not empty_ok:
            self.fail(f"{path}.{key}", "dotted path such as data.items", value)
        return str(value)

    def integer(self, raw: Mapping[str, Any], key: str, path: str, minimum: int) -> int | None:
        value = raw.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(f"{path}.{key}", f"integer >= {minimum}", value)
            return None
        return value

    def scalars(self, value: object, path: str) -> tuple[tuple[str, str], ...]:
        if not isinstance(value, dict):
            self.fail(path, "a table of strings, numbers or booleans", value)
            return ()
        out: list[tuple[str, str]] = []
        for key, item in value.items():
            if isinstance(item, bool):
                out.append((key, "true" if item else "false"))
            elif isinstance(item, str | int | float):
                out.append((key, str(item)))
            else:
                self.fail(f"{path}.{key}", "string, number or boolean", item)
        return tuple(out)

    # -- sections -------------------------------------------------------------------------

    def settings(self, raw: object, path: str) -> RestSettings | None:
        if not self.table(raw, path, _TOP_KEYS):
            return None
        assert isinstance(raw, dict)
        auth = self.auth(raw.get("auth", {}), f"{path}.auth")
        headers: tuple[tuple[str, str], ...] = ()
        if "headers" in raw:
            headers = self.scalars(raw["headers"], f"{path}.headers")
            for name, _ in headers:
                if not HEADER_NAME.match(name) or name.lower() == "authorization":
                    self.problems.append(
                        f"{path}.headers.{name}: not allowed (a header name; secrets go in auth)"
                    )
        rate = self.rate_limit(raw.get("rate_limit", {}), f"{path}.rate_limit")
        streams = self.streams(raw.get("streams"), f"{path}.streams")
        if rate is None or auth is None:
            return None
        return RestSettings(auth, headers, rate, streams)

    def auth(self, raw: object, path: str) -> Auth | None:
        if not self.table(raw, path, {"type", "header", "prefix", "username"}):
            return None
        assert isinstance(raw, dict)
        kind = raw.get("type", "none")
        if kind not in AUTH_TYPES:
            self.fail(f"{path}.type", "one of " + ", ".join(AUTH_TYPES), kind)
            return None
        header = prefix = username = ""
        if kind == "header":
            header = self.text(raw, "header", path)
            if header and not HEADER_NAME.match(header):
                self.fail(f"{path}.header", "an HTTP header name", header)
            prefix = self.text(raw, "prefix", path, default="")
        elif "header" in raw or "prefix" in raw:
            self.problems.append(f'{path}: header and prefix belong to type = "header" only')
        if kind == "basic":
            username = self.text(raw, "username", path, default="")
        elif "username" in raw:
            self.problems.append(f'{path}.username: belongs to type = "basic" only')
        return Auth(kind, header, prefix, username)

    def rate_limit(self, raw: object, path: str) -> RateLimit | None:
        keys = {"remaining_header", "reset_header", "reset", "default_wait"}
        if not self.table(raw, path, keys):
            return None
        assert isinstance(raw, dict)
        base = RateLimit()
        remaining = self.text(raw, "remaining_header", path, default=base.remaining_header)
        reset_header = self.text(raw, "reset_header", path, default=base.reset_header)
        reset = raw.get("reset", base.reset)
        if reset not in RESET_FORMATS:
            self.fail(f"{path}.reset", "one of " + ", ".join(RESET_FORMATS), reset)
            reset = base.reset
        wait = raw.get("default_wait", base.default_wait)
        if isinstance(wait, bool) or not isinstance(wait, int | float) or wait < 0:
            self.fail(f"{path}.default_wait", "number >= 0", wait)
            wait = base.default_wait
        return RateLimit(remaining, reset_header, str(reset), float(wait))

    def streams(self, raw: object, path: str) -> tuple[Stream, ...]:
        if not isinstance(raw, list) or not raw:
            self.fail(path, "a non-empty array of tables ([[...streams]])", raw)
            return ()
        out: list[Stream] = []
        names: set[str] = set()
        mapped: str | None = None
        for index, item in enumerate(raw):
            where = f"{path}[{index}]"
            stream = self.stream(item, where)
            if stream is None:
                continue
            if stream.name in names:
                self.problems.append(f"{where}.name: duplicate stream {_show(stream.name)}")
            names.add(stream.name)
            if stream.mapping is not None:
                if mapped is not None:
                    self.problems.append(
                        f"{where}.mapping: only one stream of an integration may map into "
                        f"work_items (stream {_show(mapped)} does); their external ids would "
                        "collide"
                    )
                mapped = stream.name
            out.append(stream)
        return tuple(out)

    def stream(self, raw: object, path: str) -> Stream | None:
        if not self.table(raw, path, _STREAM_KEYS):
            return None
        assert isinstance(raw, dict)
        before = len(self.problems)
        name = self.text(raw, "name", path)
        if name and not STREAM_NAME.match(name):
            self.fail(f"{path}.name", "lower-case letters, digits and _ (at most 40)", name)
        endpoint = self.text(raw, "path", path)
        if endpoint and endpoint.startswith(("http://", "https://", "//")):
            self.fail(f"{path}.path", "a path below the base URL", endpoint)
        params = self.scalars(raw["params"], f"{path}.params") if "params" in raw else ()
        records = self.dotted(raw, "records", path, empty_ok=True)
        key = self.dotted(raw, "primary_key", path)
        pagination = self.pagination(raw.get("pagination"), f"{path}.pagination")
        incremental = None
        if "incremental" in raw:
            incremental = self.incremental(raw["incremental"], f"{path}.incremental")
        mapping = self.mapping(raw["mapping"], f"{path}.mapping") if "mapping" in raw else None
        if len(self.problems) > before or pagination is None:
            return None
        return Stream(name, endpoint, params, records, key, pagination, incremental, mapping)

    def pagination(self, raw: object, path: str) -> Pagination | None:
        if raw is None:
            return Pagination()
        if not isinstance(raw, dict):
            self.fail(path, "a table", raw)
            return None
        kind = raw.get("type")
        if kind not in PAGINATION_TYPES:
            self.fail(f"{path}.type", "one of " + ", ".join(PAGINATION_TYPES), kind)
            return None
        self.table(raw, path, {"type", "max_pages", *_PAGINATION_KEYS[kind]})
        size = self.integer(raw, "size", path, 1)
        size_param = self.text(raw, "size_param", path, default="")
        if kind == "offset" and size is None:
            self.problems.append(f"{path}.size: required for offset pagination")
        if size_param and size is None:
            self.problems.append(f"{path}.size: required with size_param")
        defaults = {"page": "page", "offset": "offset", "cursor": "cursor"}
        param = self.text(raw, "param", path, default=defaults.get(kind, ""))
        if kind == "offset" and not size_param:
            size_param = "limit"
        cursor_field = self.dotted(raw, "cursor_field", path) if kind == "cursor" else ""
        next_url_field = self.dotted(raw, "next_url_field", path) if kind == "next_url" else ""
        start = self.integer(raw, "start", path, 0)
        max_pages = self.integer(raw, "max_pages", path, 1)
        if max_pages is not None and max_pages > MAX_PAGES:
            self.fail(f"{path}.max_pages", f"integer <= {MAX_PAGES}", max_pages)
        return Pagination(
            type=kind,
            param=param,
            start=1 if start is None else start,
            size_param=size_param,
            size=size,
            cursor_field=cursor_field,
            next_url_field=next_url_field,
            max_pages=min(max_pages or Pagination.max_pages, MAX_PAGES),
        )

    def incremental(self, raw: object, path: str) -> Incremental | None:
        if not self.table(raw, path, {"field", "param", "initial"}):
            return None
        assert isinstance(raw, dict)
        field = self.dotted(raw, "field", path)
        param = self.text(raw, "param", path)
        initial = raw.get("initial")
        if initial is not None and not isinstance(initial, str):
            self.fail(f"{path}.initial", "string", initial)
            initial = None
        return Incremental(field, param, initial) if field and param else None

    def mapping(self, raw: object, path: str) -> tuple[tuple[str, str], ...] | None:
        if not isinstance(raw, dict) or not raw:
            self.fail(path, "a non-empty table of work_items column = dotted path", raw)
            return None
        out: list[tuple[str, str]] = []
        for target, source in raw.items():
            if target not in MAPPING_TARGETS:
                self.problems.append(
                    f"{path}.{target}: not a work_items column a mapping may fill "
                    f"(one of {', '.join(MAPPING_TARGETS)})"
                )
                continue
            value = self.dotted(raw, target, path)
            if value:
                out.append((target, source))
        return tuple(out)
