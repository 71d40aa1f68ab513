"""Steady load for the failure tests (cluster faults, network cuts): send questions at a fixed rate
in a thread, time how long the system takes to answer a fresh question after a fault, and check at
the end that nothing was lost or done twice, counted against what was acknowledged as sent."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from agentlog.conversation import TurnTimeout, follow_turn
from agentlog.events.envelope import Envelope
from agentlog.kafka.topics import WORK_PARTITIONS
from agentlog.web.partitioner import partition_for
from helpers import Stack, mixed_question, tool_counts, wait_for, wait_settled


@dataclass
class FaultReport:
    """What a failure test prints (and the README quotes): one line per fault, then the totals."""

    faults: list[tuple[str, float]] = field(default_factory=list)  # (fault, seconds until a new question answered)

    def add(self, fault: str, recovery_s: float) -> None:
        self.faults.append((fault, recovery_s))

    def lines(self) -> list[str]:
        return [f"  {fault}: recovered in {seconds:.1f} s" for fault, seconds in self.faults]


class Load:
    """Questions at `rate` per second on `conversations` conversations until `stop()`."""

    def __init__(self, stack: Stack, label: str, rate: float = 3.0, conversations: int = 13) -> None:
        self.stack = stack
        self.label = label
        self.rate = rate
        self.conversations = conversations
        self.sent: list[Envelope] = []
        self.errors: list[str] = []
        self.restarts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"load-{label}", daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        started, index = time.monotonic(), 0
        while not self._stop.is_set():
            question, plan = mixed_question(index, label=self.label, delay_ms=100)
            try:
                envelope = self.stack.client.question(f"{self.label}-{index % self.conversations}", "load",
                                                      question, plan=plan)
            except Exception as error:  # not acknowledged: not sent, so not counted (the test sees it in errors)
                self.errors.append(str(error))
            else:
                with self._lock:
                    self.sent.append(envelope)
            index += 1
            self._stop.wait(max(0.0, started + index / self.rate - time.monotonic()))  # pacing, not syncing

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def keep_alive(self) -> None:
        """The supervisor's job: restart a service that exited (e.g. its transaction watchdog fired)."""
        for key, process in list(self.stack.processes.items()):
            if process.poll() is not None:
                del self.stack.processes[key]
                self.restarts[key] += 1
                service, _, instance = key.partition("#")
                if instance:
                    self.stack.start_instance(service, instance)
                else:
                    self.stack.start(service)

    def probe(self, since: float, partition: int = 0, timeout: float = 180.0) -> float:
        """Seconds from `since` (the fault) until a new question on `partition` (of every work topic:
        they all have the same count) is answered: the time to recover."""
        index = next(i for i in itertools.count(len(self.sent))
                     if partition_for(f"{self.label}-probe-{i}".encode(), WORK_PARTITIONS) == partition)
        sent = self.stack.client.question(f"{self.label}-probe-{index}", "probe", "What is 6 * 7?")

        def answered() -> bool:
            self.keep_alive()
            with contextlib.suppress(TurnTimeout):
                for event in follow_turn(self.stack.watcher, sent.conversation_id, sent.turn_id, 1.0):
                    if event.type == "FinalAnswerSynthesized":
                        return True
            return False

        wait_for(answered, timeout=timeout, interval=0.0, what="a probe question's answer after the fault")
        return time.monotonic() - since

    def verify(self, timeout: float = 180.0) -> dict[str, Any]:
        """Every acknowledged question has exactly one answer and a verified turn; every effect ran once."""
        self.stop()
        turns = {envelope.turn_id for envelope in self.sent}
        log = wait_settled(self.stack, turns, timeout=timeout, interval=2.0, on_poll=self.keep_alive)
        received = {t for t in turns if any(e.type == "UserQueryReceived" for e in log[t])}
        answers = Counter(len({e.id for e in log[t] if e.type == "FinalAnswerSynthesized"}) for t in turns)
        assert received == turns, f"{len(turns - received)} questions lost"
        assert answers == Counter({1: len(turns)}), f"answers per turn: {answers}"
        starts, effects = tool_counts(self.stack.env)
        succeeded = {e.payload["idempotencyKey"] for events in log.values() for e in events
                     if e.type == "ToolInvocationResulted" and e.payload["tool"] == "recordEffect"
                     and e.payload["status"] == "succeeded"}
        assert succeeded and set(effects) == succeeded and set(effects.values()) == {1}, "an effect ran twice or never"
        return {"questions": len(turns), "answers": sum(answers.values()), "tool starts": len(starts),
                "effects": len(effects), "lost": 0, "duplicates": 0, "unacknowledged sends": len(self.errors),
                "service restarts": sum(self.restarts.values())}
