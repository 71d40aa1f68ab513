"""A bounded pool of threads that runs tool calls off the consumer's poll loop.

The loop must poll at least every max.poll.interval.ms or the group evicts it and hands its
partitions (and their running calls) to another member: a call may take longer than that, so it runs
here while the loop keeps polling (eos.py pauses the call's partition meanwhile).

The threads are daemons: a worker told to stop does not wait for a running call. That call is
uncommitted, so whoever owns its partition next runs it again under the same idempotency key.
"""

from __future__ import annotations

import contextvars
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

from agentlog.errors import ConfigurationError

T = TypeVar("T")
CONCURRENCY_ENV = "AGENTLOG_TOOL_CONCURRENCY"
DEFAULT_CONCURRENCY = 8  # as many calls as one batch of the tool worker holds (runtime.TOOL_BATCH_SIZE)

Report = Callable[[int, int], None]


def concurrency_from_env() -> int:
    raw = os.environ.get(CONCURRENCY_ENV, str(DEFAULT_CONCURRENCY))
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigurationError(f"{CONCURRENCY_ENV} must be a whole number of threads, at least 1; got {raw!r}")
    return int(raw)


def _ignore(busy: int, queued: int) -> None:
    """The default report: nobody watches the counts."""


class ToolExecutor:
    """`size` threads; calls beyond that wait in a queue. `report(busy, queued)` hears every change."""

    def __init__(self, size: int, report: Report = _ignore) -> None:
        self.report = report
        self._queue: queue.SimpleQueue[tuple[Callable[[], object], Future[object], contextvars.Context]] = (
            queue.SimpleQueue())
        self._lock = threading.Lock()
        self._busy = 0
        self._queued = 0
        for index in range(size):
            threading.Thread(target=self._work, name=f"tool-call-{index}", daemon=True).start()

    def submit(self, call: Callable[[], T]) -> Future[T]:
        """Run `call` on a free thread, in the caller's context (its trace span and log fields)."""
        future: Future[T] = Future()
        self._count(queued=1)
        self._queue.put((call, future, contextvars.copy_context()))  # type: ignore[arg-type]
        return future

    def _count(self, busy: int = 0, queued: int = 0) -> None:
        with self._lock:
            self._busy += busy
            self._queued += queued
            counts = self._busy, self._queued
        self.report(*counts)

    def _work(self) -> None:
        while True:
            call, future, context = self._queue.get()
            self._count(busy=1, queued=-1)
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(context.run(call))
                    except BaseException as error:  # handed to whoever waits on the future
                        future.set_exception(error)
            finally:
                self._count(busy=-1)
