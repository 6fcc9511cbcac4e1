"""A source from another package, found through the `etld.sources` entry point group: the
example package in examples/etld-source-example runs through the real pipeline to FINISHED.

When the package is not installed, the test makes it importable for this process and
declares its entry point the way an installed package would: a `*.dist-info` directory with
`entry_points.txt`, on sys.path. No build or network is needed.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from etld.config import Config
from etld.daemon import Daemon
from etld.sources import base
from etld.sync import SyncRequest, run_sync

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "etld-source-example"


def make_importable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        importlib.metadata.distribution("etld-source-example")
        return  # installed (pip install -e examples/etld-source-example)
    except importlib.metadata.PackageNotFoundError:
        pass
    info = tmp_path / "etld_source_example-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: etld-source-example\nVersion: 0.1.0\n"
    )
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    declared = project["entry-points"]["etld.sources"]
    lines = "".join(f"{name} = {target}\n" for name, target in declared.items())
    (info / "entry_points.txt").write_text(f"[etld.sources]\n{lines}")
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()


async def test_entry_point_source_runs_through_the_pipeline(
    make_config: Callable[..., Config], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_importable(tmp_path, monkeypatch)
    # A registry of this test's own, read from the entry points afresh.
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    monkeypatch.setattr(base, "_ENTRY_POINTS_LOADED", False)
    names = [e.name for e in importlib.metadata.entry_points(group="etld.sources")]
    assert "example" in names
    assert "example" in base.known_providers()

    config = make_config(
        workers={"free": {"extraction": 1, "transform": 1, "embedding": 0}},
        pipeline={"job_workers": 1},
        scheduler={"enabled": False},
        tenants=[{"name": "acme", "tier": "free"}],
        integrations=[
            {
                "tenant": "acme",
                "name": "hello",
                "provider": "example",
                "settings": {"greetings": ["hello", "hej", "hola"]},
            }
        ],
    )
    daemon = Daemon(config, frozenset({"workers"}))
    await daemon.start()
    try:
        report = await run_sync(
            config, SyncRequest("acme", "hello", timeout=30), say=lambda _: None, daemon=daemon
        )
    finally:
        await daemon.shutdown()
    assert report.outcome == "FINISHED", report.error
    assert [s["name"] for s in report.steps] == ["example_greetings"]
    assert report.records == {"extraction": 1, "transform": 3, "embedding": 0}
    assert report.api_calls == 1
