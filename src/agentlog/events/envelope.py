"""The envelope every command and event travels in, and deterministic ids.

Ids of messages a service derives from a cause are uuid5 over the cause's coordinates
(conversation, turn, step, attempt, message kind/type), never random: when a crash makes a
service produce the same logical message twice, both copies carry the same id and every
consumer drops the second.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

Kind = Literal["command", "event"]

ID_NAMESPACE = uuid.UUID("5b0c7c38-2f51-4d35-9f0c-6a1e3f3f7a11")
_NAMESPACE_BYTES = ID_NAMESPACE.bytes
SCHEMA_VERSION = 1
# A conversation's history: its questions, its answers, and the resets that forget them (the history
# projection and the router's memory both fold exactly these).
HISTORY_EVENT_TYPES = frozenset({"UserQueryReceived", "FinalAnswerSynthesized", "UserHistoryReset"})


def event_subjects(types: Iterable[str]) -> frozenset[str]:
    """The subjects (as in the subject header) of these event types."""
    return frozenset(f"event.{t}" for t in types)


def derive_id(*parts: object) -> str:
    """A stable id for the message identified by `parts`: uuid5(ID_NAMESPACE, "/".join(parts)), written
    out by hand because `uuid.UUID` construction costs more than the hash (ids are made on every event)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + "/".join(map(str, parts)).encode(),
                                    usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_id() -> str:
    """A random id, only for messages that start a causal chain (a user's command)."""
    return str(uuid.uuid4())


@functools.lru_cache(maxsize=4)
def format_timestamp(moment: datetime) -> str:
    """Cached: a batch's events share one `now`, and a turn's events are stamped with it several times."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_now() -> datetime:
    return datetime.now(UTC)


def parse_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text)


def timestamp_ms(text: str) -> int:
    """Epoch milliseconds of an envelope timestamp: the only clock decision functions may read."""
    return int(parse_timestamp(text).timestamp() * 1000)


@dataclass(frozen=True)
class Envelope:
    """One message. `subject` (kind.type) names its schema; `correlation_id` is the turn's root id."""

    id: str
    kind: Kind
    type: str
    conversation_id: str
    turn_id: str
    user_id: str
    timestamp: str
    source: str
    payload: Mapping[str, Any]
    causation_id: str | None = None
    correlation_id: str | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def subject(self) -> str:
        return f"{self.kind}.{self.type}"

    @property
    def timestamp_ms(self) -> int:
        return timestamp_ms(self.timestamp)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "type": self.type,
            "schemaVersion": self.schema_version,
            "conversationId": self.conversation_id,
            "turnId": self.turn_id,
            "userId": self.user_id,
            "timestamp": self.timestamp,
            "causationId": self.causation_id,
            "correlationId": self.correlation_id,
            "source": self.source,
            "payload": dict(self.payload),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Envelope:
        return cls(
            id=raw["id"],
            kind=raw["kind"],
            type=raw["type"],
            schema_version=raw["schemaVersion"],
            conversation_id=raw["conversationId"],
            turn_id=raw["turnId"],
            user_id=raw["userId"],
            timestamp=raw["timestamp"],
            causation_id=raw.get("causationId"),
            correlation_id=raw.get("correlationId"),
            source=raw["source"],
            payload=raw["payload"],
        )


def command(
    type_: str,
    *,
    conversation_id: str,
    turn_id: str,
    user_id: str,
    payload: Mapping[str, Any],
    source: str,
    message_id: str | None = None,
    now: datetime | None = None,
) -> Envelope:
    """A command that starts a causal chain (from a user, the CLI or the gateway)."""
    return Envelope(
        id=message_id or new_id(),
        kind="command",
        type=type_,
        conversation_id=conversation_id,
        turn_id=turn_id,
        user_id=user_id,
        timestamp=format_timestamp(now or utc_now()),
        source=source,
        payload=payload,
        correlation_id=turn_id,
    )


def caused_by(
    cause: Envelope,
    kind: Kind,
    type_: str,
    payload: Mapping[str, Any],
    *,
    source: str,
    now: datetime,
    id_parts: tuple[object, ...] = (),
) -> Envelope:
    """A message produced because of `cause`: same conversation, turn and user; id derived.

    The id is derived from the turn, `id_parts` and the kind/type, so reproducing the same logical
    message after a crash yields the same id.
    """
    return Envelope(
        id=derive_id(cause.conversation_id, cause.turn_id, *id_parts, kind, type_),
        kind=kind,
        type=type_,
        conversation_id=cause.conversation_id,
        turn_id=cause.turn_id,
        user_id=cause.user_id,
        timestamp=format_timestamp(now),
        source=source,
        payload=payload,
        causation_id=cause.id,
        correlation_id=cause.correlation_id or cause.turn_id,
    )
