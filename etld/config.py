"""Configuration: `etld.toml` parsed with tomllib into frozen dataclasses.

Every problem in a file is collected and reported at once with its key path
(`workers.premium.extraction: expected integer >= 0, got "four"`), so a user
fixes a broken file in one pass instead of one error per restart.

Environment variables override the file: the named ones below, and the generic
form `ETLD_<SECTION>__<KEY>` (value parsed as a TOML value when it parses, else
taken as a string), e.g. `ETLD_WEB__PORT=8080`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_CONFIG_PATH = "etld.toml"
DEFAULT_TIERS = ("free", "basic", "premium", "enterprise")
STAGES = ("extraction", "transform", "embedding")
PROVIDERS_BUILTIN = ("jira", "github", "rest")
FLOW_CATEGORIES = ("backlog", "todo", "in_progress", "review", "done")

# Named overrides, documented in the README; they win over the generic form.
ENV_ALIASES: dict[str, tuple[str, str]] = {
    "ETLD_DATABASE_URL": ("database", "url"),
    "ETLD_RABBITMQ_URL": ("rabbitmq", "url"),
    "ETLD_SECRET_KEY": ("security", "secret_key"),
    "ETLD_INTERNAL_AUTH_KEY": ("security", "internal_auth_key"),
    "ETLD_QDRANT_URL": ("qdrant", "url"),
    "ETLD_WEB_HOST": ("web", "host"),
    "ETLD_WEB_PORT": ("web", "port"),
    "ETLD_LOG_LEVEL": ("logging", "level"),
}


class ConfigError(Exception):
    """Raised with every problem found, each prefixed by its key path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = "postgresql://postgres@127.0.0.1:5432/etld"
    min_connections: int = 2
    max_connections: int = 10
    connect_timeout: float = 10.0
    command_timeout: float = 60.0


@dataclass(frozen=True)
class RabbitMQConfig:
    url: str = "amqp://guest:guest@127.0.0.1:5672/"
    heartbeat: int = 30
    prefetch: int = 10
    queue_type: str = "classic"
    confirm_timeout: float = 10.0
    connect_timeout: float = 10.0
    management_url: str = ""
    max_message_bytes: int = 1_048_576
    retry_delays: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0, 600.0)
    retry_jitter: float = 0.2
    max_retries: Mapping[str, int] = field(
        default_factory=lambda: {
            "jobs": 3,
            "extraction": 3,
            "transform": 3,
            "embedding": 3,
            "custom_fields": 5,
        }
    )


@dataclass(frozen=True)
class StageWorkers:
    extraction: int = 1
    transform: int = 1
    embedding: int = 1

    def for_stage(self, stage: str) -> int:
        return int(getattr(self, stage))


@dataclass(frozen=True)
class PipelineConfig:
    tiers: tuple[str, ...] = DEFAULT_TIERS
    job_workers: int = 2
    extraction_page_size: int = 100


@dataclass(frozen=True)
class SchedulerConfig:
    enabled: bool = True
    tick_interval: float = 5.0
    fast_retry_interval: float = 900.0
    full_cycle_interval: float = 3600.0
    stuck_after: float = 1800.0
    watchdog_action: str = "requeue"


@dataclass(frozen=True)
class WebConfig:
    host: str = "127.0.0.1"
    port: int = 3333
    public_url: str = ""
    session_max_age: int = 43200
    max_body_bytes: int = 1_048_576
    allowed_origins: tuple[str, ...] = ()


@dataclass(frozen=True)
class QdrantConfig:
    path: str = "data/qdrant"
    url: str = ""
    api_key_env: str = ""
    collection_prefix: str = "etld"


@dataclass(frozen=True)
class EmbeddingsConfig:
    enabled: bool = True
    model: str = "all-MiniLM-L6-v2"
    variant: str = "fp32"
    batch_size: int = 16
    max_length: int = 256
    cache_dir: str = "data/models"
    threads: int = 0


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"
    format: str = "auto"


@dataclass(frozen=True)
class DaemonConfig:
    grace_period: float = 30.0
    connect_timeout: float = 10.0


@dataclass(frozen=True)
class SecurityConfig:
    secret_key: str = ""
    internal_auth_key: str = ""


@dataclass(frozen=True)
class NotificationsConfig:
    webhook_url: str = ""
    timeout: float = 10.0
    max_attempts: int = 5


@dataclass(frozen=True)
class TenantConfig:
    name: str
    tier: str = "free"
    active: bool = True


@dataclass(frozen=True)
class IntegrationConfig:
    tenant: str
    name: str
    provider: str
    base_url: str = ""
    username: str = ""
    token_env: str = ""
    projects: tuple[str, ...] = ()
    repositories: tuple[str, ...] = ()
    organization: str = ""
    allow_private_network: bool = False
    active: bool = True
    settings: Mapping[str, Any] = field(default_factory=dict)

    def token(self, env: Mapping[str, str] | None = None) -> str | None:
        """The secret, read from the named environment variable at use time."""
        if not self.token_env:
            return None
        return (os.environ if env is None else env).get(self.token_env)


@dataclass(frozen=True)
class Config:
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    rabbitmq: RabbitMQConfig = field(default_factory=RabbitMQConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    workers: Mapping[str, StageWorkers] = field(default_factory=dict)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    web: WebConfig = field(default_factory=WebConfig)
    qdrant: QdrantConfig = field(default_factory=QdrantConfig)
    embeddings: EmbeddingsConfig = field(default_factory=EmbeddingsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    notifications: NotificationsConfig = field(default_factory=NotificationsConfig)
    tenants: tuple[TenantConfig, ...] = ()
    integrations: tuple[IntegrationConfig, ...] = ()
    source_path: str | None = None

    def workers_for(self, tier: str) -> StageWorkers:
        return self.workers.get(tier, StageWorkers())


# --- value checkers: each returns the converted value or records a problem ---------------

_MISSING = object()


class _Checker:
    """Collects problems while converting raw TOML values into typed ones."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, path: str, expected: str, value: object) -> None:
        self.problems.append(f"{path}: expected {expected}, got {_show(value)}")

    def section(self, raw: Mapping[str, Any], path: str, known: set[str]) -> None:
        for key in raw:
            if key not in known:
                self.problems.append(f"{_join(path, key)}: unknown key")

    def integer(self, path: str, value: object, minimum: int | None = None) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, _int_expectation(minimum), value)
            return None
        if minimum is not None and value < minimum:
            self.fail(path, _int_expectation(minimum), value)
            return None
        return value

    def number(self, path: str, value: object, minimum: float = 0.0) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            self.fail(path, f"number >= {minimum:g}", value)
            return None
        return float(value)

    def boolean(self, path: str, value: object) -> bool | None:
        if not isinstance(value, bool):
            self.fail(path, "true or false", value)
            return None
        return value

    def string(
        self,
        path: str,
        value: object,
        choices: tuple[str, ...] | None = None,
        non_empty: bool = False,
    ) -> str | None:
        if not isinstance(value, str):
            self.fail(path, "string", value)
            return None
        if choices is not None and value not in choices:
            self.fail(path, "one of " + ", ".join(choices), value)
            return None
        if non_empty and not value.strip():
            self.fail(path, "non-empty string", value)
            return None
        return value

    def strings(self, path: str, value: object) -> tuple[str, ...] | None:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(path, "list of strings", value)
            return None
        return tuple(value)

    def numbers(self, path: str, value: object) -> tuple[float, ...] | None:
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            or any(v <= 0 for v in value)
        ):
            self.fail(path, "non-empty list of numbers > 0", value)
            return None
        return tuple(float(v) for v in value)


def _show(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    return repr(value)


def _int_expectation(minimum: int | None) -> str:
    return "integer" if minimum is None else f"integer >= {minimum}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# Field specs per simple section: key -> (kind, extra). Kinds map onto _Checker methods.
_Spec = dict[str, tuple[str, Any]]

_SECTION_SPECS: dict[str, tuple[type, _Spec]] = {
    "database": (
        DatabaseConfig,
        {
            "url": ("url", ("postgresql", "postgres")),
            "min_connections": ("int", 1),
            "max_connections": ("int", 1),
            "connect_timeout": ("number", 0.1),
            "command_timeout": ("number", 0.1),
        },
    ),
    "rabbitmq": (
        RabbitMQConfig,
        {
            "url": ("url", ("amqp", "amqps")),
            "heartbeat": ("int", 0),
            "prefetch": ("int", 1),
            "queue_type": ("choice", ("classic", "quorum")),
            "confirm_timeout": ("number", 0.1),
            "connect_timeout": ("number", 0.1),
            "management_url": ("str", None),
            "max_message_bytes": ("int", 1024),
            "retry_delays": ("numbers", None),
            "retry_jitter": ("number", 0.0),
            "max_retries": ("int_map", 0),
        },
    ),
    "pipeline": (
        PipelineConfig,
        {"tiers": ("strings", None), "job_workers": ("int", 0), "extraction_page_size": ("int", 1)},
    ),
    "scheduler": (
        SchedulerConfig,
        {
            "enabled": ("bool", None),
            "tick_interval": ("number", 0.05),
            "fast_retry_interval": ("number", 0.0),
            "full_cycle_interval": ("number", 0.0),
            "stuck_after": ("number", 1.0),
            "watchdog_action": ("choice", ("requeue", "fail")),
        },
    ),
    "web": (
        WebConfig,
        {
            "host": ("str", None),
            "port": ("int", 0),
            "public_url": ("str", None),
            "session_max_age": ("int", 60),
            "max_body_bytes": ("int", 1024),
            "allowed_origins": ("strings", None),
        },
    ),
    "qdrant": (
        QdrantConfig,
        {
            "path": ("str", None),
            "url": ("str", None),
            "api_key_env": ("str", None),
            "collection_prefix": ("str", None),
        },
    ),
    "embeddings": (
        EmbeddingsConfig,
        {
            "enabled": ("bool", None),
            "model": ("str", None),
            "variant": ("choice", ("fp32", "int8")),
            "batch_size": ("int", 1),
            "max_length": ("int", 8),
            "cache_dir": ("str", None),
            "threads": ("int", 0),
        },
    ),
    "logging": (
        LoggingConfig,
        {
            "level": ("choice", ("debug", "info", "warning", "error")),
            "format": ("choice", ("auto", "json", "console")),
        },
    ),
    "daemon": (
        DaemonConfig,
        {"grace_period": ("number", 0.0), "connect_timeout": ("number", 0.1)},
    ),
    "security": (SecurityConfig, {"secret_key": ("str", None), "internal_auth_key": ("str", None)}),
    "notifications": (
        NotificationsConfig,
        {"webhook_url": ("str", None), "timeout": ("number", 0.1), "max_attempts": ("int", 1)},
    ),
}


def _convert(check: _Checker, path: str, kind: str, extra: Any, value: object) -> Any:
    if kind == "int":
        return check.integer(path, value, extra)
    if kind == "number":
        return check.number(path, value, extra)
    if kind == "bool":
        return check.boolean(path, value)
    if kind == "str":
        return check.string(path, value)
    if kind == "choice":
        return check.string(path, value, choices=extra)
    if kind == "strings":
        return check.strings(path, value)
    if kind == "numbers":
        return check.numbers(path, value)
    if kind == "url":
        text = check.string(path, value, non_empty=True)
        if text is not None and text.split("://", 1)[0] not in extra:
            check.fail(path, "URL with scheme " + " or ".join(extra), value)
            return None
        return text
    if kind == "int_map":
        if not isinstance(value, dict):
            check.fail(path, "table of integers", value)
            return None
        out = {}
        for key, item in value.items():
            number = check.integer(_join(path, key), item, extra)
            if number is not None:
                out[key] = number
        return out
    raise AssertionError(f"unknown spec kind {kind}")


def _simple_section(check: _Checker, name: str, raw: object) -> Any:
    cls, spec = _SECTION_SPECS[name]
    if not isinstance(raw, dict):
        check.fail(name, "a table", raw)
        return cls()
    check.section(raw, name, set(spec))
    values: dict[str, Any] = {}
    for key, (kind, extra) in spec.items():
        if key in raw:
            converted = _convert(check, _join(name, key), kind, extra, raw[key])
            if converted is not None:
                values[key] = converted
    if name == "rabbitmq" and "max_retries" in values:
        # Partial tables keep the defaults for the stages they do not name.
        values["max_retries"] = {**RabbitMQConfig().max_retries, **values["max_retries"]}
    return cls(**values)


def _workers(check: _Checker, raw: object, tiers: tuple[str, ...]) -> dict[str, StageWorkers]:
    defaults = {
        "free": StageWorkers(1, 1, 1),
        "basic": StageWorkers(1, 1, 1),
        "premium": StageWorkers(2, 2, 1),
        "enterprise": StageWorkers(2, 2, 1),
    }
    out = {tier: defaults.get(tier, StageWorkers()) for tier in tiers}
    if raw is None:
        return out
    if not isinstance(raw, dict):
        check.fail("workers", "a table of tiers", raw)
        return out
    for tier, stages in raw.items():
        path = f"workers.{tier}"
        if tier not in tiers:
            check.problems.append(f"{path}: unknown tier (pipeline.tiers is {list(tiers)})")
            continue
        if not isinstance(stages, dict):
            check.fail(path, "a table", stages)
            continue
        check.section(stages, path, set(STAGES))
        counts = {}
        for stage in STAGES:
            if stage in stages:
                number = check.integer(f"{path}.{stage}", stages[stage], 0)
                if number is not None:
                    counts[stage] = number
        base = out[tier]
        out[tier] = StageWorkers(
            counts.get("extraction", base.extraction),
            counts.get("transform", base.transform),
            counts.get("embedding", base.embedding),
        )
    return out


def _tenants(check: _Checker, raw: object, tiers: tuple[str, ...]) -> tuple[TenantConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        check.fail("tenants", "an array of tables ([[tenants]])", raw)
        return ()
    out: list[TenantConfig] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        path = f"tenants[{index}]"
        if not isinstance(item, dict):
            check.fail(path, "a table", item)
            continue
        check.section(item, path, {"name", "tier", "active"})
        name = check.string(f"{path}.name", item.get("name", _MISSING), non_empty=True)
        tier = check.string(f"{path}.tier", item.get("tier", "free"), choices=tiers)
        active = check.boolean(f"{path}.active", item.get("active", True))
        if name is not None and name in seen:
            check.problems.append(f"{path}.name: duplicate tenant {_show(name)}")
        if name is not None and tier is not None and active is not None:
            seen.add(name)
            out.append(TenantConfig(name=name, tier=tier, active=active))
    return tuple(out)


_INTEGRATION_KEYS = {
    "tenant",
    "name",
    "provider",
    "base_url",
    "username",
    "token_env",
    "projects",
    "repositories",
    "organization",
    "allow_private_network",
    "active",
    "settings",
}


def _integrations(
    check: _Checker, raw: object, tenants: tuple[TenantConfig, ...]
) -> tuple[IntegrationConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        check.fail("integrations", "an array of tables ([[integrations]])", raw)
        return ()
    tenant_names = {t.name for t in tenants}
    out: list[IntegrationConfig] = []
    seen: set[tuple[str, str]] = set()
    for index, item in enumerate(raw):
        path = f"integrations[{index}]"
        if not isinstance(item, dict):
            check.fail(path, "a table", item)
            continue
        # Plug-in providers are allowed, so `provider` is any non-empty name here; the
        # daemon reports an unknown provider when it cannot load one.
        check.section(item, path, _INTEGRATION_KEYS)
        values: dict[str, Any] = {}
        for key in ("tenant", "name", "provider"):
            values[key] = check.string(f"{path}.{key}", item.get(key, _MISSING), non_empty=True)
        for key in ("base_url", "username", "token_env", "organization"):
            if key in item:
                values[key] = check.string(f"{path}.{key}", item[key])
        for key in ("projects", "repositories"):
            if key in item:
                values[key] = check.strings(f"{path}.{key}", item[key])
        for key in ("allow_private_network", "active"):
            if key in item:
                values[key] = check.boolean(f"{path}.{key}", item[key])
        if "settings" in item:
            if isinstance(item["settings"], dict):
                values["settings"] = item["settings"]
            else:
                check.fail(f"{path}.settings", "a table", item["settings"])
        if values["provider"] == "rest" and isinstance(item.get("settings", {}), dict):
            check.problems.extend(_rest_problems(item.get("settings", {}), f"{path}.settings"))
        tenant = values["tenant"]
        if tenant is not None and tenant not in tenant_names:
            check.problems.append(f"{path}.tenant: no [[tenants]] entry named {_show(tenant)}")
        base_url = values.get("base_url")
        if base_url and not base_url.startswith(("https://", "http://")):
            check.fail(f"{path}.base_url", "http(s) URL", base_url)
        if None in values.values():
            continue
        key_pair = (tenant, values["name"])
        if key_pair in seen:
            check.problems.append(f"{path}.name: duplicate integration {_show(values['name'])}")
            continue
        seen.add(key_pair)
        out.append(IntegrationConfig(**values))
    return tuple(out)


def _rest_problems(settings: object, path: str) -> list[str]:
    # Imported here: the sources import this module.
    from etld.sources.rest.settings import settings_problems

    return settings_problems(settings, path)


def parse_config(raw: Mapping[str, Any], source_path: str | None = None) -> Config:
    """Convert a parsed TOML document into a Config, or raise ConfigError with every problem."""
    check = _Checker()
    known = set(_SECTION_SPECS) | {"workers", "tenants", "integrations"}
    check.section(raw, "", known)
    sections: dict[str, Any] = {}
    for name in _SECTION_SPECS:
        if name in raw:
            sections[name] = _simple_section(check, name, raw[name])
    pipeline: PipelineConfig = sections.get("pipeline", PipelineConfig())
    tiers = pipeline.tiers
    if not tiers:
        check.problems.append("pipeline.tiers: expected at least one tier, got []")
        tiers = DEFAULT_TIERS
    if len(set(tiers)) != len(tiers):
        check.problems.append(f"pipeline.tiers: duplicate tier in {list(tiers)}")
    for tier in tiers:
        if not tier.replace("_", "").isalnum():
            check.problems.append(
                f"pipeline.tiers: tier names are letters, digits and _, got {tier!r}"
            )
    workers = _workers(check, raw.get("workers"), tiers)
    tenants = _tenants(check, raw.get("tenants"), tiers)
    integrations = _integrations(check, raw.get("integrations"), tenants)
    database: DatabaseConfig = sections.get("database", DatabaseConfig())
    if database.min_connections > database.max_connections:
        check.problems.append("database.min_connections: must not exceed database.max_connections")
    if check.problems:
        raise ConfigError(check.problems)
    return Config(
        **sections,
        workers=workers,
        tenants=tenants,
        integrations=integrations,
        source_path=source_path,
    )


def _env_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Overlay ETLD_* variables onto a raw TOML document (a new dict is returned)."""
    merged = {key: dict(value) if isinstance(value, dict) else value for key, value in raw.items()}

    def put(section: str, key: str, value: Any) -> None:
        table = merged.setdefault(section, {})
        if isinstance(table, dict):
            table[key] = value

    for name, value in sorted(env.items()):
        if name.startswith("ETLD_") and "__" in name:
            section, _, key = name[5:].lower().partition("__")
            if section in _SECTION_SPECS and key:
                put(section, key, _env_value(value))
    for name, (section, key) in ENV_ALIASES.items():
        if name in env:
            kind = _SECTION_SPECS[section][1][key][0]
            put(section, key, _env_value(env[name]) if kind == "int" else env[name])
    return merged


def load_config(path: str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read the config file (ETLD_CONFIG or etld.toml when no path is given) plus overrides.

    A missing file is only an error when a path was asked for explicitly: the defaults
    are a complete local setup.
    """
    env = os.environ if env is None else env
    explicit = path is not None or "ETLD_CONFIG" in env
    chosen = path or env.get("ETLD_CONFIG") or DEFAULT_CONFIG_PATH
    raw: dict[str, Any] = {}
    file = Path(chosen)
    if file.exists():
        try:
            raw = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{chosen}: invalid TOML: {exc}"]) from exc
        except OSError as exc:
            raise ConfigError([f"{chosen}: cannot read: {exc.strerror}"]) from exc
    elif explicit:
        raise ConfigError([f"{chosen}: no such file"])
    return parse_config(apply_env(raw, env), source_path=str(file) if file.exists() else None)
