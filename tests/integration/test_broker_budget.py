"""The running broker holds to its memory budget: <= 300 MB PSS even once the whole heap is touched.

A short test cannot wait for Serial GC to touch every heap page (that takes minutes of load), so the
bound is measured directly: PSS outside the heap mapping now, plus the full heap.
"""

from __future__ import annotations

import uuid

import psutil
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from agentlog.kafka.broker import HEAP_MB, LocalBroker

MiB = 1024 * 1024
BUDGET = 300 * MiB


def _exercise_coordinators(bootstrap: str, rounds: int = 200) -> None:
    """Transactions with offsets in them: both internal topics exist and their coordinators work."""
    topic = f"memory-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(30)
    group = f"memory-{uuid.uuid4().hex[:8]}"
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"memory-{uuid.uuid4().hex[:8]}",
                         "linger.ms": 0})
    try:
        producer.init_transactions(30)
        for i in range(rounds):
            producer.begin_transaction()
            producer.produce(topic, b"x" * 512, key=str(i).encode())
            producer.send_offsets_to_transaction([TopicPartition(topic, i % 3, i)],
                                                 consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(30)
        committed = consumer.committed([TopicPartition(topic, p) for p in range(3)], timeout=30)
        assert max(tp.offset for tp in committed) == rounds - 1
    finally:
        consumer.close()


def test_broker_fits_its_memory_budget(kafka_broker: LocalBroker | None) -> None:
    if kafka_broker is None:
        pytest.skip("the suite runs against an external cluster")
    status = kafka_broker.status()
    assert status.pid is not None and status.bootstrap is not None
    _exercise_coordinators(status.bootstrap)

    topics = AdminClient({"bootstrap.servers": status.bootstrap}).list_topics(timeout=30).topics
    assert len(topics["__consumer_offsets"].partitions) == 6
    assert len(topics["__transaction_state"].partitions) == 6

    process = psutil.Process(status.pid)
    assert process.environ().get("MALLOC_ARENA_MAX") == "2"
    maps = process.memory_maps(grouped=False)
    heap = [m for m in maps if m.path == "[anon]" and m.size == HEAP_MB * MiB]
    assert len(heap) == 1, "the heap is one reservation of exactly -Xmx (Xms = Xmx)"
    outside_heap = sum(m.pss for m in maps) - heap[0].pss
    worst_case = outside_heap + HEAP_MB * MiB
    assert worst_case <= BUDGET, f"{outside_heap / MiB:.0f} MB outside the heap + {HEAP_MB} MB heap"
