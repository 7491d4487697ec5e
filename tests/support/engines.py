"""Settings for a Parley that runs on the real engines, isolated per test: a throwaway MySQL
database, its own Kafka topics and Elasticsearch index; Redis keys are naturally distinct
(conversation and user ids are unique). The database, the topics and the index are removed
afterwards: left behind, hundreds of test indices keep Elasticsearch busy on a developer's box
(a third of a core), which every later benchmark on it pays for."""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pymysql

from tests.engines import engine_url
from tests.support.kafka import delete_topics_blocking


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@contextmanager
def mysql_database(base_url: str) -> Iterator[str]:
    """A fresh, empty database on the test server; dropped afterwards."""
    parts = urlsplit(base_url)
    name = f"parley_test_{uuid.uuid4().hex[:12]}"

    def run(statement: str) -> None:
        # A fresh connection each time: a test may have restarted the server in between.
        conn = pymysql.connect(
            host=parts.hostname, port=parts.port or 3306, user=parts.username, password=parts.password or ""
        )
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    run(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    try:
        yield _with_database(base_url, name)
    finally:
        run(f"DROP DATABASE IF EXISTS `{name}`")


@contextmanager
def engine_overrides() -> Iterator[dict[str, Any]]:
    """Settings overrides that point every port at a real engine.

    Stop what uses them before leaving the block: the topics are deleted on the way out."""
    database, kafka, redis, es = (engine_url(e) for e in ("mysql", "kafka", "redis", "elasticsearch"))
    tag = uuid.uuid4().hex[:10]
    topics = topic_names(tag)
    with mysql_database(database) as db_url:
        try:
            yield {
                "database_url": db_url,
                "kafka_bootstrap": kafka,
                "redis_url": redis,
                "elasticsearch_url": es,
                "events_topic": topics[0],
                "dead_letter_topic": topics[1],
                "events_partitions": 4,
                "search_index": f"parley-test-{tag}",
                "consumer_group_prefix": f"parley-test-{tag}.",
                "redis_key_prefix": f"parley-test-{tag}:",
            }
        finally:
            delete_topics_blocking(kafka, topics)
            delete_search_indices_blocking(es, f"parley-test-{tag}")


def delete_search_indices_blocking(url: str, alias: str) -> None:
    """Delete every index the search adapter made for ``alias`` (``<alias>-v1``, a rebuild's
    ``-v2``…), each by its name: Elasticsearch refuses wildcard deletes by default."""
    listing = urllib.request.Request(f"{url}/_cat/indices/{alias}-*?format=json&h=index")
    with urllib.request.urlopen(listing, timeout=30) as response:
        names = [row["index"] for row in json.load(response)]
    for name in names:
        urllib.request.urlopen(urllib.request.Request(f"{url}/{name}", method="DELETE"), timeout=30).close()


def topic_names(tag: str) -> tuple[str, str]:
    """The events topic and dead-letter topic of a test run tagged ``tag``. Every name starts
    with ``parley.test-``, so a stale one is recognisably a test's (never the default
    ``parley.conversation-events.v1``)."""
    events = f"parley.test-{tag}.conversation-events.v1"
    return events, f"{events}.dlq"
