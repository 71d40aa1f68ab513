"""The router's memory wiring without a broker: events fold into the window, a question is planned
with it, a reset forgets at once, the window survives a restart through the store, and a
non-co-partitioned assignment is refused."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from confluent_kafka import Message, TopicPartition

from agentlog.config import Settings
from agentlog.errors import ConfigurationError
from agentlog.events.envelope import Envelope, caused_by, command
from agentlog.kafka.eos import Output, TransactionalLoop
from agentlog.kafka.topics import CONVERSATION_EVENTS, USER_COMMANDS
from agentlog.services.router.memory import MemoryLimits
from agentlog.services.router.planner import OfflinePlanner
from agentlog.services.router.service import RouterHandler
from agentlog.state.store import PartitionStore

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PREFIX = "p."
EVENTS, COMMANDS = PREFIX + CONVERSATION_EVENTS, PREFIX + USER_COMMANDS


class StubLoop:
    """What a FoldHandler asks of its loop: the settings and the group's committed offsets."""

    def __init__(self, tmp_path: Path) -> None:
        self.settings = Settings.from_env({"AGENTLOG_TOPIC_PREFIX": PREFIX, "AGENTLOG_VAR_DIR": str(tmp_path)})
        self.offsets: dict[tuple[str, int], int] = {}

    def committed(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.offsets.get((tp.topic, tp.partition), -1))
                for tp in partitions]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PartitionStore]:
    opened = PartitionStore(tmp_path / "router-0")
    yield opened
    opened.close()


def router(store: PartitionStore, loop: StubLoop) -> RouterHandler:
    handler = RouterHandler(OfflinePlanner(), store, MemoryLimits(turns=5, chars=1000))
    handler.bind(cast(TransactionalLoop, loop))
    handler.on_assign([TopicPartition(COMMANDS, 0), TopicPartition(EVENTS, 0)])
    return handler


def deliver(handler: RouterHandler, topic: str, envelope: Envelope, offset: int) -> list[Output]:
    return handler.handle(envelope, Message(topic=topic, partition=0, offset=offset), NOW)


def question(text: str, turn: str) -> Envelope:
    return command("UserQueryReceived", conversation_id="c1", turn_id=turn, user_id="u1",
                   payload={"userInput": text}, source="test")


def run_turn(handler: RouterHandler, text: str, turn: str, offset: int) -> dict[str, Any]:
    """Plan a question and feed the router its own events and an answer back, as the log would."""
    outputs = deliver(handler, COMMANDS, question(text, turn), offset)
    for index, output in enumerate(outputs):
        deliver(handler, EVENTS, output.envelope, offset * 10 + index)
    answer = caused_by(outputs[-1].envelope, "event", "FinalAnswerSynthesized",
                       {"message": f"answer to {text}", "outcome": "completed", "synthesizer": "t"},
                       source="synthesis", now=NOW)
    deliver(handler, EVENTS, answer, offset * 10 + 9)
    return dict(outputs[-1].envelope.payload)


def test_questions_are_planned_with_the_answered_turns_and_a_reset_forgets_at_once(store: PartitionStore,
                                                                                   tmp_path: Path) -> None:
    handler = router(store, StubLoop(tmp_path))
    assert run_turn(handler, "What is 6*7?", "t1", 1)["memory"] == []
    second = run_turn(handler, "What did I ask you before?", "t2", 2)
    assert [m["question"] for m in second["memory"]] == ["What is 6*7?"]
    assert second["plan"]["steps"][0]["arguments"]["turns"] == [{"question": "What is 6*7?",
                                                                 "answer": "answer to What is 6*7?"}]
    reset = command("UserControl", conversation_id="c1", turn_id="r1", user_id="u1", payload={"command": "reset"},
                    source="test")
    (forgotten,) = deliver(handler, COMMANDS, reset, 3)
    assert forgotten.envelope.type == "UserHistoryReset"
    after = deliver(handler, COMMANDS, question("What did I ask you before?", "t3"), 4)
    assert after[-1].envelope.payload["memory"] == []  # the reset was not read back yet


def test_the_window_survives_a_restart_through_the_store(store: PartitionStore, tmp_path: Path) -> None:
    loop = StubLoop(tmp_path)
    handler = router(store, loop)
    run_turn(handler, "What is 6*7?", "t1", 1)
    loop.offsets = {(EVENTS, 0): 20, (COMMANDS, 0): 2}
    handler.after_commit(dict(loop.offsets))
    restarted = router(store, loop)  # applied == committed: loaded from the store, nothing replayed
    assert [t.question for t in restarted.memory(0, "c1")] == ["What is 6*7?"]


def test_a_commands_partition_without_its_events_partition_is_refused(store: PartitionStore, tmp_path: Path) -> None:
    handler = RouterHandler(OfflinePlanner(), store)
    handler.bind(cast(TransactionalLoop, StubLoop(tmp_path)))
    with pytest.raises(ConfigurationError, match=r"partitions \[1\]"):
        handler.on_assign([TopicPartition(COMMANDS, 1), TopicPartition(EVENTS, 0)])
