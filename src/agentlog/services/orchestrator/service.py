"""The orchestrator service: the shared fold loop plus timers for step deadlines, back-offs and
approval deadlines.

Timers are derived from state after every change; when one is due the service appends a
StepTimerFired event (in the loop's transaction) and the fold reacts when it reads it back, so
the decision a timer causes is in the log like every other decision.
"""

from __future__ import annotations

import heapq
import os
import time
from collections.abc import Mapping
from datetime import datetime

from confluent_kafka import TopicPartition

from agentlog.events.envelope import utc_now
from agentlog.kafka.eos import Output
from agentlog.kafka.topics import CONVERSATION_EVENTS
from agentlog.services.orchestrator.decide import (
    ApprovalTools,
    LocalTools,
    OrchestratorDecider,
    Timer,
    pending_timers,
    timer_event,
)
from agentlog.services.orchestrator.state import ConversationState
from agentlog.state.fold import FoldHandler
from agentlog.state.store import PartitionStore
from agentlog.tools.registry import ToolRegistry

DEFAULT_APPROVAL_TIMEOUT_S = 600.0


def approval_tools(registry: ToolRegistry, env: Mapping[str, str] = os.environ) -> dict[str, int]:
    """Tools declared with approval=True -> how long (ms) a request may wait: the tool's own
    approval_timeout_s, else AGENTLOG_APPROVAL_TIMEOUT_S, else 10 minutes."""
    default_s = float(env.get("AGENTLOG_APPROVAL_TIMEOUT_S") or DEFAULT_APPROVAL_TIMEOUT_S)
    return {name: int(1000 * (spec.approval_timeout_s or default_s))
            for name in registry.names() if (spec := registry.get(name)) is not None and spec.approval}


class OrchestratorHandler(FoldHandler[ConversationState]):
    def __init__(self, store: PartitionStore, local_tools: LocalTools | None = None,
                 approvals: ApprovalTools | None = None) -> None:
        super().__init__(OrchestratorDecider(local_tools, approvals), store,
                         inline_settled=OrchestratorDecider.recorded_inline)
        self.timers: dict[tuple[int, str], list[Timer]] = {}
        self.heap: list[tuple[int, int, str]] = []
        # Timers already turned into events, until the fold reads those events back.
        self.fired: dict[tuple[int, str], set[Timer]] = {}

    def on_state_changed(self, partition: int, key: str, state: ConversationState) -> None:
        timers = pending_timers(state)
        if timers:
            self.timers[(partition, key)] = timers
        else:  # kept only for conversations with a timer: finished ones cost no memory here
            self.timers.pop((partition, key), None)
        if (partition, key) in self.fired:
            self.fired[(partition, key)] &= set(timers)
            if not self.fired[(partition, key)]:
                del self.fired[(partition, key)]
        for timer in timers:
            heapq.heappush(self.heap, (timer.due_ms, partition, key))

    def on_recovered(self, partition: int) -> None:
        for key, state in self.stored_states(partition):  # states are cached lazily: read them all once
            self.on_state_changed(partition, key, state)

    def on_revoke(self, partitions: list[TopicPartition]) -> None:
        super().on_revoke(partitions)
        owned = set(self.states)
        self.timers = {k: v for k, v in self.timers.items() if k[0] in owned}
        self.fired = {k: v for k, v in self.fired.items() if k[0] in owned}

    def next_wakeup(self) -> float | None:
        if not self.heap:
            return None
        wait_ms = self.heap[0][0] - int(time.time() * 1000)
        return time.monotonic() + max(0, wait_ms) / 1000

    def due(self, now: datetime) -> list[Output]:
        now_ms = int(now.timestamp() * 1000)
        due_keys: set[tuple[int, str]] = set()
        while self.heap and self.heap[0][0] <= now_ms:
            _, partition, key = heapq.heappop(self.heap)
            due_keys.add((partition, key))
        outputs: list[Output] = []
        for partition, key in due_keys:
            timers = self.timers.get((partition, key), [])
            ready = [t for t in timers if t.due_ms <= now_ms and t not in self.fired.get((partition, key), ())]
            # A finished conversation's stale heap entry: no state is loaded, nothing is remembered.
            state = self.state(partition, key) if ready else None
            if state is not None:
                self.fired.setdefault((partition, key), set()).update(ready)
                outputs.extend(Output(CONVERSATION_EVENTS, timer_event(state, timer, utc_now())) for timer in ready)
            # Timers not yet due stay armed.
            for timer in self.timers.get((partition, key), []):
                if timer.due_ms > now_ms:
                    heapq.heappush(self.heap, (timer.due_ms, partition, key))
        return outputs

    def rewind(self) -> None:
        super().rewind()
        self.fired.clear()
