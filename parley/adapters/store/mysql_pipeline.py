"""A PyMySQL connection that sends a transaction's trailing writes with its next statement.

Why: the send path's transaction holds its conversations' row locks from the ``UPDATE`` of
their seqs to the ``COMMIT``, and every round trip inside that window is a wait for the other
realtime nodes sending to the same conversations. Statements whose results nobody reads (the
``UPDATE`` of the seqs before the ``SELECT`` that reads them, the messages' and outbox rows'
``INSERT``s) are held back (``deferred()``) and go out in one multi-statement packet together
with the next statement that needs an answer, or with the ``COMMIT``: a batch holds its locks
for two round trips instead of five.

Nothing changes in what the server does: the same statements in the same order in the same
transaction. MySQL stops a multi-statement packet at its first error, so the statements after
a failing one are not run; a failure inside the ``COMMIT`` packet rolls the transaction back
before it is raised (the pool does not reset connections; see ``SqlStore``), and none of it
was committed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from pymysql.connections import Connection, MySQLResult
from pymysql.constants import CLIENT, COMMAND
from pymysql.err import IntegrityError

# A packet of held-back statements is sent on its own past this size, well under MariaDB's
# max_allowed_packet (16 MiB by default); PyMySQL itself splits a bulk INSERT at 1 MiB.
MAX_HELD_BYTES = 4 * 1024 * 1024
# Raised instead of an IntegrityError of the held-back statement it belongs to.
ConflictError = Callable[[], Exception]


@dataclass(frozen=True, slots=True)
class _Held:
    sql: bytes
    on_conflict: ConflictError | None


class PipeliningConnection(Connection):  # type: ignore[misc]
    """``Connection`` with ``deferred()``: statements executed inside it are held back."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_flag"] = kwargs.get("client_flag", 0) | CLIENT.MULTI_STATEMENTS
        self._held: list[_Held] = []
        self._held_bytes = 0
        self._deferring: ConflictError | bool | None = False
        self.round_trips = 0  # COM_QUERY packets sent: what the pipeline saves, visible to tests
        super().__init__(*args, **kwargs)

    @contextmanager
    def deferred(self, on_conflict: ConflictError | None = None) -> Iterator[None]:
        """Hold back what is executed inside; an ``IntegrityError`` it raises later (when it is
        sent) becomes ``on_conflict()``."""
        self._deferring = on_conflict if on_conflict is not None else True
        try:
            yield
        finally:
            self._deferring = False

    # -- PyMySQL's entry points ------------------------------------------------------------
    def query(self, sql: str | bytes, unbuffered: bool = False) -> int:
        encoded = sql.encode(self.encoding, "surrogateescape") if isinstance(sql, str) else sql
        if self._deferring is not False:
            return self._hold(encoded)
        if not self._held:
            self.round_trips += 1
            return int(super().query(encoded, unbuffered))
        self._send_held(encoded)
        self._affected_rows = self._read_query_result(unbuffered=unbuffered)
        return int(self._affected_rows or 0)

    def commit(self) -> None:
        if not self._held:
            self.round_trips += 1
            super().commit()
            return
        try:
            self._send_held(b"COMMIT")
            self._read_query_result()
        except Exception:
            self._roll_back_quietly()
            raise

    def rollback(self) -> None:
        self._drop_held()
        self.round_trips += 1
        super().rollback()

    # -- the pipeline ----------------------------------------------------------------------
    def _hold(self, sql: bytes) -> int:
        on_conflict = None if self._deferring is True else self._deferring
        self._held.append(_Held(sql, on_conflict))  # type: ignore[arg-type]
        self._held_bytes += len(sql)
        # What the cursor reads back for a held statement: no rows, nothing known yet.
        self._result = MySQLResult(self)
        self._result.affected_rows = 0
        if self._held_bytes > MAX_HELD_BYTES:
            self._send_held(None)
        return 0

    def _send_held(self, final: bytes | None) -> None:
        """Send the held statements (and ``final``, if any, whose result is read by the caller)
        in one packet; read the held ones' results."""
        held = self._drop_held()
        packet = b";".join([h.sql for h in held] + ([final] if final is not None else []))
        self.round_trips += 1
        self._execute_command(COMMAND.COM_QUERY, packet)
        for statement in held:
            try:
                self._read_query_result()
            except IntegrityError as exc:
                if statement.on_conflict is None:
                    raise
                raise statement.on_conflict() from exc

    def _drop_held(self) -> list[_Held]:
        held, self._held, self._held_bytes = self._held, [], 0
        return held

    def _roll_back_quietly(self) -> None:
        """The transaction failed inside its COMMIT packet: end it here, since nobody else will
        (an unreachable server has ended it already)."""
        with suppress(Exception):  # the original error is the one worth raising
            self.rollback()
