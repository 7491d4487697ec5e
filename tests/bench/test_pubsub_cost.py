"""bench.pubsub_cost's readers against the real Redis: each receives every published message (the
measurement raises otherwise), so its figure is the cost of messages actually delivered."""

from __future__ import annotations

import pytest

from bench.pubsub_cost import READERS, measure
from tests.engines import engine_url


@pytest.mark.engines
@pytest.mark.parametrize("reader", sorted(READERS))
async def test_each_reader_receives_every_message_and_a_cost_is_measured(reader: str) -> None:
    cost = await measure(READERS[reader], engine_url("redis"), messages=200, size=64, burst=5, rate=2_000)
    assert cost > 0
