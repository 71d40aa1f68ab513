"""Chaos: under steady load, SIGKILL random services (and the broker once) and restart them, for a
bounded time; then every question has exactly one answer, every invariant of every conversation
holds, every recorded effect happened once, and the dead-letter queue holds only the bad messages
sent on purpose.

Short form in CI (AGENTLOG_CHAOS_SECONDS, default 25 s); the long form is the same test with a
larger value, e.g. `AGENTLOG_CHAOS_SECONDS=600 pytest tests/integration/test_chaos.py -s`.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer

from agentlog.kafka.broker import LocalBroker
from agentlog.kafka.client import producer_config
from agentlog.kafka.dlq import read_dead_letters
from agentlog.kafka.topics import USER_COMMANDS
from helpers import ALL_SERVICES, Stack, mixed_question, tool_counts, wait_settled

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]

SECONDS = float(os.environ.get("AGENTLOG_CHAOS_SECONDS", "25"))
RATE = float(os.environ.get("AGENTLOG_CHAOS_RATE", "6"))  # questions per second
KILL_EVERY = 2.0
BAD_MESSAGES = 3


class Chaos:
    def __init__(self, stack: Stack, broker: LocalBroker | None, seed: int) -> None:
        self.stack = stack
        self.broker = broker
        self.random = random.Random(seed)
        self.kills: Counter[str] = Counter()
        self.stop = threading.Event()

    def keep_alive(self) -> None:
        """The supervisor's job: restart whatever died (killed, or exited on a fatal error)."""
        for name in ALL_SERVICES:
            process = self.stack.processes.get(name)
            if process is None or process.poll() is not None:
                self.stack.processes.pop(name, None)
                self.stack.start(name)

    def run(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        broker_kill_at = time.monotonic() + seconds / 2
        while time.monotonic() < deadline:
            self.keep_alive()
            if self.broker is not None and time.monotonic() >= broker_kill_at and not self.kills["broker"]:
                self.broker.kill()
                self.kills["broker"] += 1
                self.broker.start(timeout=120)
            else:
                victim = self.random.choice(ALL_SERVICES)
                self.stack.kill(victim)
                self.kills[victim] += 1
            self.stop.wait(self.random.uniform(0.5, 1.5) * KILL_EVERY)


@pytest.fixture
def stack(agentlog_env: dict[str, str]) -> Iterator[Stack]:
    # A short watchdog: a transaction left hanging by the broker restart ends its process sooner.
    with Stack({**agentlog_env, "AGENTLOG_TXN_WATCHDOG_S": "15"}) as stack:
        stack.start()
        yield stack


def test_chaos_loses_nothing_and_duplicates_nothing(stack: Stack, kafka_broker: LocalBroker | None) -> None:
    sent: list[Any] = []
    load_done = threading.Event()

    def load() -> None:
        index = 0
        started = time.monotonic()
        while time.monotonic() - started < SECONDS:
            question, plan = mixed_question(index, label="e", delay_ms=100)
            sent.append(stack.client.question(f"chaos-{index % 17}", "chaos", question, plan=plan))
            index += 1
            time.sleep(max(0.0, started + index / RATE - time.monotonic()))  # pacing the load, not syncing
        load_done.set()

    bad = Producer(producer_config(stack.settings, "chaos-bad"))
    for n in range(BAD_MESSAGES):
        bad.produce(stack.settings.topic(USER_COMMANDS), key=b"chaos-bad", value=b"not json %d" % n)
    bad.flush(10)
    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    chaos = Chaos(stack, kafka_broker, seed=int(os.environ.get("AGENTLOG_CHAOS_SEED", "7")))
    chaos.run(SECONDS)
    loader.join(SECONDS + 60)
    assert load_done.is_set()
    chaos.keep_alive()

    turns = {envelope.turn_id: envelope for envelope in sent}

    log = wait_settled(stack, turns, timeout=180, interval=2.0, on_poll=chaos.keep_alive)

    answers: Counter[int] = Counter()
    for turn_id in turns:
        answers[len({e.id for e in log[turn_id] if e.type == "FinalAnswerSynthesized"})] += 1
    assert answers == Counter({1: len(turns)}), f"answers per turn: {answers}"
    starts, effects = tool_counts(stack.env)
    succeeded_keys = {e.payload["idempotencyKey"] for events in log.values() for e in events
                      if e.type == "ToolInvocationResulted" and e.payload["tool"] == "recordEffect"
                      and e.payload["status"] == "succeeded"}
    assert set(effects) == succeeded_keys and set(effects.values()) <= {1}
    dead = list(read_dead_letters(stack.settings))
    assert len(dead) == BAD_MESSAGES and all("not valid JSON" in d.record["reason"] for d in dead)
    outcomes = Counter(e.payload["outcome"] for t in turns for e in {x.id: x for x in log[t]}.values()
                       if e.type == "FinalAnswerSynthesized")
    print(f"\nchaos: {len(turns)} questions in {SECONDS:.0f} s, kills {dict(chaos.kills)}, answers {dict(outcomes)}, "
          f"tool starts {len(starts)}, effects {len(effects)}, answers {sum(answers.values())}, "
          f"lost 0, duplicated answers 0")
