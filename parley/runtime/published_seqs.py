"""What the relay has published, per conversation: the last seq, with no gap before it.

Every outbox row has its conversation's next seq (``bump_seq_txn``: gap-free, ordered by the
conversation's lock), so "published up to seq n" says exactly which rows are out. An announced
row is published only when it is the next one; anything else sends the relay to the table.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar


class Sequenced(Protocol):
    @property
    def conversation_id(self) -> int: ...

    @property
    def seq(self) -> int: ...


R = TypeVar("R", bound=Sequenced)


class PublishedSeqs:
    """Last published seq per conversation, for the most recently active ``max_conversations``
    (a forgotten one costs a table read the next time it is announced)."""

    def __init__(self, max_conversations: int = 100_000) -> None:
        self._last: OrderedDict[int, int] = OrderedDict()
        self._max = max_conversations

    def published(self, row: Sequenced) -> bool:
        last = self._last.get(row.conversation_id)
        return last is not None and row.seq <= last

    def split(self, rows: Sequence[R]) -> tuple[list[R], list[R]]:
        """``rows`` (in arrival order) → (the next ones of their conversations, in order;
        those after a gap or of a conversation not known here). Already published rows are
        in neither."""
        ready: list[R] = []
        blocked: list[R] = []
        after: dict[int, int | None] = {}
        for row in rows:
            c = row.conversation_id
            last = after[c] if c in after else self._last.get(c)
            if last is not None and row.seq <= last:
                continue
            # seq 1 opens a conversation: nothing can come before it.
            if row.seq == (1 if last is None else last + 1):
                ready.append(row)
                after[c] = row.seq
            else:
                blocked.append(row)
        return ready, blocked

    def advance(self, rows: Iterable[Sequenced]) -> None:
        """``rows`` were published."""
        for row in rows:
            c = row.conversation_id
            self._last[c] = max(row.seq, self._last.get(c, 0))
            self._last.move_to_end(c)
        while len(self._last) > self._max:
            self._last.popitem(last=False)
