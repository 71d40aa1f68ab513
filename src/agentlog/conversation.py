"""Client side of a conversation: send a question, follow its turn's events to the final answer.

Used by `agentlog ask`, the tests and the benchmark. The watcher starts at the event store's end
*before* the command is sent, so no event of the turn can slip past it; events are de-duplicated
by id, as every reader of the log must.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from opentelemetry.trace import SpanKind

from agentlog.config import Settings
from agentlog.errors import AgentlogError
from agentlog.events.codec import Codec
from agentlog.events.envelope import Envelope, new_id
from agentlog.events.envelope import command as make_command
from agentlog.kafka.client import consumer_config, poll_batch, producer_config
from agentlog.kafka.reader import watermarks
from agentlog.kafka.topics import CONVERSATION_EVENTS, USER_COMMANDS
from agentlog.observability import current_headers, handling

SOURCE = "cli"
CONTROL_COMMANDS = ("approve", "deny", "cancel")
DeliveryCallback = Callable[[KafkaError | None, Message], None]


class TurnTimeout(AgentlogError):
    """No final answer arrived before the deadline; the turn may still finish later."""


class EventWatcher:
    """Reads conversation-events from the current end on, for a set of conversations."""

    def __init__(self, settings: Settings, codec: Codec) -> None:
        self.codec = codec
        self.topic = settings.topic(CONVERSATION_EVENTS)
        self.consumer = Consumer(consumer_config(settings, None, "agentlog-watch"))
        metadata = self.consumer.list_topics(self.topic, timeout=30).topics[self.topic]
        assignment = []
        for partition in metadata.partitions:
            _, high = watermarks(self.consumer, self.topic, partition)
            assignment.append(TopicPartition(self.topic, partition, high))
        self.consumer.assign(assignment)
        self.seen: set[str] = set()

    def messages(self, timeout: float) -> Iterator[Message]:
        """One batch of raw messages, waiting up to `timeout` seconds for the first: for a reader that
        decodes only some of them (the benchmark). End-of-partition markers are dropped, other errors raise."""
        for message in poll_batch(self.consumer, 100, timeout):
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise AgentlogError(f"reading {self.topic}: {error}")
                continue
            yield message

    def events(self, timeout: float) -> Iterator[Envelope]:
        """Yield new events (any conversation) for up to `timeout` seconds of silence-free polling."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages(min(0.1, max(0.0, deadline - time.monotonic()))):
                try:
                    envelope = self.codec.decode(message.value())
                except AgentlogError:
                    continue
                if envelope.id in self.seen:
                    continue
                self.seen.add(envelope.id)
                yield envelope

    def close(self) -> None:
        self.consumer.close()


class ConversationClient:
    def __init__(self, settings: Settings, codec: Codec, source: str = SOURCE) -> None:
        self.settings = settings
        self.codec = codec
        self.source = source
        self.producer = Producer(producer_config(settings, f"agentlog-{source}"))
        # Connect now, so the first question does not pay for the connection in its latency.
        self.producer.list_topics(timeout=10)

    def send(self, envelope: Envelope) -> None:
        self.enqueue(envelope)
        if self.producer.flush(30):
            raise AgentlogError("Kafka did not acknowledge the command within 30 s")

    def enqueue(self, envelope: Envelope, on_delivery: DeliveryCallback | None = None) -> None:
        """Hand the command to the producer without waiting for Kafka (a load generator cannot wait a
        round trip per question): its caller polls the producer, which reports to `on_delivery`."""
        with handling(self.source, envelope, kind=SpanKind.PRODUCER):
            self.producer.produce(self.settings.topic(USER_COMMANDS), key=envelope.conversation_id.encode(),
                                  value=self.codec.encode(envelope), headers=current_headers(),
                                  on_delivery=on_delivery)

    def question_command(self, conversation_id: str, user_id: str, text: str, *, turn_id: str | None = None,
                         plan: Mapping[str, Any] | None = None) -> Envelope:
        """The UserQueryReceived command `question` sends."""
        payload: dict[str, Any] = {"userInput": text}
        if plan is not None:
            payload["plan"] = dict(plan)
        return make_command("UserQueryReceived", conversation_id=conversation_id, turn_id=turn_id or new_id(),
                            user_id=user_id, payload=payload, source=self.source)

    def question(self, conversation_id: str, user_id: str, text: str, *, turn_id: str | None = None,
                 plan: Mapping[str, Any] | None = None) -> Envelope:
        envelope = self.question_command(conversation_id, user_id, text, turn_id=turn_id, plan=plan)
        self.send(envelope)
        return envelope

    def reset(self, conversation_id: str, user_id: str) -> Envelope:
        envelope = make_command("UserControl", conversation_id=conversation_id, turn_id=new_id(), user_id=user_id,
                           payload={"command": "reset"}, source=self.source)
        self.send(envelope)
        return envelope

    def control(self, conversation_id: str, user_id: str, command: str, *, turn_id: str,
                reason: str | None = None, step_id: str | None = None) -> Envelope:
        """Send approve, deny or cancel for a turn: its events land in that turn, and the
        orchestrator decides whether it applies (a turn that is not waiting ignores it). `step_id`
        names the approval decided; without it a decision applies only when one step waits."""
        if command not in CONTROL_COMMANDS:
            raise AgentlogError(f"unknown control command {command!r}; use one of {', '.join(CONTROL_COMMANDS)}")
        payload = {"command": command, **({"reason": reason} if reason else {}),
                   **({"stepId": step_id} if step_id else {})}
        envelope = make_command("UserControl", conversation_id=conversation_id, turn_id=turn_id, user_id=user_id,
                                payload=payload, source=self.source)
        self.send(envelope)
        return envelope


def follow_turn(watcher: EventWatcher, conversation_id: str, turn_id: str, timeout: float) -> Iterator[Envelope]:
    """Yield the turn's events until its FinalAnswerSynthesized; TurnTimeout past the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in watcher.events(min(1.0, max(0.0, deadline - time.monotonic()))):
            if event.conversation_id == conversation_id and event.turn_id == turn_id:
                yield event
                if event.type == "FinalAnswerSynthesized":
                    return
    raise TurnTimeout(f"no final answer for turn {turn_id} within {timeout:.0f} s; it may still arrive "
                      f"(its events are keyed by conversation {conversation_id} in conversation-events)")
