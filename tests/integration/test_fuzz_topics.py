"""Hostile input to topics (issue 11, item 4): random bytes, huge messages, wrong types, valid JSON with
hostile field values (other conversations' ids, negative numbers, unknown tools) and replayed old
events, produced straight to every topic the services consume while normal conversations run.

Afterwards: every service is still alive, every message no schema accepts is in the dead-letter queue
with its reason and original bytes, the replayed events changed nothing (dropped as duplicates), and
the normal conversations got their right answers. The topics are iterated, not named, so topics added
later are fuzzed too.
"""

from __future__ import annotations

import contextlib
import os
import random
import uuid
from collections.abc import Iterator
from functools import partial
from typing import Any

import orjson
from confluent_kafka import Producer

from agentlog.errors import InvalidMessageError
from agentlog.events.envelope import Envelope
from agentlog.kafka.client import producer_config
from agentlog.kafka.dlq import read_dead_letters
from agentlog.kafka.reader import read_range
from agentlog.kafka.topics import ANSWER_STREAM, CONVERSATION_EVENTS, DEAD_LETTER_QUEUE, SCHEMA_REGISTRY, TOPICS
from agentlog.ops.replay import verify
from helpers import Stack, wait_for

# Every topic whose messages are envelopes a service consumes (the others hold records of their own).
FUZZED_TOPICS = [t.name for t in TOPICS if t.name not in (DEAD_LETTER_QUEUE, SCHEMA_REGISTRY, ANSWER_STREAM)]
HUGE = 1_000_000  # bytes: at the broker's 1 MB limit (its dead letter is 1.33 MB), far over anything expected


def invalid_messages(rng: random.Random, valid: dict[str, Any]) -> Iterator[bytes]:
    """Messages no schema accepts: each must land in the dead-letter queue, byte for byte."""
    yield bytes(rng.getrandbits(8) for _ in range(300))
    yield b"\xff\xfe not utf-8 \x00"
    yield b"[]"
    yield b"null"
    yield b'"a string"'
    yield b"{}"
    yield b'{"kind": "event", "type": "' + b"A" * 10_000 + b'"}'
    yield orjson.dumps({"payload": "x" * HUGE})
    yield os.urandom(HUGE)
    for field, value in [("schemaVersion", "1"), ("schemaVersion", 99), ("payload", [1, 2]), ("kind", "query"),
                         ("type", "DropAllTables"), ("conversationId", "../../etc"), ("id", -1), ("userId", None),
                         ("timestamp", "yesterday"), ("payload", {"unknownField": True})]:
        yield orjson.dumps({**valid, field: value})
    yield orjson.dumps({**valid, "payload": {**valid["payload"], "step": -1, "attempt": -5}})


def hostile_valid_messages(events: list[Envelope], victim: str) -> Iterator[bytes]:
    """Schema-valid messages with hostile content: another conversation's id, unknown turns, steps and
    tools. Readers must shrug them off (or dead-letter them); nothing may die."""
    for event in events:
        data = event.to_json()
        yield orjson.dumps({**data, "id": str(uuid.uuid4()), "conversationId": victim})  # someone else's turn
        yield orjson.dumps({**data, "id": str(uuid.uuid4()), "turnId": f"ghost-{uuid.uuid4().hex}"})
        payload = dict(data["payload"])
        ghosts = {"stepId": f"ghost{uuid.uuid4().hex[:8]}", "tool": "noSuchTool", "invocationId": str(uuid.uuid4())}
        payload.update({key: value for key, value in ghosts.items() if key in payload})
        yield orjson.dumps({**data, "id": str(uuid.uuid4()), "payload": payload})


def _is_envelope(value: bytes | None) -> bool:
    """A topic may carry other records too (e.g. a worker's progress reports): only envelopes are mutated."""
    try:
        return isinstance(orjson.loads(value or b"null").get("kind"), str)
    except (orjson.JSONDecodeError, AttributeError):
        return False


def produce(stack: Stack, messages: list[tuple[str, bytes | None, bytes | None]]) -> None:
    producer = Producer(producer_config(stack.settings, "fuzz"))
    for topic, key, value in messages:
        producer.produce(stack.settings.topic(topic), key=key, value=value)
    assert producer.flush(60) == 0


def topic_messages(stack: Stack, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    return [(m.key(), m.value()) for m in read_range(stack.settings, stack.settings.topic(topic))]


def readable_events(stack: Stack, forged: set[str]) -> dict[tuple[str, str], list[Envelope]]:
    """The event store by (conversation, turn) as the services wrote it: without this test's garbage and
    forgeries (a forged turn id in another conversation is another turn)."""
    log: dict[tuple[str, str], list[Envelope]] = {}
    for _, value in topic_messages(stack, CONVERSATION_EVENTS):
        with contextlib.suppress(InvalidMessageError):
            event = stack.codec.decode(value)
            if event.id not in forged:
                log.setdefault((event.conversation_id, event.turn_id), []).append(event)
    return log


def answers(stack: Stack, question: Envelope, forged: set[str]) -> list[Envelope]:
    turn = (question.conversation_id, question.turn_id)
    return list({e.id: e for e in readable_events(stack, forged).get(turn, [])
                 if e.type == "FinalAnswerSynthesized"}.values())


def test_hostile_messages_on_every_topic_are_dead_lettered_or_dropped_and_nothing_dies(
        agentlog_env: dict[str, str]) -> None:
    rng = random.Random(11)
    with Stack({**agentlog_env, "AGENTLOG_LOCAL_TOOLS": ""}) as stack:  # every step through the topics
        stack.start()
        # an old conversation: its messages are what gets replayed and mutated
        old, old_events = stack.ask("What is 2+3 and what is 10*4?", f"old-{uuid.uuid4().hex[:8]}")
        assert "5" in old_events[-1].payload["message"] and "40" in old_events[-1].payload["message"]
        recorded = {topic: topic_messages(stack, topic) for topic in FUZZED_TOPICS}
        assert all(recorded.values()), "every fuzzed topic should carry the old conversation"
        victim = f"victim-{uuid.uuid4().hex[:8]}"

        invalid: list[tuple[str, bytes | None, bytes | None]] = []
        hostile: list[tuple[str, bytes | None, bytes | None]] = []
        forged: set[str] = set()
        for topic, messages in recorded.items():
            valid = next(orjson.loads(v or b"") for _, v in messages if _is_envelope(v))
            key = victim.encode()
            invalid += [(topic, key, raw) for raw in invalid_messages(rng, valid)] + [(topic, key, None)]
            envelopes = [stack.codec.decode(value) for _, value in messages if _is_envelope(value)]
            forgeries = list(hostile_valid_messages(envelopes, victim))
            forged |= {orjson.loads(raw)["id"] for raw in forgeries}
            hostile += [(topic, key, raw) for raw in forgeries]
            hostile += [(topic, k, v) for k, v in messages]  # replayed old messages, byte for byte

        # normal questions, asked while the hostile messages arrive
        sent = [stack.client.question(victim, "tester", "What is 6*7?"),
                stack.client.question(f"calm-{uuid.uuid4().hex[:8]}", "tester", "What is 12.5% of 240?")]
        produce(stack, invalid + hostile)
        for question, expected in zip(sent, ["42", "30"], strict=True):
            final = wait_for(partial(answers, stack, question, forged), timeout=120, interval=0.5,
                             what=f"the answer to {question.payload['userInput']!r}")
            assert expected in final[0].payload["message"]

        # every invalid message is dead-lettered with a reason and its original bytes
        wanted = {(topic, value) for topic, _, value in invalid}

        def dead_lettered() -> set[tuple[str, bytes | None]]:
            found = {(letter.record["sourceTopic"].removeprefix(stack.settings.topic_prefix), letter.original_value)
                     for letter in read_dead_letters(stack.settings) if letter.record["reason"]}
            return wanted - found

        wait_for(lambda: not dead_lettered(), timeout=120, interval=0.5, what="every invalid message dead-lettered")
        stack.assert_alive()

        # the replays were dropped: the old turn still has one answer (forgeries in it, with new ids, are
        # acted on like any event a trusted writer appends, so only the new turns are verified in full)
        log = readable_events(stack, forged)
        assert len(answers(stack, old, forged)) == 1
        for question in sent:
            assert len(answers(stack, question, forged)) == 1
            assert verify(log[question.conversation_id, question.turn_id]) == []
        # and the services say why they dropped what they dropped
        logs = "".join(stack.log(name) for name in stack.processes)
        assert "dead-lettered" in logs
