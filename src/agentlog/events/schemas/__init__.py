"""Packaged JSON Schemas: the envelope, shared definitions and one payload schema per subject."""

from __future__ import annotations

import copy
from functools import cache
from importlib import resources
from typing import Any

import orjson

from agentlog.events.envelope import SCHEMA_VERSION

_DEFINITIONS_REF = "definitions.json#/definitions/"


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(resources.files(__package__).joinpath(name).read_bytes())
    return data


def _localise_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: ("#/definitions/" + value[len(_DEFINITIONS_REF) :])
            if key == "$ref" and isinstance(value, str) and value.startswith(_DEFINITIONS_REF)
            else _localise_refs(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_localise_refs(item) for item in node]
    return node


@cache
def payload_subjects() -> tuple[str, ...]:
    """Every subject (kind.Type) agentlog owns, in a stable order."""
    names = [
        entry.name.removesuffix(".json")
        for entry in resources.files(__package__).iterdir()
        if entry.name.endswith(".json") and entry.name.split(".")[0] in ("command", "event", "record")
    ]
    return tuple(sorted(names))


def compose_schema(subject: str) -> dict[str, Any]:
    """A self-contained schema for one subject: the envelope pinned to the subject, its payload inside.

    Records (`record.*`) are not enveloped: their schema is the payload schema itself.
    """
    definitions = _load("definitions.json")["definitions"]
    payload = _localise_refs(_load(f"{subject}.json"))
    kind, type_ = subject.split(".", 1)
    if kind == "record":
        schema = dict(payload)
    else:
        schema = copy.deepcopy(_load("envelope.json"))
        schema["title"] = subject
        schema["description"] = payload.get("title", subject)
        properties = schema["properties"]
        properties["kind"] = {"const": kind}
        properties["type"] = {"const": type_}
        properties["schemaVersion"] = {"const": SCHEMA_VERSION}
        properties["payload"] = payload
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    schema["definitions"] = definitions
    return schema


def packaged_schemas() -> dict[tuple[str, int], dict[str, Any]]:
    """(subject, version) -> composed schema, for every subject shipped with this package."""
    return {(subject, SCHEMA_VERSION): compose_schema(subject) for subject in payload_subjects()}
