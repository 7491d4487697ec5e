"""bench.write_cost drives the real MessageWriter into a real store: every send of every batch is
stored once with consecutive seqs (it raises otherwise), so its figure is the cost of durable sends."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.write_cost import measure
from tests.engines import engine_url
from tests.support.engines import mysql_database


async def test_embedded_batches_store_every_send_and_a_cost_is_measured(tmp_path: Path) -> None:
    runs = await measure(tmp_path, batch=5, batches=4, repeats=2)
    assert len(runs) == 2 and all(cpu > 0 and wall > 0 for cpu, wall in runs)


@pytest.mark.engines
async def test_mysql_batches_store_every_send_and_a_cost_is_measured(tmp_path: Path) -> None:
    with mysql_database(engine_url("mysql")) as url:
        runs = await measure(tmp_path, batch=5, batches=4, repeats=2, database_url=url)
    assert len(runs) == 2 and all(cpu > 0 and wall > 0 for cpu, wall in runs)
