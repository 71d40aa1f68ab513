"""Topics, the schema registry topic, validation and the dead-letter queue, on the real broker."""

from __future__ import annotations

import base64

import orjson
import pytest
from confluent_kafka import Producer

from agentlog.config import Settings
from agentlog.errors import IncompatibleSchemaError, InvalidMessageError
from agentlog.events.codec import Codec
from agentlog.events.envelope import command
from agentlog.events.registry import SchemaRegistry, bootstrap_codec
from agentlog.events.schemas import packaged_schemas
from agentlog.kafka.client import producer_config
from agentlog.kafka.dlq import read_dead_letters
from agentlog.kafka.topics import TOPICS, USER_COMMANDS, describe_topics, ensure_topics
from helpers import Stack, wait_for


@pytest.fixture
def settings(agentlog_env: dict[str, str]) -> Settings:
    return Settings.from_env(agentlog_env)


def test_topics_are_created_once_with_the_documented_configs(settings: Settings) -> None:
    created = ensure_topics(settings)
    assert sorted(created) == sorted(settings.topic(s.name) for s in TOPICS)
    assert ensure_topics(settings) == []
    described = describe_topics(settings)
    for spec in TOPICS:
        info = described[settings.topic(spec.name)]
        assert info["partitions"] == spec.partitions
        config = info["config"]
        assert isinstance(config, dict)
        for key, value in spec.config.items():
            assert config[key] == value, (spec.name, key)
    events = described[settings.topic("conversation-events")]["config"]
    assert isinstance(events, dict)
    assert events["retention.ms"] == "-1" and events["cleanup.policy"] == "delete"
    registry = described[settings.topic("schema-registry")]["config"]
    assert isinstance(registry, dict) and registry["cleanup.policy"] == "compact"


def test_schemas_round_trip_through_the_registry_topic(settings: Settings) -> None:
    ensure_topics(settings)
    codec = bootstrap_codec(settings, "test")
    stored = SchemaRegistry(settings).read_all()
    assert stored == packaged_schemas()
    assert codec.subjects() == set(packaged_schemas())
    # Publishing the same schemas again is a no-op, not a conflict.
    assert SchemaRegistry(settings).publish(packaged_schemas(), publisher="again") == []


def test_an_incompatible_schema_under_an_existing_version_is_refused(settings: Settings) -> None:
    ensure_topics(settings)
    registry = SchemaRegistry(settings)
    registry.publish(packaged_schemas(), publisher="test")
    changed = dict(packaged_schemas()[("event.PlanCompleted", 1)])
    changed["required"] = [*changed["required"], "extra"]
    with pytest.raises(IncompatibleSchemaError, match=r"event.PlanCompleted@1 .* version 2"):
        registry.publish({("event.PlanCompleted", 1): changed}, publisher="test")
    assert registry.publish({("event.PlanCompleted", 2): changed}, publisher="test") == [("event.PlanCompleted", 2)]
    assert SchemaRegistry(settings).read_all()[("event.PlanCompleted", 1)] == packaged_schemas()[("event.PlanCompleted", 1)]


def test_a_producer_refuses_an_invalid_message(settings: Settings) -> None:
    codec = Codec()
    bad = command("UserQueryReceived", conversation_id="c1", turn_id="t1", user_id="u",
                  payload={"userInput": ""}, source="test")
    with pytest.raises(InvalidMessageError, match=r"command\.UserQueryReceived v1 violates its schema"):
        codec.encode(bad)
    unknown = command("Nonsense", conversation_id="c1", turn_id="t1", user_id="u", payload={}, source="test")
    with pytest.raises(InvalidMessageError, match=r"unknown message type .command\.Nonsense."):
        codec.encode(unknown)


def test_bad_messages_go_to_the_dead_letter_queue_and_the_pipeline_keeps_going(agentlog_env: dict[str, str]) -> None:
    stack = Stack(agentlog_env)
    try:
        stack.start("router")
        producer = Producer(producer_config(stack.settings, "test-raw"))
        topic = stack.settings.topic(USER_COMMANDS)
        malformed = b"{not json"
        violating = orjson.dumps({**command("UserQueryReceived", conversation_id="dlq", turn_id="t0", user_id="u",
                                            payload={"userInput": "x"}, source="test").to_json(),
                                  "payload": {"userInput": 42}})
        producer.produce(topic, key=b"dlq", value=malformed)
        producer.produce(topic, key=b"dlq", value=violating)
        producer.flush(10)
        sent = stack.client.question("dlq", "u", "What is 1+1?")
        events = wait_for(lambda: [e for e in stack.conversation_log("dlq") if e.turn_id == sent.turn_id
                                   and e.type == "PlanGenerated"], timeout=60, what="the valid question's plan")
        assert events[0].payload["plan"]["steps"][0]["tool"] == "calculateMath"
        letters = wait_for(lambda: list(read_dead_letters(stack.settings)), what="dead letters")
        assert len(letters) == 2
        by_value = {letter.original_value: letter.record for letter in letters}
        assert "not valid JSON" in by_value[malformed]["reason"]
        assert "violates its schema" in by_value[violating]["reason"]
        assert by_value[violating]["messageType"] == "command.UserQueryReceived"
        for record in by_value.values():
            assert record["sourceTopic"] == topic and record["service"] == "router"
            assert base64.b64decode(record["originalKey"]) == b"dlq"
        stack.assert_alive()
    finally:
        stack.stop()
