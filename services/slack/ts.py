"""``ts``: Slack's message timestamps, as positions in a conversation's event stream.

Slack names a message by ``(channel, ts)`` where ``ts`` is a string like
``"1700000000.000100"``, unique and increasing within the channel. Parley's equivalent is the
message's ``seq``: gap-free per conversation, assigned under the conversation lock, so strictly
increasing in commit order. The encoding is

    ts = created_at_seconds(conversation) + seq / 1_000_000      (printed with 6 decimals)

which is unique and strictly increasing per conversation, and reversible with nothing but the
conversation (its ``created_at`` never changes): ``seq = (ts - base) * 1_000_000``. A message is
then found by ``(conversation_id, seq)``, an indexed lookup.

The trade-off: ``ts`` does not tell when a message was sent (it reads as the conversation's
creation time plus one microsecond per event). A wall-clock encoding cannot keep the order:
``created_at`` is taken before the seq is, on whichever node handled the send, so two sends
racing across a second boundary could get timestamps in the opposite order of their seqs.
Order and a stable identity matter more to Slack clients (they page with ``oldest``/``latest``
and address messages by ``ts``) than the wall-clock reading of the number.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from parley.domain.models import Conversation

_MICROS = 1_000_000
_MAX_POSITION = 2**63 - 2
_EXACT = re.compile(r"^(\d{1,12})\.(\d{6})$")
_LOOSE = re.compile(r"^\d{1,15}(\.\d{1,6})?$")


def _base(conversation: Conversation) -> int:
    return int(conversation.created_at.timestamp())


def ts_of(conversation: Conversation, seq: int) -> str:
    seconds, micros = divmod(seq, _MICROS)
    return f"{_base(conversation) + seconds}.{micros:06d}"


def seq_of(conversation: Conversation, ts: object) -> int | None:
    """The seq a message ``ts`` names, or None if ``ts`` cannot name one in this conversation."""
    if not isinstance(ts, str):
        return None
    match = _EXACT.match(ts.strip())
    if match is None:
        return None
    seq = (int(match.group(1)) - _base(conversation)) * _MICROS + int(match.group(2))
    return seq if seq > 0 else None


def bound_of(conversation: Conversation, ts: object) -> int | None:
    """The seq position of a range bound (``oldest``/``latest``), which may be any number;
    clamped at 0. None when ``ts`` is not a number."""
    if isinstance(ts, (int, float)) and not isinstance(ts, bool):
        ts = str(ts)
    if not isinstance(ts, str) or not _LOOSE.match(ts.strip()):
        return None
    try:
        value = Decimal(ts.strip())
    except InvalidOperation:
        return None
    position = int((value - _base(conversation)) * _MICROS)
    # Far in the future is as good as no bound, and must stay a BIGINT (used as ``position + 1``).
    return min(max(0, position), _MAX_POSITION)
