"""Dead letters: a message no consumer could accept, kept with the reason and its original bytes."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Message

from agentlog.config import Settings
from agentlog.events.envelope import format_timestamp, utc_now
from agentlog.kafka.reader import read_range
from agentlog.kafka.topics import DEAD_LETTER_QUEUE

SUBJECT = "record.DeadLetter"


def _b64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode()


def dead_letter_record(message: Message, reason: str, service: str, message_type: str | None) -> dict[str, Any]:
    key = message.key()
    return {
        "reason": reason,
        "service": service,
        "sourceTopic": message.topic(),
        "sourcePartition": message.partition(),
        "sourceOffset": message.offset(),
        "originalKey": _b64(key if isinstance(key, bytes) or key is None else str(key).encode()),
        "originalValue": _b64(message.value()),
        "messageType": message_type,
        "failedAt": format_timestamp(utc_now()),
    }


@dataclass(frozen=True)
class DeadLetter:
    offset: int
    record: dict[str, Any]

    @property
    def original_value(self) -> bytes | None:
        raw = self.record.get("originalValue")
        return None if raw is None else base64.b64decode(raw)

    @property
    def original_key(self) -> bytes | None:
        raw = self.record.get("originalKey")
        return None if raw is None else base64.b64decode(raw)

    def original_text(self, limit: int = 200) -> str:
        value = self.original_value
        if value is None:
            return "(no value)"
        text = value.decode("utf-8", errors="replace")
        return text if len(text) <= limit else text[:limit] + "…"


def read_dead_letters(settings: Settings) -> Iterator[DeadLetter]:
    for message in read_range(settings, settings.topic(DEAD_LETTER_QUEUE)):
        value = message.value()
        offset = message.offset()
        if value is not None and offset is not None:
            yield DeadLetter(offset=offset, record=orjson.loads(value))
