"""Scale-out: several instances of a service share its consumer group, and partitions move between
them under load without losing or duplicating anything.

Two orchestrators and two tool workers (plus one router, aggregator and synthesis) take steady
load; mid-run a third orchestrator joins, one orchestrator leaves cleanly (SIGTERM) and one tool
worker is SIGKILLed, so the groups rebalance three times. Then every question has exactly one
answer, every conversation verifies, every recorded effect happened once, and the logs show that
partitions were revoked, assigned and their state recovered from the log by the new owner.
"""

from __future__ import annotations

import ast
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from functools import partial

import pytest

from agentlog.events.envelope import Envelope
from agentlog.ops.replay import verify
from helpers import Stack, events_by_turn, mixed_question, tool_counts, wait_for, wait_settled

pytestmark = [pytest.mark.crash, pytest.mark.timeout(240)]

LOAD_SECONDS = 15.0
MAX_LOAD_SECONDS = 60.0
RATE = 4.0  # questions per second
CONVERSATIONS = 19  # keys spread over the six partitions


def assignments(stack: Stack, key: str, service: str) -> list[list[int]]:
    """Every partition list the instance logged as assigned, in order."""
    found = re.findall(rf"{re.escape(service)} assigned (\[.*\])", stack.log(key))
    return [sorted(partition for _topic, partition in ast.literal_eval(text)) for text in found]


def current(stack: Stack, key: str) -> list[int]:
    """The partitions an instance ("orchestrator#2") was last assigned (empty before its first)."""
    found = assignments(stack, key, key.partition("#")[0])
    return found[-1] if found else []


@pytest.fixture
def stack(agentlog_env: dict[str, str]) -> Iterator[Stack]:
    stack = Stack(agentlog_env)
    stack.start("router", "aggregator", "synthesis")
    for instance in ("1", "2"):
        stack.start_instance("orchestrator", instance)
        stack.start_instance("tool-worker", instance)
    try:
        yield stack
    finally:
        stack.stop()


def test_partitions_move_between_instances_without_loss_or_duplicates(stack: Stack) -> None:
    sent: list[Envelope] = []
    sent_lock = threading.Lock()
    load_done = threading.Event()
    disrupted = threading.Event()

    def load() -> None:
        """LOAD_SECONDS of questions, and on until the last disruption (at most MAX_LOAD_SECONDS)."""
        started = time.monotonic()
        index = 0
        while time.monotonic() - started < LOAD_SECONDS or not disrupted.is_set():
            if time.monotonic() - started > MAX_LOAD_SECONDS:
                break
            question, plan = mixed_question(index, label="r", delay_ms=200)
            envelope = stack.client.question(f"rebalance-{index % CONVERSATIONS}", "tester", question, plan=plan)
            with sent_lock:
                sent.append(envelope)
            index += 1
            time.sleep(max(0.0, started + index / RATE - time.monotonic()))  # pacing the load, not syncing
        load_done.set()

    def answered() -> int:
        return sum(any(e.type == "FinalAnswerSynthesized" for e in events) for events in events_by_turn(stack).values())

    loader = threading.Thread(target=load, name="rebalance-load", daemon=True)
    loader.start()

    # 1. Both initial instances own partitions and answers flow.
    wait_for(lambda: answered() >= 5, timeout=60, interval=0.5, what="the first answers")
    for key in ("orchestrator#1", "orchestrator#2", "tool-worker#1", "tool-worker#2"):
        wait_for(partial(current, stack, key), timeout=30, interval=0.2, what=f"{key} to own partitions")

    # 2. A third orchestrator joins: the group rebalances and it takes some partitions over.
    stack.start_instance("orchestrator", "3")
    wait_for(lambda: current(stack, "orchestrator#3"), timeout=30, interval=0.2,
             what="orchestrator#3 to be assigned partitions")
    before = answered()
    wait_for(lambda: answered() >= before + 3, timeout=30, interval=0.5, what="answers after the join")

    # 3. One orchestrator leaves cleanly: it gives its partitions back and exits 0.
    assert stack.terminate("orchestrator#1") == 0, stack.log("orchestrator#1")[-3000:]
    assert "orchestrator revoked" in stack.log("orchestrator#1")

    # 4. A tool worker dies in the middle of its work; its partitions go to the other one.
    tool_worker = stack.processes["tool-worker#1"]

    def in_call() -> bool:
        """tool-worker#1 has started a call whose effect is not recorded yet: it is in the call."""
        calls, done = tool_counts(stack.env)
        return any(c["pid"] == tool_worker.pid and c["idempotencyKey"] not in done for c in calls)

    wait_for(in_call, timeout=30, interval=0.02, what="tool-worker#1 to be in a call")
    stack.kill("tool-worker#1")
    disrupted.set()

    loader.join(MAX_LOAD_SECONDS + 10)
    assert load_done.is_set()
    with sent_lock:
        turns = {envelope.turn_id for envelope in sent}

    log = wait_settled(stack, turns, timeout=60, interval=1.0, on_poll=stack.assert_alive)

    # Exactly one answer per question, each a completed turn.
    answers = Counter(len({e.id for e in log[t] if e.type == "FinalAnswerSynthesized"}) for t in turns)
    assert answers == Counter({1: len(turns)}), f"answers per turn: {answers}"
    outcomes = Counter(next(e for e in log[t] if e.type == "FinalAnswerSynthesized").payload["outcome"]
                       for t in turns)
    assert outcomes == Counter({"completed": len(turns)}), outcomes
    # Every conversation as a whole verifies too (several turns per conversation).
    conversations: dict[str, list[Envelope]] = {}
    for events in log.values():
        for event in events:
            conversations.setdefault(event.conversation_id, []).append(event)
    for conversation_id in {f"rebalance-{i}" for i in range(min(CONVERSATIONS, len(turns)))}:
        assert verify(conversations[conversation_id]) == [], conversation_id

    # Each succeeded effect happened exactly once, whichever worker ran (or re-ran) the call.
    starts, effects = tool_counts(stack.env)
    succeeded = {e.payload["idempotencyKey"] for events in log.values() for e in events
                 if e.type == "ToolInvocationResulted" and e.payload["tool"] == "recordEffect"
                 and e.payload["status"] == "succeeded"}
    assert succeeded and set(effects) == succeeded and set(effects.values()) == {1}

    # Partitions really moved: the survivors ended up with all six between them, the joiner
    # rebuilt the state of the partitions it took over from the log, the leaver gave its back.
    def orchestrators_cover_all() -> list[list[int]]:
        final = [current(stack, k) for k in ("orchestrator#2", "orchestrator#3")]
        return final if all(final) and sorted(p for ps in final for p in ps) == list(range(6)) else []

    wait_for(orchestrators_cover_all, timeout=30, interval=0.2, what="orchestrators #2 and #3 to share all partitions")
    wait_for(lambda: current(stack, "tool-worker#2") == list(range(6)),
             timeout=30, interval=0.2, what="tool-worker#2 to own every partition")
    # The new owner rebuilt the state of the partitions it took over from the log, reading only
    # those partitions: never more events than the partition's offsets span.
    recoveries = [(int(n), 0 if start == "the start" else int(start), int(end)) for key in stack.processes
                  if key.startswith("orchestrator#")
                  for n, start, end in re.findall(r"recovered \S+: replayed (\d+) events from (the start|\d+) to (\d+)",
                                                  stack.log(key))]
    assert recoveries and "recovered" in stack.log("orchestrator#3")
    assert all(n <= end - start for n, start, end in recoveries), recoveries
    assert "orchestrator revoked" in stack.log("orchestrator#2")
    print(f"\nrebalance: {len(turns)} questions, orchestrator#2 assignments "
          f"{assignments(stack, 'orchestrator#2', 'orchestrator')}, orchestrator#3 "
          f"{assignments(stack, 'orchestrator#3', 'orchestrator')}, tool-worker#2 "
          f"{assignments(stack, 'tool-worker#2', 'tool-worker')}, tool starts {len(starts)}, effects {len(effects)}")
