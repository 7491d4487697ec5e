"""MySQL's writer connections hold back writes nobody reads and send them with the next
statement (``parley.adapters.store.mysql_pipeline``), on a real MariaDB: the same statements,
in order, in fewer round trips, and a failure still leaves nothing written."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pymysql
import pytest
from pymysql.err import IntegrityError

from parley.adapters.store.mysql_pipeline import PipeliningConnection
from tests.engines import engine_url
from tests.support.engines import mysql_database


class Taken(Exception):
    """What the pipeline raises for a held-back statement's duplicate key."""


def _connect(url: str, cls: type[pymysql.connections.Connection]) -> pymysql.connections.Connection:
    parts = urlsplit(url)
    return cls(
        host=parts.hostname,
        port=parts.port or 3306,
        user=parts.username,
        password=parts.password or "",
        database=parts.path.lstrip("/"),
        autocommit=False,
    )


@pytest.fixture
def url() -> Iterator[str]:
    with mysql_database(engine_url("mysql")) as database_url:
        setup = _connect(database_url, pymysql.connections.Connection)
        with setup.cursor() as cur:
            cur.execute("CREATE TABLE counters (id INT PRIMARY KEY, n INT NOT NULL)")
            cur.execute("CREATE TABLE rows_ (id INT PRIMARY KEY, note VARCHAR(20))")
            cur.execute("INSERT INTO counters VALUES (1, 0)")
        setup.commit()
        setup.close()
        yield database_url


def _committed(url: str, sql: str) -> list[tuple[object, ...]]:
    """What another connection sees (committed rows only; it waits for no lock)."""
    other = _connect(url, pymysql.connections.Connection)
    try:
        with other.cursor() as cur:
            cur.execute("SET SESSION innodb_lock_wait_timeout = 2")
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        other.close()


def test_writes_after_the_last_read_go_out_with_the_commit_in_one_round_trip(url: str) -> None:
    conn = _connect(url, PipeliningConnection)
    with conn.cursor() as cur:
        with conn.deferred():
            cur.execute("UPDATE counters SET n = n + 3 WHERE id = 1")
        cur.execute("SELECT n FROM counters WHERE id = 1")  # the UPDATE rides with it
        assert cur.fetchall() == ((3,),)
        assert conn.round_trips == 1
        with conn.deferred():
            cur.executemany("INSERT INTO rows_ VALUES (%s, %s)", [(1, "a"), (2, "b")])
            cur.execute("INSERT INTO rows_ VALUES (3, 'c')")
        assert _committed(url, "SELECT COUNT(*) FROM rows_") == [(0,)]  # nothing sent yet
    conn.commit()
    assert conn.round_trips == 2
    assert _committed(url, "SELECT id, note FROM rows_ ORDER BY id") == [(1, "a"), (2, "b"), (3, "c")]
    assert _committed(url, "SELECT n FROM counters") == [(3,)]
    conn.close()


def test_a_held_back_write_that_fails_in_the_commit_leaves_nothing_and_no_lock(url: str) -> None:
    conn = _connect(url, PipeliningConnection)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO rows_ VALUES (1, 'first')")
        conn.commit()
        with conn.deferred():
            cur.execute("UPDATE counters SET n = n + 1 WHERE id = 1")  # takes the row lock
        with conn.deferred(on_conflict=Taken):
            cur.execute("INSERT INTO rows_ VALUES (1, 'again')")  # duplicate key
        with conn.deferred():
            cur.execute("INSERT INTO rows_ VALUES (2, 'after')")  # never runs
        with pytest.raises(Taken):
            conn.commit()
        # Rolled back: the counter's lock is free (this would wait 2 s and fail otherwise).
        assert _committed(url, "SELECT n FROM counters FOR UPDATE") == [(0,)]
        assert _committed(url, "SELECT id, note FROM rows_ ORDER BY id") == [(1, "first")]
        # The connection carries on with a clean transaction.
        cur.execute("INSERT INTO rows_ VALUES (3, 'next')")
        conn.commit()
    assert _committed(url, "SELECT id FROM rows_ ORDER BY id") == [(1,), (3,)]
    conn.close()


def test_a_held_back_write_without_a_translation_raises_the_drivers_error(url: str) -> None:
    conn = _connect(url, PipeliningConnection)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO rows_ VALUES (1, 'first')")
        with conn.deferred():
            cur.execute("INSERT INTO rows_ VALUES (1, 'again')")
        with pytest.raises(IntegrityError):
            cur.execute("SELECT COUNT(*) FROM rows_")  # the held INSERT fails first
        conn.rollback()
    assert _committed(url, "SELECT COUNT(*) FROM rows_") == [(0,)]
    conn.close()
