"""Kafka's default partitioner, so that a key maps to the same partition number in both modes.

The embedded log and Kafka's producer (Java's and aiokafka's ``DefaultPartitioner``) both place a
keyed record in ``(murmur2(key) & 0x7fffffff) % partitions``. Keeping the embedded mode on the
same function means a conversation's events land in the same partition number whichever log
carries them, so partition-level metrics, logs and reasoning carry over between the modes.
"""

from __future__ import annotations

_MASK_32 = 0xFFFFFFFF
_SEED = 0x9747B28C
# Mixing constants of MurmurHash2, as in org.apache.kafka.common.utils.Utils.murmur2.
_M = 0x5BD1E995
_R = 24


def murmur2(data: bytes) -> int:
    """MurmurHash2 of ``data`` exactly as Kafka's Java client computes it, as an unsigned 32-bit int.

    Java computes on signed 32-bit ints with wrap-around; masking every product to 32 bits and
    using logical shifts gives the same bits. Kafka's ``Utils.murmur2`` returns that value as a
    signed int; :func:`to_signed_32` converts for comparison with Java's numbers.
    """
    length = len(data)
    h = (_SEED ^ length) & _MASK_32
    whole_words = length // 4
    for i in range(whole_words):
        k = int.from_bytes(data[i * 4 : i * 4 + 4], "little")
        k = (k * _M) & _MASK_32
        k ^= k >> _R
        k = (k * _M) & _MASK_32
        h = ((h * _M) & _MASK_32) ^ k

    tail = data[whole_words * 4 :]
    # The tail bytes fall through like Java's switch (case 3, then 2, then 1).
    if len(tail) >= 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if len(tail) >= 1:
        h ^= tail[0]
        h = (h * _M) & _MASK_32

    h ^= h >> 13
    h = (h * _M) & _MASK_32
    h ^= h >> 15
    return h


def to_signed_32(value: int) -> int:
    """The signed 32-bit reading of an unsigned 32-bit value (what Java prints)."""
    return value - (1 << 32) if value & 0x80000000 else value


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key`` among ``partitions``."""
    if partitions <= 0:
        raise ValueError(f"a topic needs at least one partition, got {partitions}")
    return (murmur2(key) & 0x7FFFFFFF) % partitions
