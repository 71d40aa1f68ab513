"""Consumer lag of each service's group: how far its committed offsets trail the high watermarks.

Lag counts offsets, and a transaction's commit marker occupies one: a partition that transactional
producers wrote to shows a lag of 1 at rest (the group commits the offset after the last *message*,
the watermark sits after the marker). user-commands, written without transactions, shows 0.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, IsolationLevel, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from agentlog.config import Settings
from agentlog.kafka.client import consumer_config
from agentlog.kafka.reader import watermarks
from agentlog.kafka.topics import admin_client


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None
    high: int
    lag: int


def service_groups() -> dict[str, tuple[str, ...]]:
    """Each transactional service's group (its name) and the logical topics it consumes."""
    from agentlog.services.runtime import SERVICES

    return {name: spec.topics for name, spec in SERVICES.items() if spec.run is None}


class LagReader:
    """Reads committed offsets (admin API) and watermarks (a group-less consumer) on demand."""

    def __init__(self, settings: Settings, groups: Mapping[str, Sequence[str]] | None = None,
                 timeout: float = 10.0) -> None:
        self.settings = settings
        self.groups = dict(service_groups() if groups is None else groups)
        self.timeout = timeout
        self.admin: AdminClient = admin_client(settings)
        self.consumer = Consumer(consumer_config(settings, None, "agentlog-lag"))
        self._partitions: dict[str, list[int]] = {}

    def _partitions_of(self, topic: str) -> list[int]:
        if topic not in self._partitions:
            metadata = self.consumer.list_topics(topic, timeout=self.timeout).topics.get(topic)
            self._partitions[topic] = sorted(metadata.partitions) if metadata is not None else []
        return self._partitions[topic]

    def _committed(self, group: str) -> dict[tuple[str, int], int]:
        request = [ConsumerGroupTopicPartitions(self.settings.group(group))]
        futures = self.admin.list_consumer_group_offsets(request, request_timeout=self.timeout)
        result = next(iter(futures.values())).result()
        return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions or [] if tp.offset >= 0}

    def _watermarks(self, partitions: Collection[tuple[str, int]]) -> dict[tuple[str, int], tuple[int, int]]:
        """Low and high watermark of every partition in two ListOffsets requests (one per partition and
        bound would be ~50 requests a sample); a partition the batch could not answer (a new one whose
        leader is still being elected) is asked on its own, with retries."""
        found: dict[tuple[str, int], list[int]] = {key: [-1, -1] for key in partitions}
        bounds = (OffsetSpec.earliest(), OffsetSpec.latest())  # type: ignore[no-untyped-call]
        for index, spec in enumerate(bounds):
            futures = self.admin.list_offsets({TopicPartition(t, p): spec for t, p in partitions},
                                              isolation_level=IsolationLevel.READ_UNCOMMITTED,
                                              request_timeout=self.timeout)
            for tp, future in futures.items():
                try:
                    found[(tp.topic, tp.partition)][index] = int(future.result().offset)
                except KafkaException:
                    continue
        return {key: (low, high) if low >= 0 and high >= 0 else watermarks(self.consumer, *key, self.timeout)
                for key, (low, high) in found.items()}

    def read(self) -> list[PartitionLag]:
        lags: list[PartitionLag] = []
        wanted = {(self.settings.topic(logical), partition) for topics in self.groups.values() for logical in topics
                  for partition in self._partitions_of(self.settings.topic(logical))}
        highs = self._watermarks(wanted) if wanted else {}
        for group, topics in self.groups.items():
            committed = self._committed(group)
            for logical in topics:
                topic = self.settings.topic(logical)
                for partition in self._partitions_of(topic):
                    low, high = highs[(topic, partition)]
                    position = committed.get((topic, partition))
                    lag = high - (low if position is None else position)
                    lags.append(PartitionLag(group, logical, partition, position, high, max(0, lag)))
        return lags

    def close(self) -> None:
        self.consumer.close()


def total_by_group(lags: Sequence[PartitionLag]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for lag in lags:
        totals[lag.group] = totals.get(lag.group, 0) + lag.lag
    return totals

