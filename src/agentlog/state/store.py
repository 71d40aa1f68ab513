"""A LevelDB store holding per-conversation state and, in the same write batch, the offset of
each partition it has applied. The log is the source of truth; this is a cache of the fold."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import plyvel


def _state_prefix(partition: int) -> bytes:
    return b"s/%06d/" % partition


def _offset_key(topic: str, partition: int) -> bytes:
    return f"o/{topic}/{partition}".encode()


class PartitionStore:
    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Every new conversation's first event is a miss: a bloom filter answers most misses without
        # reading each level's tables (measured at 100k keys: 7.5 -> 4 us; more as the store grows).
        self._db = plyvel.DB(str(path), create_if_missing=True, bloom_filter_bits=10)

    def close(self) -> None:
        self._db.close()

    def applied_offset(self, topic: str, partition: int) -> int | None:
        raw = self._db.get(_offset_key(topic, partition))
        return None if raw is None else int(raw)

    def states(self, partition: int) -> Iterator[tuple[str, Any]]:
        prefix = _state_prefix(partition)
        for key, value in self._db.iterator(prefix=prefix):
            yield key[len(prefix) :].decode(), orjson.loads(value)

    def get(self, partition: int, key: str) -> Any | None:
        raw = self._db.get(_state_prefix(partition) + key.encode())
        return None if raw is None else orjson.loads(raw)

    def write(self, partition_states: Mapping[int, Mapping[str, Any]],
              offsets: Mapping[tuple[str, int], int]) -> None:
        """One atomic batch: the changed states and the offsets they correspond to."""
        with self._db.write_batch(transaction=True, sync=False) as batch:
            for partition, states in partition_states.items():
                prefix = _state_prefix(partition)
                for key, state in states.items():
                    if state is None:
                        batch.delete(prefix + key.encode())
                    else:
                        batch.put(prefix + key.encode(), orjson.dumps(state))
            for (topic, partition), offset in offsets.items():
                batch.put(_offset_key(topic, partition), str(offset).encode())
