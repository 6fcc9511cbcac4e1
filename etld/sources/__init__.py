"""Data sources: plug-ins with ordered steps that extract pages and transform them."""

from __future__ import annotations
