"""The schema registry topic: each service publishes the schemas it owns and validates with what
the topic holds.

A record's key is `subject@version` and its value the self-contained schema. Publishing a schema
whose subject@version is already registered with different content is refused: a changed schema
needs a new version, so that consumers of the old one are never surprised.
"""

from __future__ import annotations

from collections.abc import Mapping
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


def bootstrap_codec(settings: Settings, service: str) -> Codec:
    """Publish the packaged schemas, then build the validator cache from the registry topic."""
    registry = SchemaRegistry(settings)
    registry.publish(packaged_schemas(), publisher=service)
    return Codec(registry.read_all())
