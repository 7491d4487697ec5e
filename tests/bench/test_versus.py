"""``bench.run --versus CHECKOUT``: two versions of the server measured in one run, interleaved
A B B A … so that neither always runs first in a pair, their medians side by side."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.run import interleaved
from bench.scenario import Options
from bench.server import REPO, ParleyServer


def test_each_variant_runs_as_often_first_as_second_in_a_pair() -> None:
    a, b = ("a", Options()), ("b", Options())
    assert [label for label, _ in interleaved([a, b], 4)] == list("abbaabba")
    assert [label for label, _ in interleaved([a], 2)] == ["a", "a"]


def _copy_of_the_server(into: Path) -> Path:
    """What the all-in-one runs from, as another checkout would hold it."""
    for part in ("parley", "services", "web"):
        shutil.copytree(REPO / part, into / part, ignore=shutil.ignore_patterns("__pycache__"))
    return into


async def test_a_server_of_another_checkout_runs_from_that_checkout(tmp_path: Path) -> None:
    other = _copy_of_the_server(tmp_path / "other")
    server = ParleyServer("embedded", repo=other)
    await server.start()
    try:
        assert server.proc is not None
        assert Path(os.readlink(f"/proc/{server.proc.pid}/cwd")) == other
    finally:
        await server.stop()


def test_versus_prints_both_variants_and_their_medians_side_by_side(tmp_path: Path) -> None:
    other = _copy_of_the_server(tmp_path / "other")
    out = subprocess.run(
        [
            sys.executable, "-m", "bench.run", "send-deliver", "--mode", "embedded", "--runs", "2",
            "--senders", "4", "--listeners", "2", "--warmup", "0.5", "--duration", "1",
            "--versus", str(other), "--json", str(tmp_path / "figures.json"),
        ],
        cwd=REPO, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    runs = [line for line in out.stdout.splitlines() if "── send-deliver [embedded] run" in line]
    assert [r.split("(")[1].split(")")[0] for r in runs] == [
        "this checkout",
        str(other),
        str(other),
        "this checkout",
    ]
    assert "send-deliver [embedded], side by side" in out.stdout
    recorded = json.loads((tmp_path / "figures.json").read_text())["scenarios"]
    for key in ("send-deliver[embedded] this checkout", f"send-deliver[embedded] {other}"):
        assert len(recorded[key]["runs"]) == 2
        assert all(r["sends_per_s"] > 0 and r["missing"] == 0 for r in recorded[key]["runs"])
