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

# librdkafka retires the bootstrap connection once metadata names the broker, failing a request still in
# flight on it, and then waits half of reconnect.backoff.ms (100 ms by default) before it connects again:
# a replay's reader starts up to 45 ms sooner with a short back-off (measured).
_QUICK_START = {"reconnect.backoff.ms": 10}
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
        for partition, (start, end) in sorted(_ranges(consumer, topic, starts, ends, timeout, partitions).items()):
            for batch in _consume_ranges(consumer, topic, {partition: (start, end)}, 500, timeout):
                yield from batch
    finally:
        consumer.close()


def read_batches(
    settings: Settings,
    topic: str,
    batch_size: int = 10_000,
    timeout: float = 30.0,
    partitions: Iterable[int] | None = None,
) -> Iterator[list[Message]]:
    """Every message of `topic` (only of `partitions` when set) up to the high watermarks now, in batches
    read from all partitions at once.

    For a reader that replays a whole topic (a projection rebuild): librdkafka fetches every partition
    in parallel while the caller works, instead of one partition after another. Each partition's
    messages come in offset order; a batch interleaves partitions."""
    consumer = Consumer({**consumer_config(settings, None, "agentlog-reader"), **_QUICK_START})
    try:
        yield from _consume_ranges(consumer, topic, _ranges(consumer, topic, None, None, timeout, partitions),
                                   batch_size, timeout)
    finally:
        consumer.close()


def topic_partitions(settings: Settings, topic: str, timeout: float = 30.0) -> list[int]:
    """The partitions of `topic` (a physical name), to split a replay among readers."""
    consumer = Consumer({**consumer_config(settings, None, "agentlog-reader"), **_QUICK_START})
    try:
        return _partitions(consumer, topic, timeout)
    finally:
        consumer.close()


def _partitions(consumer: Consumer, topic: str, timeout: float) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise BrokerError(f"topic {topic} does not exist")
    return sorted(metadata.partitions)


def _ranges(
    consumer: Consumer,
    topic: str,
    starts: Mapping[int, int] | None,
    ends: Mapping[int, int] | None,
    timeout: float,
    partitions: Iterable[int] | None,
) -> dict[int, tuple[int, int]]:
    """(start, end) per partition that has anything to read."""
    existing = set(_partitions(consumer, topic, timeout))
    wanted = existing if partitions is None else set(partitions) & existing
    ranges: dict[int, tuple[int, int]] = {}
    for partition in wanted:
        low, high = watermarks(consumer, topic, partition, timeout)
        end = high if ends is None else ends.get(partition, high)
        start = max(low, (starts or {}).get(partition, OFFSET_BEGINNING))
        if start == OFFSET_BEGINNING:
            start = low
        if start < end:
            ranges[partition] = (start, end)
    return ranges


def _consume_ranges(
    consumer: Consumer, topic: str, ranges: Mapping[int, tuple[int, int]], batch_size: int, timeout: float
) -> Iterator[list[Message]]:
    """Batches of the messages in `ranges` ((start, end) per partition) until every partition reaches its end."""
    if not ranges:
        return
    consumer.assign([TopicPartition(topic, partition, start) for partition, (start, _) in ranges.items()])
    ends = {partition: end for partition, (_, end) in ranges.items()}
    nexts = {partition: start for partition, (start, _) in ranges.items()}
    deadline = time.monotonic() + timeout
    while ends:
        if time.monotonic() > deadline:
            raise BrokerError(f"timed out reading {topic} partitions {sorted(ends)} up to {ends}")
        # consume() waits out its timeout unless the batch fills: keep it short, the loop re-polls, and ask
        # for no more than can be left (offsets to the ends), so the last batch does not wait at all.
        wanted = min(batch_size, sum(ends[partition] - nexts[partition] for partition in ends))
        messages = consumer.consume(wanted, 0.05)
        batch: list[Message] = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise BrokerError(f"reading {topic}[{message.partition()}]: {error}")
            partition, offset = message.partition(), message.offset()
            assert partition is not None and offset is not None
            if offset < ends.get(partition, -1):
                batch.append(message)
        if batch:
            yield batch
        if messages:
            deadline = time.monotonic() + timeout
        # Transaction markers occupy offsets too: a partition is done once its position passes the end.
        for tp in consumer.position([TopicPartition(topic, partition) for partition in ends]):
            nexts[tp.partition] = max(nexts[tp.partition], tp.offset)
            if tp.offset >= ends[tp.partition]:
                del ends[tp.partition]
    consumer.unassign()
