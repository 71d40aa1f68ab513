"""The gateway's partitioner against the vectors of Kafka's own UtilsTest (Java `Utils.murmur2`)."""

from __future__ import annotations

import pytest

from agentlog.web.partitioner import murmur2, partition_for


@pytest.mark.parametrize("key, expected", [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
])
def test_murmur2_matches_javas(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


def test_a_negative_hash_is_made_positive_before_the_modulo() -> None:
    # Java's toPositive masks the sign bit (it does not negate): -973932308 & 0x7fffffff = 1173551340.
    assert partition_for(b"21", 6) == 1173551340 % 6
