"""Queue messages: typed dataclasses for the four formats, and their validation.

Every message that enters a stage queue is checked here before a handler sees
it. A problem produces `InvalidMessage` with a reason that names the field and
what was wrong (`field 'tenant_id' must be an integer, got string`), because
that reason is what an operator reads in the dead-letter list.

The formats follow the reference: job messages on `etl.jobs`; extraction,
transform and embedding messages on the tier queues, each with the
orchestration flags `first_item`, `last_item` and `last_job_item`. Keys a
format does not name are kept in `extra` (extraction messages carry free-form
keys such as `issue_key`), and a few optional keys used by job orchestration
(`run_id`, `step`, `tier`, `work_id`) are typed when present.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, TypeAlias

EMBEDDING_OPERATIONS = ("insert", "update", "delete")


class InvalidMessage(ValueError):
    """The message cannot be handled as it is; `reason` says why, for the dead-letter row."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


# --- field checkers: each returns the value (possibly normalised) or raises ------------------


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _wrong(name: str, expected: str, value: object) -> InvalidMessage:
    return InvalidMessage(f"field '{name}' must be {expected}, got {_type_name(value)}")


def _id(name: str, value: object) -> int:
    # bool is a subclass of int; `true` is never a valid id.
    if type(value) is not int or value < 1:
        raise _wrong(name, "a positive integer", value)
    return value


def _int(name: str, value: object) -> int:
    if type(value) is not int:
        raise _wrong(name, "an integer", value)
    return value


def _bool(name: str, value: object) -> bool:
    if type(value) is not bool:
        raise _wrong(name, "true or false", value)
    return value


def _text(name: str, value: object) -> str:
    if type(value) is not str:
        raise _wrong(name, "a non-empty string", value)
    if not value.strip():
        raise InvalidMessage(f"field '{name}' must be a non-empty string, got an empty one")
    return value


def _timestamp(name: str, value: object) -> str | None:
    if value is None:
        return None
    if type(value) is not str:
        raise _wrong(name, "an ISO-8601 timestamp or null", value)
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise InvalidMessage(
            f"field '{name}' must be an ISO-8601 timestamp, got {value!r}"
        ) from None
    return value


def _object(name: str, value: object) -> dict[str, Any]:
    if type(value) is not dict:
        raise _wrong(name, "an object", value)
    return value


def _optional(check: Any) -> Any:
    def optional(name: str, value: object) -> Any:
        return None if value is None else check(name, value)

    return optional


def _id_or_text(name: str, value: object) -> int | str:
    if type(value) is int:
        return _id(name, value)
    if type(value) is str and value:
        return value
    raise _wrong(name, "a positive integer or a non-empty string", value)


def _external_id(name: str, value: object) -> str:
    # Sources disagree on whether ids are numbers or strings; the pipeline uses strings.
    if type(value) is int:
        return str(value)
    return _text(name, value)


def _operation(name: str, value: object) -> str:
    if value not in EMBEDDING_OPERATIONS:
        shown = repr(value) if isinstance(value, str) else _type_name(value)
        raise InvalidMessage(f"field '{name}' must be one of insert, update, delete, got {shown}")
    return str(value)


# Optional keys any format may carry; job orchestration adds them.
_COMMON_OPTIONAL: dict[str, Any] = {
    "run_id": _optional(_id),
    "step": _optional(_id_or_text),
    "tier": _optional(_text),
    "work_id": _optional(_id_or_text),
}

_FLAGS: dict[str, Any] = {"first_item": _bool, "last_item": _bool, "last_job_item": _bool}


@dataclass(frozen=True, slots=True, kw_only=True)
class _Base:
    """Fields shared by every format. `extra` holds keys the format does not name."""

    KIND: ClassVar[str] = ""
    REQUIRED: ClassVar[dict[str, Any]] = {}
    OPTIONAL: ClassVar[dict[str, Any]] = {}
    DEFAULTS: ClassVar[dict[str, Any]] = {}

    tenant_id: int
    run_id: int | None = None
    step: int | str | None = None
    tier: str | None = None
    work_id: int | str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The message as it travels: named fields (optional ones only when set) plus extras."""
        out: dict[str, Any] = {}
        for item in dataclasses.fields(self):
            if item.name == "extra":
                continue
            value = getattr(self, item.name)
            if value is None and item.name in _COMMON_OPTIONAL:
                continue
            out[item.name] = value
        out.update(self.extra)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class JobMessage(_Base):
    """Run one sync job (`etl.jobs`)."""

    KIND: ClassVar[str] = "job"
    REQUIRED: ClassVar[dict[str, Any]] = {
        "job_id": _id,
        "tenant_id": _id,
        "integration_id": _id,
        "job_type": _text,
    }
    OPTIONAL: ClassVar[dict[str, Any]] = {
        "config": _object,
        "scheduled_at": _timestamp,
        "priority": _int,
        "retry_count": _int,
        "max_retries": _optional(_int),
    }

    job_id: int
    integration_id: int
    job_type: str
    config: Mapping[str, Any] = field(default_factory=dict)
    scheduled_at: str | None = None
    priority: int = 0
    retry_count: int = 0
    max_retries: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtractionMessage(_Base):
    """Fetch one piece of source data (`extraction_queue_{tier}`)."""

    KIND: ClassVar[str] = "extraction"
    REQUIRED: ClassVar[dict[str, Any]] = {
        "tenant_id": _id,
        "integration_id": _id,
        "job_id": _id,
        "type": _text,
        "provider": _text,
        **_FLAGS,
    }
    OPTIONAL: ClassVar[dict[str, Any]] = {"last_sync_date": _timestamp}

    integration_id: int
    job_id: int
    type: str
    provider: str
    first_item: bool
    last_item: bool
    last_job_item: bool
    last_sync_date: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TransformMessage(_Base):
    """Transform one stored raw page (`transform_queue_{tier}`)."""

    KIND: ClassVar[str] = "transform"
    REQUIRED: ClassVar[dict[str, Any]] = {**ExtractionMessage.REQUIRED, "raw_data_id": _id}
    OPTIONAL: ClassVar[dict[str, Any]] = {"last_sync_date": _timestamp}

    integration_id: int
    job_id: int
    type: str
    provider: str
    first_item: bool
    last_item: bool
    last_job_item: bool
    raw_data_id: int
    last_sync_date: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbeddingMessage(_Base):
    """Embed (or drop the vector of) one loaded row (`embedding_queue_{tier}`)."""

    KIND: ClassVar[str] = "embedding"
    REQUIRED: ClassVar[dict[str, Any]] = {
        "tenant_id": _id,
        "table_name": _text,
        "external_id": _external_id,
        "operation": _operation,
        **_FLAGS,
    }
    OPTIONAL: ClassVar[dict[str, Any]] = {"job_id": _optional(_id)}

    table_name: str
    external_id: str
    operation: str
    first_item: bool
    last_item: bool
    last_job_item: bool
    job_id: int | None = None


Message: TypeAlias = JobMessage | ExtractionMessage | TransformMessage | EmbeddingMessage

MESSAGE_CLASSES: dict[str, type[Message]] = {
    cls.KIND: cls for cls in (JobMessage, ExtractionMessage, TransformMessage, EmbeddingMessage)
}

# The message kind each stage's queue carries.
STAGE_KINDS = {
    "jobs": "job",
    "extraction": "extraction",
    "transform": "transform",
    "embedding": "embedding",
}


def parse_message(kind: str, data: object) -> Message:
    """Validate decoded JSON as a message of `kind`; raise InvalidMessage naming the problem."""
    cls = MESSAGE_CLASSES.get(kind)
    if cls is None:
        raise InvalidMessage(f"unknown message type {kind!r}")
    if type(data) is not dict:
        raise InvalidMessage(f"message body must be a JSON object, got {_type_name(data)}")
    missing = [name for name in cls.REQUIRED if name not in data]
    if missing:
        names = ", ".join(f"'{name}'" for name in missing)
        noun = "field" if len(missing) == 1 else "fields"
        raise InvalidMessage(f"{kind} message is missing {noun} {names}")
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for name, value in data.items():
        check = cls.REQUIRED.get(name) or cls.OPTIONAL.get(name) or _COMMON_OPTIONAL.get(name)
        if check is None:
            extra[name] = value
        else:
            values[name] = check(name, value)
    if extra:
        values["extra"] = extra
    return cls(**values)
