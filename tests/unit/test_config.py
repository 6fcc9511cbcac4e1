"""Config parsing: defaults, the documented file, env overrides, every problem at once."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from etld.cli import main
from etld.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]

BAD = """
[database]
url = "mysql://nope"
[rabbitmq]
queue_type = "stream"
[workers.premium]
extraction = "four"
transform = -1
[workers.gold]
extraction = 1
[web]
port = "http"
colour = "blue"
[[tenants]]
name = "acme"
tier = "platinum"
[[integrations]]
tenant = "nobody"
name = "jira-main"
provider = "jira"
"""


def test_defaults_are_a_complete_local_setup() -> None:
    config = parse_config({})
    assert config.web.port == 3333
    assert config.pipeline.tiers == ("free", "basic", "premium", "enterprise")
    assert config.workers_for("premium").extraction == 2
    assert config.rabbitmq.max_retries["custom_fields"] == 5
    assert config.qdrant.path == "data/qdrant"


def test_shipped_etld_toml_is_valid_and_matches_defaults() -> None:
    raw = tomllib.loads((ROOT / "etld.toml").read_text())
    config = parse_config(raw)
    defaults = parse_config({})
    assert config.database == defaults.database
    assert config.rabbitmq == defaults.rabbitmq
    assert config.workers == defaults.workers
    assert config.scheduler == defaults.scheduler


def test_every_problem_is_reported_with_its_key_path() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(tomllib.loads(BAD))
    problems = info.value.problems
    expected = [
        'database.url: expected URL with scheme postgresql or postgres, got "mysql://nope"',
        'rabbitmq.queue_type: expected one of classic, quorum, got "stream"',
        'workers.premium.extraction: expected integer >= 0, got "four"',
        "workers.premium.transform: expected integer >= 0, got -1",
        "workers.gold: unknown tier",
        'web.port: expected integer >= 0, got "http"',
        "web.colour: unknown key",
        'tenants[0].tier: expected one of free, basic, premium, enterprise, got "platinum"',
        'integrations[0].tenant: no [[tenants]] entry named "nobody"',
    ]
    for line in expected:
        assert any(p.startswith(line) for p in problems), (line, problems)


def test_env_overrides_file(tmp_path: Path) -> None:
    file = tmp_path / "etld.toml"
    file.write_text('[web]\nport = 4000\n[database]\nurl = "postgresql://a@h/x"\n')
    env = {
        "ETLD_DATABASE_URL": "postgresql://b@db:5432/prod",
        "ETLD_RABBITMQ_URL": "amqp://u:p@mq:5672/",
        "ETLD_SECRET_KEY": "k" * 32,
        "ETLD_INTERNAL_AUTH_KEY": "internal",
        "ETLD_WEB_PORT": "4100",
        "ETLD_SCHEDULER__TICK_INTERVAL": "2.5",
    }
    config = load_config(str(file), env)
    assert config.database.url == "postgresql://b@db:5432/prod"
    assert config.rabbitmq.url == "amqp://u:p@mq:5672/"
    assert config.security.secret_key == "k" * 32
    assert config.security.internal_auth_key == "internal"
    assert config.web.port == 4100
    assert config.scheduler.tick_interval == 2.5


def test_etld_config_env_names_the_file(tmp_path: Path) -> None:
    file = tmp_path / "other.toml"
    file.write_text("[web]\nport = 4242\n")
    assert load_config(None, {"ETLD_CONFIG": str(file)}).web.port == 4242
    with pytest.raises(ConfigError, match="no such file"):
        load_config(None, {"ETLD_CONFIG": str(tmp_path / "missing.toml")})


def test_invalid_toml_is_one_clear_error(tmp_path: Path) -> None:
    file = tmp_path / "broken.toml"
    file.write_text("[web\nport = 1\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(str(file), {})


def test_integration_token_comes_from_env() -> None:
    config = parse_config(
        {
            "tenants": [{"name": "acme", "tier": "premium"}],
            "integrations": [
                {
                    "tenant": "acme",
                    "name": "jira-main",
                    "provider": "jira",
                    "base_url": "https://acme.atlassian.net",
                    "token_env": "ACME_JIRA_TOKEN",
                    "projects": ["PROJ"],
                }
            ],
        }
    )
    integration = config.integrations[0]
    assert integration.token({"ACME_JIRA_TOKEN": "s3cret"}) == "s3cret"
    assert integration.token({}) is None
    assert integration.projects == ("PROJ",)


def test_check_config_exits_2_listing_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "bad.toml"
    file.write_text(BAD)
    assert main(["--config", str(file), "check-config"]) == 2
    err = capsys.readouterr().err
    assert 'workers.premium.extraction: expected integer >= 0, got "four"' in err
    assert "web.colour: unknown key" in err
    assert "9 problem(s) found" in err


def test_check_config_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(ROOT / "etld.toml"), "check-config"]) == 0
    out = capsys.readouterr().out
    assert "configuration OK" in out
    assert "guest:***@" in out  # the broker password is never printed
