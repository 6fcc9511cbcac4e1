"""Job orchestration: runs, their work ledger, status JSON and control actions."""

from __future__ import annotations
