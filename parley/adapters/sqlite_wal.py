"""WAL checkpoints off the commit path, for the embedded adapters' SQLite files.

Why: by default SQLite copies the write-ahead log back into the database (a checkpoint, with
its fsyncs) inside whichever commit takes the WAL past 1,000 pages. Under load that was one send
batch or one log publish every few seconds stalling for 30–60 ms, and it set the embedded
mode's p99 send→deliver latency. So the writing connections turn automatic checkpoints off
(``AUTOCHECKPOINT_OFF``) and a ``WalCheckpointer`` thread runs PASSIVE checkpoints on its own
connection: a passive checkpoint never blocks a writer or a reader (it copies what no reader
still needs and stops there), and the next write after a complete one starts the WAL over, so
run every fraction of a second it keeps the WAL small. Only a WAL that writes without pause has
kept from restarting (past ``RESTART_FRAMES``) gets a RESTART checkpoint, which holds writers for
the few frames the passive ones left.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)
AUTOCHECKPOINT_OFF = "PRAGMA wal_autocheckpoint=0"
CHECKPOINT_INTERVAL = 0.25
RESTART_FRAMES = 16_384  # 64 MiB of 4 KiB pages
RESTART_BUSY_MS = 50


class WalCheckpointer:
    """A daemon thread checkpointing one database file's WAL every ``interval`` seconds."""

    def __init__(self, path: Path | str, interval: float = CHECKPOINT_INTERVAL) -> None:
        self._path = str(path)
        self._interval = interval
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.checkpoints = 0

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"parley-wal-checkpoint:{Path(self._path).name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (the last connection to close checkpoints what is left)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        connection.execute(f"PRAGMA busy_timeout={RESTART_BUSY_MS}")
        try:
            while not self._stopping.wait(self._interval):
                self.checkpoint(connection)
        finally:
            connection.close()

    def checkpoint(self, connection: sqlite3.Connection) -> None:
        try:
            _, frames, _ = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if frames > RESTART_FRAMES:
                connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            self.checkpoints += 1
        except sqlite3.Error:
            # The next one retries; meanwhile the WAL only grows (nothing is lost).
            log.warning("WAL checkpoint of %s failed", self._path, exc_info=True)
