"""A cheaper decode for the few subjects the history folds, deciding exactly as `Codec.decode` does.

Validating an envelope with its generated JSON-Schema validator costs several microseconds, most of
a rebuild's time. Here each subject's envelope is checked by a msgspec type built from that same
schema (in C), and its payload by a second msgspec type (a validator compiled from the payload's
schema alone when that one cannot be translated; 0.4 instead of 1.2 us). The msgspec types are built
to be at least as strict as the schema, never looser, and only from keywords they translate exactly;
anything they reject (or a schema they cannot translate) goes through the codec, which accepts or
rejects it exactly as every other consumer does. So the fast check changes no decision, only the
cost of the common case. Both paths read the same `orjson.loads` values.
"""

from __future__ import annotations

import functools
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


# JSON Schema bounds of numbers as msgspec constraints.
_BOUNDS = {"minimum": "ge", "maximum": "le", "exclusiveMinimum": "gt", "exclusiveMaximum": "lt"}
_MAX_DEPTH = 8


def _value_type(name: str, node: Mapping[str, Any], definitions: Mapping[str, Any], depth: int = 0) -> Any:
    """The msgspec type of one schema node: exactly its constraints (or stricter), or Untranslatable."""
    keys = set(node) - _ANNOTATIONS
    ref = node.get("$ref")
    if depth > _MAX_DEPTH:
        raise Untranslatable(f"{name}: nested too deep")
    if not keys:
        return Any
    if keys == {"$ref"} and isinstance(ref, str) and ref.startswith("#/definitions/"):
        target = definitions.get(ref.removeprefix("#/definitions/"))
        if isinstance(target, Mapping):
            return _value_type(name, target, definitions, depth + 1)
    if keys == {"const"} and type(node["const"]) in (str, int):
        return Literal[node["const"]]
    if keys == {"enum"} and node["enum"] and all(type(v) is str for v in node["enum"]):
        return Literal[tuple(node["enum"])]
    types = node.get("type")
    if types == "object":
        return _object_type(name, node, definitions, depth)
    if isinstance(types, list) and len(types) == 2 and "null" in types and types[0] != types[1]:
        return _scalar_type(name, next(t for t in types if t != "null"), node, keys) | None
    if isinstance(types, str):
        return _scalar_type(name, types, node, keys)
    raise Untranslatable(f"{name}: {dict(node)}")


def _scalar_type(name: str, type_: str, node: Mapping[str, Any], keys: set[str]) -> Any:
    if type_ == "string" and keys <= {"type", "pattern", "minLength", "maxLength"}:
        pattern = node.get("pattern")
        meta = msgspec.Meta(pattern=None if pattern is None else _DOLLAR.sub(r"\\Z", pattern),
                            min_length=node.get("minLength"), max_length=node.get("maxLength"))
        return Annotated[str, meta]
    if type_ == "boolean" and keys == {"type"}:
        return bool
    bounds = {_BOUNDS[k]: node[k] for k in keys & _BOUNDS.keys()}
    if type_ in ("integer", "number") and keys <= {"type", *_BOUNDS} and all(type(v) is int for v in bounds.values()):
        # msgspec checks a number's bounds on it as a float: exact for every integer only against 0
        # (rounding keeps the sign); an integer stays an int (and 1.0 is refused: stricter, never looser).
        if type_ == "number" and any(bounds.values()):
            raise Untranslatable(f"{name}: number bounds other than 0")
        scalar = int if type_ == "integer" else float
        return Annotated[scalar, msgspec.Meta(**bounds)] if bounds else scalar
    raise Untranslatable(f"{name}: {dict(node)}")


def _object_type(name: str, node: Mapping[str, Any], definitions: Mapping[str, Any], depth: int) -> Any:
    """A closed object: a struct that forbids other keys; the properties it does not require may be absent."""
    properties, required = node.get("properties", {}), node.get("required", [])
    if (set(node) - _ANNOTATIONS - {"type", "required", "additionalProperties", "properties"}
            or node.get("additionalProperties") is not False or not isinstance(properties, Mapping)
            or not isinstance(required, list) or not set(required) <= set(properties)):
        raise Untranslatable(f"{name}: only closed objects")
    fields: list[Any] = []
    for n, (key, child) in enumerate(properties.items()):
        value = _value_type(f"{name}.{key}", child, definitions, depth + 1)
        if key in required:
            fields.append((f"f{n}", value))
        else:
            fields.append((f"f{n}", value if value is Any else value | msgspec.UnsetType, msgspec.UNSET))
    return msgspec.defstruct(f"Checked_{_snake(name)}", fields, rename={f"f{n}": key for n, key in enumerate(properties)},
                             forbid_unknown_fields=True, frozen=True, gc=False, kw_only=True)


def fast_check(schema: Mapping[str, Any]) -> FastCheck:
    """The msgspec envelope type and the payload check of one (subject, version) schema."""
    properties: Mapping[str, Any] = schema.get("properties", {})
    if (set(schema) - _ANNOTATIONS != {"type", "required", "additionalProperties", "properties"}
            or schema["type"] != "object" or schema["additionalProperties"] is not False
            or set(schema["required"]) != set(properties) or not set(properties) >= _NEEDED):
        raise Untranslatable("envelope: only a closed object whose properties are all required")
    definitions = schema.get("definitions", {})
    # The payload stays the parsed dict the fold reads; its own struct only checks it.
    fields = [(_snake(name), Any if name == "payload" else _value_type(name, node, definitions))
              for name, node in properties.items()]
    envelope = msgspec.defstruct("HistoryRecord", fields, rename={_snake(n): n for n in properties},
                                 forbid_unknown_fields=True, frozen=True, gc=False)
    try:
        checked = _value_type("payload", properties["payload"], definitions)
        return FastCheck(envelope, functools.partial(msgspec.convert, type=checked))
    except Untranslatable:
        payload = {**properties["payload"], "definitions": definitions}
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
