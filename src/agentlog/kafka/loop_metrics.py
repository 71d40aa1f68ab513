"""Process metrics of one service's exactly-once loop (messages in/out, errors, dead letters, and
how long each transaction takes), exported on AGENTLOG_SERVICE_METRICS_PORT when it is set.

The transaction time matters most: every hop of a turn waits for one commit, so a slow commit
shows up directly in end-to-end latency (see reference/components-measured.md, section 7).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

PORT_ENV = "AGENTLOG_SERVICE_METRICS_PORT"
# A transaction on loopback commits in a few ms; the tail reaches the 100 ms retry back-offs.
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)

_IN = Counter("agentlog_loop_messages_in", "Messages consumed by the loop", ["service"])
_OUT = Counter("agentlog_loop_messages_out", "Messages produced by the loop (dead letters included)", ["service"])
_ERRORS = Counter("agentlog_loop_errors", "Messages the handler failed to process", ["service"])
_DEAD_LETTERS = Counter("agentlog_loop_dead_letters", "Messages sent to the dead-letter queue", ["service"])
_ABORTS = Counter("agentlog_loop_aborted_transactions", "Transactions aborted and rewound", ["service"])
_TRANSACTION = Histogram("agentlog_loop_transaction_seconds", "begin_transaction to a successful commit",
                         ["service"], buckets=COMMIT_BUCKETS)
_PAUSED = Gauge("agentlog_loop_paused_partitions", "Partitions paused while work of theirs runs off the poll loop",
                ["service"])
_BUSY = Gauge("agentlog_loop_calls_busy", "Executor threads running a call (tool workers)", ["service"])
_QUEUED = Gauge("agentlog_loop_calls_queued", "Calls waiting for a free executor thread (tool workers)", ["service"])


class LoopMetrics:
    """The loop's counters with the service label bound once."""

    def __init__(self, service: str) -> None:
        self._in = _IN.labels(service=service)
        self._out = _OUT.labels(service=service)
        self._errors = _ERRORS.labels(service=service)
        self._dead_letters = _DEAD_LETTERS.labels(service=service)
        self._aborts = _ABORTS.labels(service=service)
        self._transaction = _TRANSACTION.labels(service=service)
        self._paused = _PAUSED.labels(service=service)
        self._busy = _BUSY.labels(service=service)
        self._queued = _QUEUED.labels(service=service)

    def batch(self, consumed: int, produced: int) -> None:
        self._in.inc(consumed)
        self._out.inc(produced)

    def error(self) -> None:
        self._errors.inc()

    def dead_letter(self) -> None:
        self._dead_letters.inc()

    def aborted(self) -> None:
        self._aborts.inc()

    def paused(self, partitions: int) -> None:
        self._paused.set(partitions)

    def calls(self, busy: int, queued: int) -> None:
        """Called from executor threads; a Gauge is thread-safe."""
        self._busy.set(busy)
        self._queued.set(queued)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Times a transaction that commits; one that raises is not observed (it is counted by
        `aborted` or ends the process)."""
        started = time.perf_counter()
        yield
        self._transaction.observe(time.perf_counter() - started)


def serve_from_env(registry: CollectorRegistry = REGISTRY) -> int | None:
    """Serve this process's metrics on AGENTLOG_SERVICE_METRICS_PORT, if set; returns the port.

    The port belongs to one process: whoever starts several services gives each its own.
    """
    port = os.environ.get(PORT_ENV)
    if not port:
        return None
    start_http_server(int(port), addr=os.environ.get("AGENTLOG_METRICS_HOST", "127.0.0.1"), registry=registry)
    return int(port)
