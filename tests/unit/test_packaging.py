"""Deployment files: the compose file parses and every image runs the same `etld run`."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_parses_with_the_stack() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "rabbitmq", "qdrant", "etld"}
    assert "management" in services["rabbitmq"]["image"]
    assert services["etld"]["command"] == ["run"]
    env = services["etld"]["environment"]
    assert env["ETLD_QDRANT_URL"].startswith("http://qdrant:")


def test_dockerfile_is_multistage_nonroot_and_runs_etld() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) >= 2
    assert re.search(r"^USER etld$", text, re.MULTILINE)
    assert 'ENTRYPOINT ["etld"]' in text
    assert 'CMD ["run"]' in text
    assert "COPY sql" in text


def test_systemd_unit_runs_etld() -> None:
    text = (ROOT / "deploy" / "etld.service").read_text()
    assert "ExecStart=/usr/local/bin/etld run" in text
    assert "KillSignal=SIGTERM" in text


def test_wheel_bundles_sql_and_console_script() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["etld"] == "etld.cli:main"
    wheel = project["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert wheel["force-include"]["sql"] == "etld/sql"
