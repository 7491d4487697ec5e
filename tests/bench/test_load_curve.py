"""``bench.run send-deliver --load-curve``: after phase B, a paced phase at each fraction of the
run's saturation, and a second table of latency against load."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import fractions
from bench.send_deliver import curve_key, curve_table
from bench.server import REPO


def test_fractions_of_saturation_are_checked() -> None:
    assert fractions("0.1, 0.25,1") == (0.1, 0.25, 1.0)
    for bad in ("", "0", "1.5", "-0.2", "a,b"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"fractions|numbers"):
            fractions(bad)


def test_the_curve_table_has_one_row_per_fraction_in_order_with_the_medians() -> None:
    runs = [
        {curve_key(0.5, "p99_ms"): 40.0, curve_key(0.1, "p99_ms"): 10.0, curve_key(0.1, "rate"): 100.0},
        {curve_key(0.5, "p99_ms"): 61.0, curve_key(0.1, "p99_ms"): 13.0, curve_key(0.1, "rate"): 110.0},
    ]
    text = curve_table(runs)
    assert text is not None
    rows = [line for line in text.splitlines() if "% of saturation" in line]
    assert [row.split("|")[1].strip() for row in rows] == ["10 % of saturation", "50 % of saturation"]
    assert "| 105 " in rows[0] and "| 11.5 " in rows[0] and "| 50.5 " in rows[1]
    assert curve_table([{"sends_per_s": 10.0}]) is None


def test_a_run_with_a_load_curve_measures_each_fraction_of_its_saturation(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable, "-m", "bench.run", "send-deliver", "--mode", "embedded", "--runs", "1",
            "--senders", "4", "--listeners", "2", "--warmup", "0.5", "--duration", "2",
            "--load-curve", "0.2,0.8", "--json", str(tmp_path / "figures.json"),
        ],
        cwd=REPO, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "phase C (20%): open loop" in out.stdout and "phase C (80%): open loop" in out.stdout
    assert "send-deliver [embedded], latency against load (median of 1)" in out.stdout
    run = json.loads((tmp_path / "figures.json").read_text())["scenarios"]["send-deliver[embedded]"]["runs"][
        0
    ]
    for fraction in (0.2, 0.5, 0.8):  # phase B (0.5) joins the curve
        assert run[curve_key(fraction, "missing")] == 0
        assert run[curve_key(fraction, "p99_ms")] > 0
        # Each phase was paced at its own share of the saturation just measured.
        assert run[curve_key(fraction, "rate")] == pytest.approx(fraction * run["sends_per_s"], rel=0.25)
