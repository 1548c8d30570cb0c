"""A ShardDispatcher that runs each shard's worker in-process, at once (app tests without a Lambda pool).

It runs through the same contract tests as LambdaShardDispatcher (tests/contract/test_shard_dispatcher.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from chalicelib.ports import DispatchReport, ShardTask


class InlineShardDispatcher:
    def __init__(self, worker: Callable[[ShardTask], object]) -> None:
        self._worker = worker
        self.dispatched: list[ShardTask] = []

    def dispatch(self, tasks: Sequence[ShardTask]) -> DispatchReport:
        for task in tasks:
            self.dispatched.append(task)
            self._worker(task)
        return DispatchReport(dispatched=len(tasks), failed=())
