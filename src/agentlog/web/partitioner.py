"""Which partition a key lands on, computed the way the producers place it.

Every producer uses librdkafka's `murmur2_random` partitioner, which for a non-null key is Java's
default: `toPositive(Utils.murmur2(key)) % partitions`. Computing it lets the gateway read a
conversation from its one partition instead of scanning the whole event store. confluent-kafka has
no public function for it, so this is a transcription of Java's `Utils.murmur2`.
"""

from __future__ import annotations

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Java's `Utils.murmur2` as a signed 32-bit int (so tests can compare with Kafka's vectors)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    tail = length % 4
    if tail == 3:
        h ^= data[whole + 2] << 16
    if tail >= 2:
        h ^= data[whole + 1] << 8
    if tail >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition a keyed message goes to (Java's `toPositive(murmur2(key)) % partitions`)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
