"""On MySQL the store's reads run in autocommit, on a real MariaDB: a read is its statements and
nothing more — no transaction to end with a ROLLBACK round trip at check-in (under READ
COMMITTED each statement takes its own snapshot anyway) — and it sees what was committed before it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from parley.adapters.store.sql import SqlStore
from parley.domain.models import User
from tests.engines import engine_url
from tests.support.engines import mysql_database

pytestmark = pytest.mark.engines


async def _session_status(store: SqlStore) -> dict[str, int]:
    async with store.read() as session:
        # The counters of the connection this read was given (the pool holds only one).
        conn: Any = session._c  # the test looks under the store, at its one pooled connection
        rows = await conn.execute(
            text("SHOW SESSION STATUS WHERE Variable_name IN ('Com_rollback', 'Com_select')")
        )
        return {name: int(value) for name, value in rows}


async def test_reads_send_no_rollback_and_see_the_last_commit() -> None:
    with mysql_database(engine_url("mysql")) as url:
        store = SqlStore(url, pool_size=1, max_overflow=0)
        await store.start()
        try:
            user = User(id=42, username="rita", display_name="Rita", created_at=datetime.now(UTC))

            async def create(tx: Any) -> None:
                await tx.create_user_txn(user, "not-a-hash")

            await store.transact(create)
            before = await _session_status(store)
            found = [await store.query(lambda reader: reader.get_user(42)) for _ in range(5)]
            after = await _session_status(store)
        finally:
            await store.close()
    assert [u.username if u else None for u in found] == ["rita"] * 5, "a read sees the last commit"
    assert after["Com_select"] - before["Com_select"] >= 5, "the reads ran on the one pooled connection"
    assert after["Com_rollback"] == before["Com_rollback"], "a read ends no transaction"
