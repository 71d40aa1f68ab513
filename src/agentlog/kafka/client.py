"""librdkafka configuration for every producer, consumer and admin client agentlog makes.

One place decides the settings that the exactly-once protocol depends on; AGENTLOG_RDKAFKA_* env
vars (e.g. AGENTLOG_RDKAFKA_SECURITY_PROTOCOL) are passed through for secured clusters.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Message

from agentlog.config import Settings


def base_config(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {"bootstrap.servers": settings.require_bootstrap()}
    config.update(settings.extra_kafka_config)
    return config


def producer_config(settings: Settings, client_id: str) -> dict[str, Any]:
    """An idempotent producer; murmur2 partitioning so Java and Python clients agree on partitions."""
    config = base_config(settings)
    config.update({
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 1,
        "partitioner": "murmur2_random",
    })
    return config


def transactional_producer_config(settings: Settings, transactional_id: str) -> dict[str, Any]:
    """A transactional producer whose id is stable across restarts of one service instance.

    retry.backoff.ms is low because a transaction begun right after a commit is refused with
    CONCURRENT_TRANSACTIONS until the markers are written; the default 100 ms back-off would add
    that much to every hop (see reference/components-measured.md, section 7).
    """
    config = producer_config(settings, transactional_id)
    config.update({
        "transactional.id": settings.topic(transactional_id),
        "transaction.timeout.ms": 30000,
        "retry.backoff.ms": 5,
        "retry.backoff.max.ms": 100,
    })
    return config


def consumer_config(settings: Settings, group: str | None, client_id: str) -> dict[str, Any]:
    """A consumer that sees only committed messages and never commits on its own."""
    config = base_config(settings)
    config.update({
        "client.id": client_id,
        "group.id": settings.group(group) if group else f"{client_id}-nogroup",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 10,
        "partition.assignment.strategy": "range",
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
    })
    return config


def poll_batch(consumer: Consumer, max_messages: int, timeout: float, linger: float = 0.0) -> list[Message]:
    """Wait for one message, then take what else arrives within `linger` seconds.

    `Consumer.consume(n, timeout)` waits until n messages or the timeout, which adds the whole
    timeout to every hop when traffic is light; this returns as soon as anything arrives. Callers
    pass a small `linger` only under load, where a few milliseconds buy much larger batches (and so
    fewer transactions, whose per-commit round trips dominate the cost).
    """
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first, *consumer.consume(max_messages - 1, linger)]
