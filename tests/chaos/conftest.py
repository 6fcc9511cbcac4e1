"""Every test under tests/chaos is a chaos scenario (marker `chaos`).

`make test` runs the short versions; `make chaos` sets ETLD_CHAOS_FULL=1 for the full
repetition counts (see tests/chaos/harness.py).
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/chaos/" in item.nodeid:
            item.add_marker(pytest.mark.chaos)
