"""A cheaper decode for the few subjects the history folds, deciding exactly as `Codec.decode` does.

Validating an envelope with its generated JSON-Schema validator costs several microseconds, most of
a rebuild's time. Here each subject's envelope is checked by a msgspec type built from that same
schema (in C) and its payload by a validator compiled from the payload's schema alone. The msgspec
type is built to be at least as strict as the schema, never looser, and is built only from keywords
it translates exactly; anything it rejects (or a schema it cannot translate) goes through the codec,
which accepts or rejects it exactly as every other consumer does. So the fast check changes no
decision, only the cost of the common case. Both paths read the same `orjson.loads` values.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, cast

import fastjsonschema
import msgspec
import orjson

from agentlog.events.codec import Codec, Validator
from agentlog.services.projections.history import HistoryEvent

# Envelope keywords that add nothing to check, and the fields the fold reads.
_ANNOTATIONS = frozenset({"title", "description", "$schema", "definitions"})
_NEEDED = frozenset({"id", "kind", "type", "conversationId", "turnId", "userId", "timestamp", "payload"})
# fastjsonschema anchors `$` at the very end (\\Z), not before a final newline: the same rewrite here.
_DOLLAR = re.compile(r"(?<!\\)\$")


class Untranslatable(Exception):
    """The schema uses something the msgspec type would not check exactly: the subject keeps the codec."""


@dataclass(frozen=True)
class FastCheck:
    envelope: type[msgspec.Struct]
    payload: Validator


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _field_type(name: str, node: Mapping[str, Any]) -> Any:
    """The msgspec type of one envelope property: exactly its schema's constraints, or Untranslatable."""
    keys = set(node) - _ANNOTATIONS
    if name == "payload":
        return Any  # the payload's schema is all the envelope's schema says of it: its validator checks it
    if keys == {"const"} and type(node["const"]) in (str, int):
        return Literal[node["const"]]
    if keys == {"enum"} and node["enum"] and all(type(v) is str for v in node["enum"]):
        return Literal[tuple(node["enum"])]
    if node.get("type") == "string" and keys <= {"type", "pattern", "minLength", "maxLength"}:
        pattern = node.get("pattern")
        meta = msgspec.Meta(pattern=None if pattern is None else _DOLLAR.sub(r"\\Z", pattern),
                            min_length=node.get("minLength"), max_length=node.get("maxLength"))
        return Annotated[str, meta]
    if keys == {"type"} and isinstance(node["type"], list) and sorted(node["type"]) == ["null", "string"]:
        return str | None
    raise Untranslatable(f"{name}: {dict(node)}")


def fast_check(schema: Mapping[str, Any]) -> FastCheck:
    """The msgspec envelope type and the payload validator of one (subject, version) schema."""
    properties: Mapping[str, Any] = schema.get("properties", {})
    if (set(schema) - _ANNOTATIONS != {"type", "required", "additionalProperties", "properties"}
            or schema["type"] != "object" or schema["additionalProperties"] is not False
            or set(schema["required"]) != set(properties) or not set(properties) >= _NEEDED):
        raise Untranslatable("envelope: only a closed object whose properties are all required")
    fields = [(_snake(name), _field_type(name, node)) for name, node in properties.items()]
    envelope = msgspec.defstruct("HistoryRecord", fields, rename={_snake(n): n for n in properties},
                                 forbid_unknown_fields=True, frozen=True, gc=False)
    payload = {**properties["payload"], "definitions": schema.get("definitions", {})}
    if "$schema" in schema:
        payload["$schema"] = schema["$schema"]
    return FastCheck(envelope, fastjsonschema.compile(payload))


class HistoryDecoder:
    """Decodes messages of `subjects` (kind.Type) through their fast check, anything else through `codec`."""

    def __init__(self, codec: Codec, subjects: Collection[str]) -> None:
        self.codec = codec
        # Keyed by the envelope's own (kind, type, schemaVersion): a message whose key matches none (or
        # is not hashable) simply goes to the codec.
        self.checks: dict[tuple[str, str, int], FastCheck] = {}
        for subject, version in codec.subjects():
            schema = codec.schema(subject, version)
            if subject in subjects and schema is not None:
                kind, type_ = subject.split(".", 1)
                try:
                    self.checks[(kind, type_, version)] = fast_check(schema)
                except (Untranslatable, TypeError, ValueError):  # msgspec refused a field: no fast path
                    continue

    def decode(self, raw: bytes | None) -> HistoryEvent:
        """The event, or InvalidMessageError exactly when `Codec.decode` raises it."""
        try:
            data = orjson.loads(raw)  # type: ignore[arg-type]  # None raises JSONDecodeError
            check = self.checks[(data["kind"], data["type"], data["schemaVersion"])]
            record = msgspec.convert(data, check.envelope)
            check.payload(data["payload"])
            return cast(HistoryEvent, record)
        except (orjson.JSONDecodeError, TypeError, KeyError, msgspec.ValidationError,
                fastjsonschema.JsonSchemaException):
            # Not shown valid here: the codec decides, exactly as for every other consumer.
            return self.codec.decode(raw)
