"""Consumers skip the conversation-events they do not fold by the subject header, unread; the
orchestrator (which folds every event) still dead-letters invalid bytes whatever their header says,
and a message without the header is decoded by every reader, as before."""

from __future__ import annotations

from confluent_kafka import Producer

from agentlog.events.codec import SUBJECT_HEADER
from agentlog.kafka.client import producer_config
from agentlog.kafka.dlq import read_dead_letters
from agentlog.kafka.topics import CONVERSATION_EVENTS
from helpers import Stack, group_caught_up, wait_for

SKIPPED_BY_OTHERS = b"event.StepTimerFired"  # neither the router's memory nor the aggregator folds it


def test_invalid_bytes_are_dead_lettered_by_their_owner_whatever_the_header(stack: Stack) -> None:
    topic = stack.settings.topic(CONVERSATION_EVENTS)
    producer = Producer(producer_config(stack.settings, "test-raw"))
    producer.produce(topic, key=b"hdr", value=b"{tagged but broken", headers=[(SUBJECT_HEADER, SKIPPED_BY_OTHERS)])
    producer.produce(topic, key=b"hdr", value=b"{untagged and broken")
    producer.flush(10)
    _, events = stack.ask("What is 2+3?", "hdr")  # same key: same partition, after the bad messages
    assert events[-1].type == "FinalAnswerSynthesized" and "5" in events[-1].payload["message"]
    wait_for(lambda: all(group_caught_up(stack.settings, group, CONVERSATION_EVENTS)
                         for group in ("router", "orchestrator", "aggregator")),
             timeout=60, what="every reader committed past the bad messages")
    services: dict[bytes, set[str]] = {}
    for letter in read_dead_letters(stack.settings):
        services.setdefault(letter.original_value or b"", set()).add(letter.record["service"])
    assert services == {b"{tagged but broken": {"orchestrator"},
                        b"{untagged and broken": {"router", "orchestrator", "aggregator"}}
    stack.assert_alive()
