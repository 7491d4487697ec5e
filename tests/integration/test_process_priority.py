"""PARLEY_NICE: a service lowers its own CPU priority at start (the local cluster and compose
run the indexer and the cache that way, see docs/operations.md)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.process import ServiceProcess


async def test_a_service_started_with_parley_nice_runs_at_that_lower_priority(tmp_path: Path) -> None:
    base = os.getpriority(os.PRIO_PROCESS, os.getpid())
    env = {"PARLEY_DATA_DIR": str(tmp_path / "d"), "PARLEY_NICE": "7", "PARLEY_LOG_LEVEL": "INFO"}
    proc = ServiceProcess("services.allinone", env, tmp_path / "log")
    await proc.start()
    try:
        assert proc.proc is not None
        assert os.getpriority(os.PRIO_PROCESS, proc.proc.pid) == min(base + 7, 19)
        assert "PARLEY_NICE" in (tmp_path / "log").read_text()
    finally:
        proc.kill()
