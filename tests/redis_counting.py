"""A redis-py connection that counts its round trips (the ``counting_client`` fixture, tests/conftest.py)."""

from __future__ import annotations

import redis


class CountingConnection(redis.Connection):
    """Counts writes to the socket: one per command, one per pipeline (all its commands at once)."""

    writes = 0

    def send_packed_command(self, command: object, check_health: bool = True) -> None:
        CountingConnection.writes += 1
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]
