"""Read a topic's partitions from a start offset up to their current end, outside any group.

Used wherever a service needs "everything so far": the schema registry, state recovery,
the DLQ listing. It stops at the high watermark seen when it starts, so it always ends.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from agentlog.config import Settings
from agentlog.errors import BrokerError
from agentlog.kafka.client import consumer_config

_NOT_READY = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                        KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TIMED_OUT})


def watermarks(consumer: Consumer, topic: str, partition: int, timeout: float = 30.0) -> tuple[int, int]:
    """Low and high watermark, retrying while a new partition's leader is still being elected."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            return int(low), int(high)
        except KafkaException as exc:
            error = exc.args[0]
            transient = error.retriable() or error.code() in _NOT_READY
            if not transient or time.monotonic() > deadline:
                raise BrokerError(f"cannot read the offsets of {topic}[{partition}]: {error}") from exc
            time.sleep(0.05)


def read_range(
    settings: Settings,
    topic: str,
    starts: Mapping[int, int] | None = None,
    ends: Mapping[int, int] | None = None,
    timeout: float = 30.0,
    partitions: Iterable[int] | None = None,
) -> Iterator[Message]:
    """Yield messages of `topic` (a physical name) from `starts` (default: beginning) up to `ends`
    (default: the high watermarks now), partition by partition in offset order; only the given
    `partitions` when set (`starts` and `ends` do not narrow the partitions read)."""
    consumer = Consumer(consumer_config(settings, None, "agentlog-reader"))
    try:
        metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise BrokerError(f"topic {topic} does not exist")
        wanted = set(metadata.partitions) if partitions is None else set(partitions) & set(metadata.partitions)
        for partition in sorted(wanted):
            low, high = watermarks(consumer, topic, partition, timeout)
            end = high if ends is None else ends.get(partition, high)
            start = max(low, (starts or {}).get(partition, OFFSET_BEGINNING))
            if start == OFFSET_BEGINNING:
                start = low
            if start >= end:
                continue
            yield from _read_partition(consumer, TopicPartition(topic, partition, start), end, timeout)
    finally:
        consumer.close()


def _read_partition(consumer: Consumer, tp: TopicPartition, end: int, timeout: float) -> Iterator[Message]:
    consumer.assign([tp])
    deadline = time.monotonic() + timeout
    position = tp.offset
    while position < end:
        if time.monotonic() > deadline:
            raise BrokerError(f"timed out reading {tp.topic}[{tp.partition}] at {position} of {end}")
        # consume() waits out its timeout unless the batch fills: keep it short, the loop re-polls.
        for message in consumer.consume(500, 0.05):
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise BrokerError(f"reading {tp.topic}[{tp.partition}]: {error}")
            offset = message.offset()
            assert offset is not None
            # Transaction markers occupy offsets too: the position jumps past them.
            position = offset + 1
            deadline = time.monotonic() + timeout
            if offset < end:
                yield message
        committed_end = consumer.position([TopicPartition(tp.topic, tp.partition)])[0].offset
        if committed_end >= end:
            break
    consumer.unassign()
