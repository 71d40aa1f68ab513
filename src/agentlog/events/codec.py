"""Bytes <-> Envelope with validation on both sides.

A producer never sends a message its schema rejects (encode raises); a consumer turns any bad
message into an InvalidMessageError whose reason goes to the dead-letter queue.

Every message a service produces also names its subject in the `agentlog-subject` header, so a
consumer that folds only a few types skips the others without decoding or validating them
(`subject_header`). The header is a hint from our own producers, never trusted for content: a
message that is not skipped is always decoded and validated.

The router also marks the events it writes after an inline turn's PlanGenerated with that turn's id
(`agentlog-inline-turn`, router/inline.py): a fold that has recorded the turn as run inline knows those
events change nothing and skips them unread (state/fold.py). They were validated when the router
encoded them, in the same transaction as the PlanGenerated every reader did validate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import fastjsonschema
import orjson

from agentlog.errors import InvalidMessageError
from agentlog.events.envelope import Envelope
from agentlog.events.schemas import packaged_schemas

Validator = Callable[[Any], Any]
IncomingHeaders = dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]] | None

SUBJECT_HEADER = "agentlog-subject"
INLINE_TURN_HEADER = "agentlog-inline-turn"


def header(headers: IncomingHeaders, name: str) -> str | None:
    """The value of header `name` (the first one), or None when the message has none."""
    pairs = headers.items() if isinstance(headers, dict) else headers or ()
    for key, value in pairs:
        if key == name and value is not None:
            return value.decode(errors="replace") if isinstance(value, bytes) else value
    return None


def subject_header(headers: IncomingHeaders) -> str | None:
    """The subject (kind.Type) a producer put in the message's headers; None when it did not."""
    return header(headers, SUBJECT_HEADER)


def compile_validators(schemas: Mapping[tuple[str, int], Mapping[str, Any]]) -> dict[tuple[str, int], Validator]:
    return {key: fastjsonschema.compile(dict(schema)) for key, schema in schemas.items()}


class Codec:
    """Validates against a fixed set of (subject, version) schemas, usually read from the registry."""

    def __init__(self, schemas: Mapping[tuple[str, int], Mapping[str, Any]] | None = None) -> None:
        self._schemas = dict(packaged_schemas() if schemas is None else schemas)
        self._validators = compile_validators(self._schemas)

    def subjects(self) -> set[tuple[str, int]]:
        return set(self._validators)

    def schema(self, subject: str, version: int) -> Mapping[str, Any] | None:
        """The schema this codec checks (subject, version) against; None when it knows none."""
        return self._schemas.get((subject, version))

    def _validate(self, subject: str, version: Any, data: Any) -> None:
        validator = self._validators.get((subject, version)) if isinstance(version, int) else None
        if validator is None:
            known = sorted(v for s, v in self._validators if s == subject)
            if not known:
                raise InvalidMessageError(f"unknown message type {subject!r}", message_type=subject)
            raise InvalidMessageError(
                f"{subject} has no schema version {version!r} (known: {known})", message_type=subject
            )
        try:
            validator(data)
        except fastjsonschema.JsonSchemaException as error:
            raise InvalidMessageError(
                f"{subject} v{version} violates its schema: {error}", message_type=subject
            ) from error

    def encode(self, envelope: Envelope) -> bytes:
        """Validate and serialise; raises InvalidMessageError instead of sending a bad message."""
        data = envelope.to_json()
        self._validate(envelope.subject, envelope.schema_version, data)
        return orjson.dumps(data)

    def decode(self, raw: bytes | None) -> Envelope:
        data = _json_object(raw)
        kind, type_ = data.get("kind"), data.get("type")
        if not isinstance(kind, str) or not isinstance(type_, str):
            raise InvalidMessageError("missing envelope fields 'kind' and 'type'")
        self._validate(f"{kind}.{type_}", data.get("schemaVersion"), data)
        return Envelope.from_json(data)

    def encode_record(self, subject: str, record: Mapping[str, Any]) -> bytes:
        """Validate and serialise a non-enveloped record (e.g. a dead letter)."""
        self._validate(subject, 1, dict(record))
        return orjson.dumps(dict(record))

    def decode_record(self, subject: str, raw: bytes | None) -> dict[str, Any]:
        """Parse and validate a non-enveloped record; raises InvalidMessageError like `decode`."""
        data = _json_object(raw)
        self._validate(subject, 1, data)
        return data


def _json_object(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        raise InvalidMessageError("empty message (no value)")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidMessageError(f"not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise InvalidMessageError(f"expected a JSON object, got {type(data).__name__}")
    return data
