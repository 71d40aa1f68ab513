"""Answer deltas: a turn's answer text as it is written, on the short-lived `answer-stream` topic.

Deltas are not events. They are produced outside any transaction (a transaction would hide them
until its commit, i.e. until the answer is already recorded), keyed by conversation id so that one
turn's deltas stay in order, and dropped after an hour. They are best-effort: a crash, a full
buffer or an unreachable broker loses some, and the page then shows the recorded
FinalAnswerSynthesized, which is always the truth. `seq` 0 starts (or restarts) the turn's text,
each later delta appends to it, and `done` ends it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from agentlog.config import Settings
from agentlog.errors import AgentlogError
from agentlog.events.codec import Codec
from agentlog.kafka.client import producer_config
from agentlog.kafka.topics import ANSWER_STREAM

log = logging.getLogger(__name__)

SUBJECT = "record.AnswerDelta"


@dataclass(frozen=True)
class AnswerDelta:
    conversation_id: str
    turn_id: str
    user_id: str
    seq: int
    text: str
    done: bool

    def to_json(self) -> dict[str, Any]:
        return {"conversationId": self.conversation_id, "turnId": self.turn_id, "userId": self.user_id,
                "seq": self.seq, "text": self.text, "done": self.done}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AnswerDelta:
        """The inverse of to_json, for a record already validated against record.AnswerDelta."""
        return cls(data["conversationId"], data["turnId"], data["userId"], data["seq"], data["text"], data["done"])


def _report(error: KafkaError | None, _: Message) -> None:
    if error is not None:
        log.debug("an answer delta was not delivered (best-effort): %s", error)


class DeltaPublisher:
    """One plain (non-transactional) producer per process for every turn's deltas."""

    def __init__(self, settings: Settings, codec: Codec, client_id: str) -> None:
        self.topic = settings.topic(ANSWER_STREAM)
        self.codec = codec
        self.producer = Producer(producer_config(settings, client_id))

    def turn(self, conversation_id: str, turn_id: str, user_id: str) -> TurnStream:
        return TurnStream(self, conversation_id, turn_id, user_id)

    def publish(self, delta: AnswerDelta) -> None:
        """Send one delta; a failure is logged and dropped, never raised into the answer's path."""
        try:
            value = self.codec.encode_record(SUBJECT, delta.to_json())
            self.producer.produce(self.topic, key=delta.conversation_id.encode(), value=value, on_delivery=_report)
            self.producer.poll(0)
        except (AgentlogError, BufferError, KafkaException) as error:
            log.warning("dropped an answer delta of turn %s: %s", delta.turn_id, error)

    def close(self, timeout: float = 5.0) -> None:
        self.producer.flush(timeout)


class TurnStream:
    """The TextSink (llm/streaming.py) of one turn: numbers its deltas and ends them with `finish`."""

    def __init__(self, publisher: DeltaPublisher, conversation_id: str, turn_id: str, user_id: str) -> None:
        self.publisher = publisher
        self.ids = (conversation_id, turn_id, user_id)
        self.seq = 0

    def _send(self, text: str, done: bool) -> None:
        self.publisher.publish(AnswerDelta(*self.ids, seq=self.seq, text=text, done=done))
        self.seq += 1

    def write(self, text: str) -> None:
        if text:
            self._send(text, False)

    def restart(self) -> None:
        self.seq = 0

    def finish(self) -> None:
        self._send("", True)


_lock = threading.Lock()
_shared: list[DeltaPublisher | None] = []


def shared_publisher(client_id: str) -> DeltaPublisher | None:
    """This process's publisher from its environment, for code that the loop does not hand one (a
    tool); None when no broker is configured, in which case nothing is streamed."""
    with _lock:
        if not _shared:
            try:
                _shared.append(DeltaPublisher(Settings.from_env(dict(os.environ)), Codec(), client_id))
            except (AgentlogError, KafkaException) as error:
                log.info("answer deltas are off in this process: %s", error)
                _shared.append(None)
        return _shared[0]
