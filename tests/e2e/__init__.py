"""End-to-end tests: the daemon's real pipeline (PostgreSQL, RabbitMQ, workers) against the
API simulators served on 127.0.0.1."""

from __future__ import annotations
