"""The history projection against a real broker and real services, each its own OS process."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from agentlog.config import Settings
from agentlog.errors import InvalidMessageError
from agentlog.events.codec import SUBJECT_HEADER, Codec
from agentlog.events.envelope import Envelope, caused_by, command, utc_now
from agentlog.kafka.client import producer_config, transactional_producer_config
from agentlog.kafka.reader import read_range
from agentlog.kafka.topics import CONVERSATION_EVENTS, ensure_topics
from agentlog.services.projections.history import fold
from agentlog.services.projections.service import rebuild
from agentlog.services.projections.store import JSON_NAME, HistoryReadModel, history_db_path
from helpers import Stack, wait_for

PIPELINE = ("router", "orchestrator", "tool-worker", "aggregator", "synthesis")


@pytest.fixture
def stack(agentlog_env: dict[str, str]) -> Iterator[Stack]:
    stack = Stack(agentlog_env)
    stack.start(*PIPELINE)
    try:
        yield stack
    finally:
        stack.stop()


def model(stack: Stack) -> HistoryReadModel:
    return HistoryReadModel(history_db_path(stack.settings))


def json_path(stack: Stack) -> Path:
    return history_db_path(stack.settings).with_name(JSON_NAME)


def log_events(stack: Stack) -> tuple[list[Envelope], dict[int, int]]:
    """Every valid event of the store as logged (duplicates included) and the next offset per partition."""
    events, ends = [], {}
    for message in read_range(stack.settings, stack.settings.topic(CONVERSATION_EVENTS)):
        partition, offset = message.partition(), message.offset()
        assert partition is not None and offset is not None
        with contextlib.suppress(InvalidMessageError):
            events.append(stack.codec.decode(message.value()))
        ends[partition] = offset + 1
    return events, ends


def caught_up(stack: Stack) -> bool:
    _, ends = log_events(stack)
    position = model(stack).offsets(stack.settings.topic(CONVERSATION_EVENTS))
    return all(position.get(partition, 0) >= end for partition, end in ends.items())


def snapshot(stack: Stack) -> dict[str, Any]:
    """Everything a reader of the projection can see: the list, each history, history.json."""
    read = model(stack)
    conversations = read.conversations()
    return {"conversations": conversations,
            "histories": {c["conversationId"]: read.history(c["conversationId"]) for c in conversations},
            "json": orjson.loads(json_path(stack).read_bytes())}


def expected_from_log(stack: Stack) -> dict[str, Any]:
    """What the pure fold makes of the whole log, in the read model's shapes."""
    state = fold(log_events(stack)[0])
    return {"histories": {cid: [t.to_json() for t in c.turns] for cid, c in state.conversations.items()},
            "json": {cid: c.messages() for cid, c in state.conversations.items()}}


def settle(stack: Stack) -> dict[str, Any]:
    """Wait until the projection has reached the log's end and rewritten history.json after it."""
    wait_for(lambda: caught_up(stack), what="the projection to reach the end of the log")
    expected = expected_from_log(stack)
    wait_for(lambda: orjson.loads(json_path(stack).read_bytes()) == expected["json"], what="history.json to follow")
    return expected


def resend(stack: Stack, predicate: Callable[[Envelope], bool]) -> int:
    """Append byte-for-byte copies of matching events, as a producer retrying after a crash would."""
    producer = Producer(producer_config(stack.settings, "test-duplicator"))
    topic = stack.settings.topic(CONVERSATION_EVENTS)
    count = 0
    for message in read_range(stack.settings, topic):
        if predicate(stack.codec.decode(message.value())):
            producer.produce(topic, key=message.key(), value=message.value())
            count += 1
    assert producer.flush(10) == 0
    return count


def converse(stack: Stack) -> None:
    """Two conversations; the second is reset and then asked again."""
    stack.ask("What is 6*7?", "conv-h1")
    stack.ask("What is 2+3?", "conv-h2")
    stack.ask("What is 100-1?", "conv-h1")
    stack.client.reset("conv-h2", "tester")
    stack.ask("What is 10*4?", "conv-h2")  # same partition of user-commands: routed after the reset


def pairs(history: list[dict[str, Any]] | None) -> list[tuple[str, str]]:
    assert history is not None
    return [(turn["question"], turn["answer"]) for turn in history]


def test_history_of_two_conversations_with_a_reset_and_duplicated_events(stack: Stack) -> None:
    stack.start("projection")
    converse(stack)
    copied = resend(stack, lambda e: e.type in ("UserQueryReceived", "FinalAnswerSynthesized", "UserHistoryReset"))
    assert copied == 9  # 4 questions, 4 answers, 1 reset: the reset's copy lands after the last question
    expected = settle(stack)
    read = model(stack)
    h1, h2 = pairs(read.history("conv-h1")), pairs(read.history("conv-h2"))
    assert [q for q, _ in h1] == ["What is 6*7?", "What is 100-1?"] and "42" in h1[0][1] and "99" in h1[1][1]
    assert [q for q, _ in h2] == ["What is 10*4?"] and "40" in h2[0][1]
    assert read.history("conv-unknown") is None
    assert {c["conversationId"]: c["turns"] for c in read.conversations()} == {"conv-h1": 2, "conv-h2": 1}
    messages = orjson.loads(json_path(stack).read_bytes())
    assert messages["conv-h2"] == [{"role": "user", "content": "What is 10*4?"},
                                   {"role": "assistant", "content": h2[0][1]}]
    assert [m["role"] for m in messages["conv-h1"]] == ["user", "assistant", "user", "assistant"]
    assert snapshot(stack)["histories"] == expected["histories"]


def test_rebuild_from_offset_zero_equals_the_incremental_projection(stack: Stack) -> None:
    stack.start("projection")
    converse(stack)
    resend(stack, lambda e: e.type == "UserHistoryReset")
    settle(stack)
    incremental = snapshot(stack)
    report = rebuild(stack.settings, stack.codec)
    assert snapshot(stack) == incremental
    assert report.offsets == log_events(stack)[1] and report.invalid == 0
    # The running projection picks the swapped-in database up and carries on from its offsets.
    stack.ask("What is 1+1?", "conv-h1")
    expected = settle(stack)
    assert snapshot(stack)["histories"] == expected["histories"]
    assert len(expected["histories"]["conv-h1"]) == 3
    stack.assert_alive()


@pytest.mark.crash
@pytest.mark.parametrize("point", ["projection.before_commit", "projection.after_commit"])
def test_a_projection_killed_mid_way_resumes_to_the_same_result(stack: Stack, point: str) -> None:
    converse(stack)
    stack.start("projection", pause_at=[point])
    wait_for(lambda: stack.pause_marker(point).exists(), what=f"the projection to reach {point}")
    stack.kill("projection")
    stack.ask("What is 7-2?", "conv-h2")  # the log moves on while the projection is down
    stack.start("projection")
    expected = settle(stack)
    found = snapshot(stack)
    assert found["histories"] == expected["histories"]
    assert [q for q, _ in pairs(found["histories"]["conv-h2"])] == ["What is 10*4?", "What is 7-2?"]
    rebuild(stack.settings, stack.codec)
    assert snapshot(stack) == found


def test_invalid_events_are_skipped_alike_by_the_live_projection_and_the_rebuild(agentlog_env: dict[str, str]) -> None:
    """Bytes no schema accepts, under a subject the history folds: the live projection skips them (the
    orchestrator dead-letters them) and a rebuild must skip exactly the same ones, and count them."""
    with Stack(agentlog_env) as stack:
        stack.start("projection")
        root = command("UserQueryReceived", conversation_id="conv-bad", turn_id="t1", user_id="u1",
                       payload={"userInput": "What is 2+2?"}, source="test")
        question = caused_by(root, "event", "UserQueryReceived", {"userInput": "What is 2+2?", "language": "en"},
                             source="test", now=utc_now())
        answer = caused_by(root, "event", "FinalAnswerSynthesized",
                           {"message": "2+2 = 4.", "outcome": "completed", "synthesizer": "test"}, source="test",
                           now=utc_now())
        forged = {**caused_by(root, "event", "UserQueryReceived", {"userInput": "forged", "language": "en"},
                              source="test", now=utc_now(), id_parts=("x",)).to_json(), "turnId": "t 2"}
        values = [stack.codec.encode(question), orjson.dumps(forged), b"{not json", stack.codec.encode(answer)]
        producer = Producer(producer_config(stack.settings, "test-writer"))
        for value in values:
            producer.produce(stack.settings.topic(CONVERSATION_EVENTS), key=b"conv-bad", value=value,
                             headers=[(SUBJECT_HEADER, b"event.UserQueryReceived")])
        assert producer.flush(10) == 0
        expected = settle(stack)
        live = snapshot(stack)
        assert pairs(live["histories"]["conv-bad"]) == [("What is 2+2?", "2+2 = 4.")]
        assert live["histories"] == expected["histories"]
        report = rebuild(stack.settings, stack.codec)
        assert report.invalid == 2 and report.messages == 4
        assert snapshot(stack) == live


ROWS = {"conversations": "SELECT * FROM conversations ORDER BY conversation_id",
        "turns": "SELECT * FROM turns ORDER BY conversation_id, seq",
        "applied_offsets": "SELECT * FROM applied_offsets ORDER BY topic, partition",
        "applied_events": "SELECT * FROM applied_events ORDER BY event_id"}


def database_rows(settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the history database, in key order."""
    with contextlib.closing(sqlite3.connect(history_db_path(settings))) as db:
        return {table: db.execute(query).fetchall() for table, query in ROWS.items()}


def test_a_rebuild_by_forked_processes_equals_a_rebuild_by_one(agentlog_env: dict[str, str],
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """Many conversations over every partition, written partly in transactions (their markers take
    offsets too), with irrelevant events, duplicates, resets and invalid messages: the parallel rebuild
    must store exactly the rows, offsets and history.json of the serial one."""
    settings, codec = Settings.from_env(agentlog_env), Codec()
    ensure_topics(settings)
    topic = settings.topic(CONVERSATION_EVENTS)
    plain = Producer(producer_config(settings, "test-writer"))
    transactional = Producer(transactional_producer_config(settings, "test-tx-writer"))
    transactional.init_transactions(10)
    for n in range(120):
        conversation = f"conv-{n % 17}"
        root = command("UserQueryReceived", conversation_id=conversation, turn_id=f"t{n}", user_id="u1",
                       payload={"userInput": f"q{n}"}, source="test")
        chain = [caused_by(root, "event", type_, payload, source="test", now=utc_now()) for type_, payload in (
            ("UserQueryReceived", {"userInput": f"q{n}", "language": "en"}),
            ("PlanCompleted", {"finalAnswerSynthesisRequired": True, "stepCount": 0}),
            ("FinalAnswerSynthesized", {"message": f"a{n}", "outcome": "completed", "synthesizer": "test"}))]
        if n % 29 == 0:
            chain.append(caused_by(root, "event", "UserHistoryReset", {"command": "reset"}, source="test",
                                   now=utc_now()))
        values = [(codec.encode(e), e.subject) for e in chain]
        if n % 10 == 3:
            values += [values[0], (b"{not json", "event.UserQueryReceived")]
        producer = transactional if n % 2 else plain
        if producer is transactional:
            transactional.begin_transaction()
        for value, subject in values:
            producer.produce(topic, key=conversation.encode(), value=value, headers=[(SUBJECT_HEADER, subject.encode())])
        if producer is transactional:
            transactional.commit_transaction(10)
    assert plain.flush(10) == 0
    serial = rebuild(settings, codec, workers=1)
    serial_rows, serial_json = database_rows(settings), json_path_of(settings).read_bytes()
    with caplog.at_level(logging.WARNING):
        parallel = rebuild(settings, codec, workers=3)
    assert "folding serially" not in caplog.text  # the shares were rebuilt side by side and merged
    assert parallel == serial and serial.invalid == 12 and serial.messages == 120 * 3 + 5 + 24
    assert database_rows(settings) == serial_rows and json_path_of(settings).read_bytes() == serial_json
    assert len(serial_rows["conversations"]) == 17 and len(serial.offsets) > 1
    assert serial.offsets == log_ends(settings)


def json_path_of(settings: Settings) -> Path:
    return history_db_path(settings).with_name(JSON_NAME)


def log_ends(settings: Settings) -> dict[int, int]:
    """Next offset after the last message per partition (transaction markers not counted)."""
    ends: dict[int, int] = {}
    for message in read_range(settings, settings.topic(CONVERSATION_EVENTS)):
        partition, offset = message.partition(), message.offset()
        assert partition is not None and offset is not None
        ends[partition] = offset + 1
    return ends
