"""tests/unit stays fast and infrastructure-free: a unit test that opens a network connection, or asks
for the suite's Redis, fails here (such a test belongs in tests/contract, tests/app or tests/infra)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

_INFRASTRUCTURE_FIXTURES = {"redis_url", "redis_client", "dynamodb", "recorder"}


@pytest.fixture(autouse=True)
def _no_infrastructure(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    used = _INFRASTRUCTURE_FIXTURES.intersection(request.fixturenames)
    if used:
        pytest.fail(f"unit tests use no infrastructure; {request.node.name} asks for {sorted(used)}")

    def refuse(self: socket.socket, address: Any) -> None:
        raise AssertionError(f"a unit test opened a network connection to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
