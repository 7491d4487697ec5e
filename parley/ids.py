"""Time-ordered 63-bit ids (Snowflake layout): 41 bits of milliseconds since the Parley epoch,
10 bits of node id, 12 bits of per-millisecond sequence.

Ids sort by creation time across nodes without trusting any one clock for ordering inside a
conversation (that is what ``seq`` is for); they only need to be unique and roughly ordered.
"""

from __future__ import annotations

import threading
import time

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
_NODE_BITS = 10
_SEQ_BITS = 12
_MAX_SEQ = (1 << _SEQ_BITS) - 1


class IdGenerator:
    def __init__(self, node_id: int = 0) -> None:
        if not 0 <= node_id < (1 << _NODE_BITS):
            raise ValueError(f"node_id must be in [0, {1 << _NODE_BITS})")
        self._node = node_id
        self._last_ms = -1
        self._seq = 0
        self._lock = threading.Lock()

    def next_id(self) -> int:
        with self._lock:
            now = int(time.time() * 1000)
            # Never go backwards, even if the wall clock does: reuse the last millisecond.
            if now <= self._last_ms:
                now = self._last_ms
                self._seq = (self._seq + 1) & _MAX_SEQ
                if self._seq == 0:
                    now = self._last_ms = now + 1
            else:
                self._last_ms = now
                self._seq = 0
            return ((now - EPOCH_MS) << (_NODE_BITS + _SEQ_BITS)) | (self._node << _SEQ_BITS) | self._seq


def id_time_ms(snowflake: int) -> int:
    """Milliseconds since the Unix epoch at which ``snowflake`` was generated."""
    return (snowflake >> (_NODE_BITS + _SEQ_BITS)) + EPOCH_MS
