"""The floor: one transactional consume-transform-produce hop, measured on the same broker.

A message goes to `hop-in`; a transformer reads it (read_committed), produces it to `hop-out` and
commits the consumed offset in the same transaction; a read_committed reader sees it. Round trips
are sequential, with the project's own client settings, so the figure is what a single hop of the
pipeline cannot beat (reference/components-measured.md, section 7). A turn crosses several hops.
"""

from __future__ import annotations

import threading
import time

from confluent_kafka import OFFSET_END, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from agentlog.config import Settings
from agentlog.errors import BrokerError
from agentlog.kafka.client import consumer_config, producer_config, transactional_producer_config
from agentlog.kafka.reader import watermarks
from agentlog.kafka.topics import admin_client


def _create_topics(settings: Settings, names: list[str]) -> None:
    admin = admin_client(settings)
    futures = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1) for name in names])
    for future in futures.values():
        try:
            future.result(30)
        except KafkaException as exc:
            if exc.args[0].code() != 36:  # TOPIC_ALREADY_EXISTS
                raise


class _Transformer(threading.Thread):
    def __init__(self, settings: Settings, source: str, target: str) -> None:
        super().__init__(name="bench-hop", daemon=True)
        self.target = target
        self.stopping = threading.Event()
        self.producer = Producer(transactional_producer_config(settings, "bench-hop"))
        self.consumer = Consumer(consumer_config(settings, "bench-hop", "bench-hop"))
        self.producer.init_transactions(30)
        self.consumer.subscribe([source])

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                message = self.consumer.poll(0.1)
                if message is None or message.error() is not None:
                    continue
                self.producer.begin_transaction()
                self.producer.produce(self.target, key=message.key(), value=message.value())
                topic, partition, offset = message.topic(), message.partition(), message.offset()
                assert topic is not None and partition is not None and offset is not None
                self.producer.send_offsets_to_transaction(
                    [TopicPartition(topic, partition, offset + 1)],
                    self.consumer.consumer_group_metadata(), 30)
                self.producer.commit_transaction(30)
        finally:
            self.consumer.close()


def measure_hop(settings: Settings, round_trips: int = 300, dropped: int = 20, timeout: float = 30.0) -> list[float]:
    """Seconds per round trip (produce to hop-in -> seen on hop-out), the first `dropped` left out
    (the first one also waits for the transformer to join its group)."""
    source, target = settings.topic("bench-hop-in"), settings.topic("bench-hop-out")
    _create_topics(settings, [source, target])
    producer = Producer(producer_config(settings, "bench-hop-client"))
    reader = Consumer(consumer_config(settings, None, "bench-hop-reader"))
    watermarks(reader, target, 0)  # waits for the new partition's leader
    reader.assign([TopicPartition(target, 0, OFFSET_END)])
    transformer = _Transformer(settings, source, target)
    transformer.start()
    try:
        samples: list[float] = []
        for index in range(round_trips + dropped):
            payload = str(index).encode()
            started = time.perf_counter()
            producer.produce(source, value=payload)
            producer.poll(0)
            deadline = started + timeout
            while True:
                message = reader.poll(0.05)
                if message is not None and message.error() is None and message.value() == payload:
                    break
                if time.perf_counter() > deadline:
                    raise BrokerError(f"hop round trip {index} did not come back within {timeout} s")
            if index >= dropped:
                samples.append(time.perf_counter() - started)
        return samples
    finally:
        transformer.stopping.set()
        transformer.join()
        producer.flush(10)
        reader.close()
