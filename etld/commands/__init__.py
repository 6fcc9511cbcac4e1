"""CLI subcommands: each module exposes `register(subparsers)`."""

from __future__ import annotations
