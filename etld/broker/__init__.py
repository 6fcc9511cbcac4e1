"""RabbitMQ: connection and recovery, topology, confirmed publishing, consuming."""

from __future__ import annotations
