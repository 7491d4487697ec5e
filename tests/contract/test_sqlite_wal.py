"""The embedded adapters checkpoint their SQLite WAL on a thread of their own, not in commits.

Automatic checkpoints are off on the writing connections, so without ``WalCheckpointer`` the
WAL would grow for as long as the process runs; these tests show it stays bounded (with a
control that grows without it) and that each embedded adapter starts and stops its own.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from parley.adapters.eventlog.embedded import EmbeddedEventLog
from parley.adapters.search.fts5 import Fts5SearchIndex
from parley.adapters.sqlite_wal import AUTOCHECKPOINT_OFF, WalCheckpointer
from parley.adapters.store.sql import SqlStore

ROW = b"x" * 1024


def _writer(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(AUTOCHECKPOINT_OFF)
    db.execute("CREATE TABLE IF NOT EXISTS t (v BLOB)")
    return db


def _write(db: sqlite3.Connection, transactions: int) -> None:
    """Transactions with short pauses between bursts, as a server's write batches come."""
    for n in range(transactions):
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t VALUES (?)", (ROW,))
        db.execute("COMMIT")
        if n % 50 == 49:
            time.sleep(0.002)


def _wal_bytes(path: Path) -> int:
    return os.path.getsize(f"{path}-wal")


def test_the_checkpointer_keeps_the_wal_far_smaller_than_without_it(tmp_path: Path) -> None:
    control = tmp_path / "control.db"
    db = _writer(control)
    _write(db, 3000)  # nothing copies the WAL back: every commit appends to it
    control_wal = _wal_bytes(control)
    db.close()  # (the last connection to close checkpoints and removes the WAL)

    path = tmp_path / "checkpointed.db"
    db = _writer(path)
    checkpointer = WalCheckpointer(path, interval=0.005)
    checkpointer.start()
    try:
        _write(db, 3000)
    finally:
        checkpointer.stop()
    assert checkpointer.checkpoints > 0
    # After a complete checkpoint the next write starts the WAL over from its beginning.
    assert _wal_bytes(path) < control_wal / 3
    assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 3000
    db.close()


async def test_each_embedded_adapter_runs_its_checkpointer_between_start_and_close(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    log = EmbeddedEventLog(tmp_path / "events.db")
    search = Fts5SearchIndex(tmp_path / "search.db")
    adapters = [(store, store._checkpointer), (log, log._checkpointer), (search, search._checkpointer)]
    for adapter, checkpointer in adapters:
        assert checkpointer is not None
        await adapter.start()
        assert checkpointer._thread is not None and checkpointer._thread.is_alive()
        await adapter.close()
        assert checkpointer._thread is None
