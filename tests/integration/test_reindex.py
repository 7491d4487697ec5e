"""The reindex command rebuilds search from the store (both search engines)."""

from __future__ import annotations

from parley.composition import Parley
from parley.ports.search import SearchQuery
from parley.runtime.reindex import reindex
from tests.support.server import RunningServer
from tests.support.wait import eventually
from tests.support.world import make_world


async def test_reindex_rebuilds_search_from_the_store(server: RunningServer) -> None:
    world = await make_world(server.url)
    alice = world.users[0]
    for i in range(30):
        await alice.post(
            f"/conversations/{world.channel_id}/messages", {"text": f"rebuild otter {i}"}, expect=201
        )
    await eventually(lambda: alice.get("/search", {"q": "otter"}), lambda r: r["total"] == 30)
    await server.stop()  # the indexer stops with it; reindex runs as the offline tool

    count = await reindex(Parley(server.parley.settings, "tool"), batch_size=7)
    assert count >= 30
    tool = Parley(server.parley.settings, "tool")
    await tool.start("search")
    try:
        result = await tool.search.search(
            SearchQuery(text="otter", conversation_ids=[int(world.channel_id)], limit=50)
        )
        assert result.total == 30
    finally:
        await tool.close()
    await world.close()
