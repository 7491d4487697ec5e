"""``python -m parley.runtime.reindex``: rebuild the search index from the store.

Reads every live message from the store (MySQL or SQLite) in id order and loads it into a
fresh index, switched in atomically at the end (Elasticsearch: a new versioned index behind the
alias; FTS5: one transaction). Stop the indexer service while it runs, or run it twice: events
indexed during the rebuild land in the old index.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator, Sequence

from parley.composition import Parley
from parley.ports.search import SearchDoc
from parley.runtime.logging import configure_logging
from parley.settings import get_settings


async def reindex(parley: Parley, batch_size: int) -> int:
    await parley.start("store", "search")
    started = time.perf_counter()
    loaded = 0

    async def batches() -> AsyncIterator[Sequence[SearchDoc]]:
        nonlocal loaded
        async with parley.store.read() as reader:
            async for messages in reader.iter_messages(batch_size):
                docs = [
                    SearchDoc(
                        m.id,
                        m.conversation_id,
                        m.workspace_id,
                        m.user_id,
                        m.text,
                        m.created_at,
                        m.thread_root_id,
                    )
                    for m in messages
                ]
                loaded += len(docs)
                print(
                    f"[reindex] {loaded} messages read ({loaded / (time.perf_counter() - started):.0f}/s)",
                    flush=True,
                )
                yield docs

    try:
        count = await parley.search.rebuild(batches())
        await parley.search.refresh()
    finally:
        await parley.close()
    print(f"[reindex] done: {count} messages indexed in {time.perf_counter() - started:.1f} s", flush=True)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m parley.runtime.reindex", description=__doc__)
    parser.add_argument("--batch-size", type=int, default=1000, help="messages per bulk request")
    args = parser.parse_args()
    settings = get_settings()
    configure_logging("reindex", settings.log_level, settings.log_format)
    asyncio.run(reindex(Parley(settings, "tool"), args.batch_size))


if __name__ == "__main__":
    main()
