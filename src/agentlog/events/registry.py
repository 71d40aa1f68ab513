"""The schema registry topic: each service publishes the schemas it owns and validates with what
the topic holds.

A record's key is `subject@version` and its value the self-contained schema. Publishing a schema
whose subject@version is already registered with different content is refused: a changed schema
needs a new version, so that consumers of the old one are never surprised.

The same topic carries the tool catalogue under subject `catalogue.tools`: one record per tool, key
`catalogue.tools/<tool>`, value {subject, tool, entry: {name, description, parameters}, publishedBy,
publishedAt}. Tool workers publish the tools they host at start-up (a changed tool simply replaces
its entry: compaction keeps the latest); planners read them with `read_catalogue`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from confluent_kafka import Producer

from agentlog.config import Settings
from agentlog.errors import IncompatibleSchemaError
from agentlog.events.codec import Codec
from agentlog.events.envelope import format_timestamp, utc_now
from agentlog.events.schemas import packaged_schemas
from agentlog.kafka.client import producer_config
from agentlog.kafka.reader import read_range
from agentlog.kafka.topics import SCHEMA_REGISTRY

SchemaKey = tuple[str, int]
CATALOGUE_SUBJECT = "catalogue.tools"


def _canonical(schema: Mapping[str, Any]) -> bytes:
    return orjson.dumps(dict(schema), option=orjson.OPT_SORT_KEYS)


class SchemaRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.topic(SCHEMA_REGISTRY)

    def read_all(self) -> dict[SchemaKey, dict[str, Any]]:
        """The latest schema per subject@version in the topic (it is compacted; the last write wins)."""
        found: dict[SchemaKey, dict[str, Any]] = {}
        for message in read_range(self.settings, self.topic):
            value = message.value()
            if value is None:
                continue
            record = orjson.loads(value)
            if record.get("subject") == CATALOGUE_SUBJECT:
                continue
            found[(record["subject"], int(record["version"]))] = record["schema"]
        return found

    def publish(self, schemas: Mapping[SchemaKey, Mapping[str, Any]], publisher: str) -> list[SchemaKey]:
        """Register `schemas`; identical ones already there are skipped, conflicting ones refused."""
        existing = self.read_all()
        for key, schema in schemas.items():
            if key in existing and _canonical(existing[key]) != _canonical(schema):
                subject, version = key
                raise IncompatibleSchemaError(
                    f"schema {subject}@{version} is already registered with different content; "
                    f"publish the change as version {version + 1} instead"
                )
        new = [key for key in schemas if key not in existing]
        if new:
            producer = Producer(producer_config(self.settings, f"{publisher}-schemas"))
            for subject, version in new:
                record = {"subject": subject, "version": version, "schema": dict(schemas[(subject, version)]),
                          "publishedBy": publisher, "publishedAt": format_timestamp(utc_now())}
                producer.produce(self.topic, key=f"{subject}@{version}", value=orjson.dumps(record))
            remaining = producer.flush(30)
            if remaining:
                raise IncompatibleSchemaError(f"{remaining} schema records were not acknowledged by Kafka")
        return new


def read_catalogue(settings: Settings) -> list[dict[str, Any]]:
    """The latest catalogue entry of every tool any worker has published, sorted by tool name."""
    entries: dict[str, dict[str, Any]] = {}
    for message in read_range(settings, settings.topic(SCHEMA_REGISTRY)):
        value = message.value()
        record = orjson.loads(value) if value is not None else None
        if isinstance(record, dict) and record.get("subject") == CATALOGUE_SUBJECT:
            entries[str(record["tool"])] = dict(record["entry"])
    return [entries[name] for name in sorted(entries)]


def publish_catalogue(settings: Settings, entries: Sequence[Mapping[str, Any]], publisher: str) -> list[str]:
    """Publish the entries that differ from what the topic holds; returns the tool names published."""
    existing = {str(e["name"]): _canonical(e) for e in read_catalogue(settings)}
    changed = [e for e in entries if existing.get(str(e["name"])) != _canonical(e)]
    if changed:
        producer = Producer(producer_config(settings, f"{publisher}-catalogue"))
        for entry in changed:
            record = {"subject": CATALOGUE_SUBJECT, "tool": entry["name"], "entry": dict(entry),
                      "publishedBy": publisher, "publishedAt": format_timestamp(utc_now())}
            producer.produce(settings.topic(SCHEMA_REGISTRY), key=f"{CATALOGUE_SUBJECT}/{entry['name']}",
                             value=orjson.dumps(record))
        remaining = producer.flush(30)
        if remaining:
            raise IncompatibleSchemaError(f"{remaining} catalogue records were not acknowledged by Kafka")
    return [str(e["name"]) for e in changed]


def bootstrap_codec(settings: Settings, service: str) -> Codec:
    """Publish the packaged schemas, then build the validator cache from the registry topic."""
    registry = SchemaRegistry(settings)
    registry.publish(packaged_schemas(), publisher=service)
    return Codec(registry.read_all())
