"""Turns asked and not yet answered, for an open loop without a thread per question.

The pacing thread registers each turn before its command is produced; the collector thread resolves
it when its answer is read; whoever calls `expire` or `wait` counts the overdue ones as timeouts.
A turn is resolved once: a late answer (after its timeout) and a second copy of an answer are ignored.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from agentlog.bench.clients import Answer

Record = Callable[[Answer | None], None]  # an answer, or None for a timeout


@dataclass(frozen=True)
class _Turn:
    conversation_id: str
    started: float  # perf counter: the scheduled time latency counts from
    sent_wall: float  # the same moment on the wall clock, to compare with event timestamps


class PendingTurns:
    """Turn id -> when it was due; `record` is called once per turn, with its Answer or None."""

    def __init__(self, record: Record) -> None:
        self._record = record
        self._pending: dict[str, _Turn] = {}
        # (deadline, turn id) of every turn registered; answered ones are dropped when they come up
        self._deadlines: list[tuple[float, str]] = []
        self._changed = threading.Condition()

    def add(self, turn_id: str, conversation_id: str, started: float, timeout: float) -> None:
        """Register a turn before its command is sent, so that no answer can come before it."""
        sent_wall = time.time() - (time.perf_counter() - started)
        with self._changed:
            self._pending[turn_id] = _Turn(conversation_id, started, sent_wall)
            heapq.heappush(self._deadlines, (started + timeout, turn_id))

    def answered(self, turn_id: str, arrived: float, arrived_wall: float, outcome: str) -> bool:
        """Record the answer of a waiting turn (arrival on both clocks); False when no turn waits for it."""
        with self._changed:
            turn = self._pending.pop(turn_id, None)
            if turn is None:
                return False
            self._record(Answer(turn.conversation_id, turn_id, outcome, arrived - turn.started, turn.sent_wall,
                                arrived_wall))
            if not self._pending:
                self._changed.notify_all()
            return True

    def expire(self, now: float) -> int:
        """Count every turn whose deadline is at or before `now` (perf counter) as a timeout."""
        with self._changed:
            return self._expire(now)

    def _expire(self, now: float) -> int:
        expired = 0
        while self._deadlines and self._deadlines[0][0] <= now:
            _, turn_id = heapq.heappop(self._deadlines)
            if self._pending.pop(turn_id, None) is not None:
                self._record(None)
                expired += 1
        return expired

    def wait(self) -> None:
        """Until every registered turn is answered or past its deadline."""
        with self._changed:
            while self._pending:
                self._expire(time.perf_counter())
                if self._pending:
                    self._changed.wait(max(0.0, self._deadlines[0][0] - time.perf_counter()))
