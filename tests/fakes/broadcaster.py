"""A Broadcaster that records what would be posted, with connections that are gone or failing.

Used where a test looks at the service's decisions; the real ApiGatewayBroadcaster is tested against
the local gateway's management API (real HTTP, real 410s) in tests/integration.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

from chalicelib.ports import DeliveryStatus


class RecordingBroadcaster:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.raw: list[tuple[str, bytes]] = []  # the bytes exactly as posted (frame sizes)
        self.gone: set[str] = set()
        self.failing: set[str] = set()
        self.closed: list[str] = []  # connections closed through the management API, in order
        self._lock = threading.Lock()

    def send(self, connection_id: str, message: bytes) -> DeliveryStatus:
        if connection_id in self.gone:
            return DeliveryStatus.GONE
        if connection_id in self.failing:
            return DeliveryStatus.FAILED
        with self._lock:
            self.sent.append((connection_id, json.loads(message)))
            self.raw.append((connection_id, message))
        return DeliveryStatus.SENT

    def send_many(self, deliveries: Sequence[tuple[str, bytes]]) -> list[DeliveryStatus]:
        return [self.send(connection_id, message) for connection_id, message in deliveries]

    def close(self, connection_id: str) -> DeliveryStatus:
        if connection_id in self.gone:
            return DeliveryStatus.GONE
        if connection_id in self.failing:
            return DeliveryStatus.FAILED
        with self._lock:
            self.closed.append(connection_id)
        # A closed connection is gone for later posts, as API Gateway answers them with 410.
        self.gone.add(connection_id)
        return DeliveryStatus.SENT

    def messages_to(self, connection_id: str) -> list[dict[str, Any]]:
        return [message for target, message in self.sent if target == connection_id]

    def clear(self) -> None:
        self.sent.clear()
        self.raw.clear()
