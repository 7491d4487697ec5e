"""Kafka housekeeping for tests: an admin client, and removal of the topics a test created.

Every test topic left on the broker costs it at its next start (the local broker once held
~3,100 partition folders and took ~21 s to restart), so a fixture that creates topics deletes
them at teardown. Deleting is best effort: a failure is logged, never raised, because it must not
fail the test that has already run, nor hide that test's own error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import UnknownTopicOrPartitionError

log = logging.getLogger(__name__)
DELETE_TIMEOUT = 15.0  # seconds; a deletion takes well under one on a live broker


@contextlib.asynccontextmanager
async def kafka_admin(
    bootstrap: str, request_timeout: float = DELETE_TIMEOUT
) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(request_timeout * 1000))
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, topics: Iterable[str], timeout: float = DELETE_TIMEOUT) -> None:
    """Delete ``topics`` (missing ones included), within ``timeout``; failures are logged."""
    names = sorted(set(topics))
    if not names:
        return
    try:
        async with asyncio.timeout(timeout), kafka_admin(bootstrap, timeout) as admin:
            response = await admin.delete_topics(names, timeout_ms=int(timeout * 1000))
    except Exception:  # the broker may be down (a fault test), or gone already: not the test's fault
        log.warning("could not delete the test topics %s from %s", names, bootstrap, exc_info=True)
        return
    # The broker answers per topic rather than raising; a topic never created is no failure.
    refused = {
        topic: code
        for topic, code, *_ in response.topic_error_codes
        if code not in (0, UnknownTopicOrPartitionError.errno)
    }
    if refused:
        log.warning("the broker did not delete the test topics %s (error codes)", refused)


def delete_topics_blocking(bootstrap: str, topics: Iterable[str], timeout: float = DELETE_TIMEOUT) -> None:
    """:func:`delete_topics` for synchronous teardown code, which may run inside an event loop
    (a sync context manager used by an async fixture): hence a loop of its own in a thread."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="delete-test-topics") as pool:
        pool.submit(asyncio.run, delete_topics(bootstrap, list(topics), timeout)).result()
