"""Imports every built-in source, which registers it; the daemon imports this at start."""

from __future__ import annotations

import etld.sources.github
import etld.sources.jira
import etld.sources.rest  # noqa: F401
