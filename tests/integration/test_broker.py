"""The local broker really starts, serves a topic, stops, and comes back on the same data dir.

Set AGENTLOG_KAFKA_LIB_DIR to an existing jar dir to skip the maven download (~15 s cold).
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from agentlog.kafka.broker import LIB_DIR_ENV, LocalBroker

pytestmark = [
    pytest.mark.skipif(shutil.which("java") is None, reason="needs Java 17"),
    pytest.mark.skipif(
        shutil.which("mvn") is None and not os.environ.get(LIB_DIR_ENV),
        reason=f"needs mvn (or {LIB_DIR_ENV}) for the Kafka jars",
    ),
]


def _consume_one(bootstrap: str, topic: str, *, subscribe: bool, timeout: float = 30) -> Message:
    """Read the first message of partition 0, via a group subscription or a plain assignment."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        if subscribe:
            consumer.subscribe([topic])
        else:
            consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            return msg
        raise AssertionError(f"no message on {topic} within {timeout} s")
    finally:
        consumer.close()


def test_start_produce_consume_stop_restart(tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path / "kafka")
    topic = "agentlog-broker-test"
    try:
        bootstrap = broker.start(timeout=90)
        status = broker.status()
        assert status.running and status.reachable
        assert status.bootstrap == bootstrap == broker.running_bootstrap()
        assert status.version == "4.1.1"
        assert broker.start() == bootstrap  # idempotent: no second JVM
        assert broker.status().pid == status.pid

        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).values():
            future.result(timeout=30)

        errors: list[KafkaError] = []
        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        producer.produce(topic, b"hello", key=b"k", on_delivery=lambda err, _msg: err and errors.append(err))
        assert producer.flush(30) == 0
        assert errors == []
        assert _consume_one(bootstrap, topic, subscribe=True).value() == b"hello"

        assert broker.stop() is True
        down = broker.status()
        assert not down.running and not down.reachable and down.pid is None and down.bootstrap is None
        assert broker.running_bootstrap() is None
        assert broker.stop() is False  # nothing left to stop

        assert broker.start(timeout=90) == bootstrap  # same ports for the same data dir
        admin = AdminClient({"bootstrap.servers": bootstrap})
        assert topic in admin.list_topics(timeout=30).topics
        assert _consume_one(bootstrap, topic, subscribe=False).value() == b"hello"

        broker.wipe()  # `agentlog kafka reset`
        assert not broker.status().running and not broker.data_dir.exists()
    finally:
        broker.stop()
    assert not broker.status().running
