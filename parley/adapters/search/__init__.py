"""Search adapters: ``fts5`` (SQLite FTS5, the embedded default) and ``elasticsearch``.

Both store ``created_at`` as integer milliseconds since the epoch (UTC), so a hit's time is the
message's time to the millisecond in either engine; the conversions live here, shared.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def to_epoch_ms(moment: datetime) -> int:
    """Exact milliseconds since the epoch (integer arithmetic); a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _ONE_MS


def from_epoch_ms(ms: int) -> datetime:
    return _EPOCH + ms * _ONE_MS
