"""``python -m loadtests.summary REPORT_DIR``: the few figures that matter in a chat load test,
from Locust's CSV files, as ``summary.md`` in the same folder.

Messages sent per second (acknowledged ``send`` frames), deliveries per second (another user's
socket received a message), end-to-end delivery latency p50/p95/p99 (send on one screen → shown
on another), send→ack latency, and every failure by kind. Locust's percentiles are its own
approximations (response times are kept to the millisecond below 100 ms, then to 2 significant
digits: 147 → 150, 3432 → 3400), which is fine for these figures.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

WS = "WS"
DELIVER = "deliver"
SEND_ACK = "send→ack"
CSV_PREFIX = "locust"  # Locust's --csv prefix inside a report folder: locust_stats.csv, …


@dataclass(frozen=True)
class Stat:
    type: str
    name: str
    requests: int
    failures: int
    per_second: float
    median: float
    average: float
    maximum: float
    percentiles: Mapping[str, float]  # "50%" → ms

    def p(self, percent: str) -> float:
        return self.percentiles.get(percent, float("nan"))


@dataclass(frozen=True)
class Failure:
    method: str
    name: str
    error: str
    occurrences: int


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:  # Locust writes "N/A" for a stat with no requests
        return float("nan")


def read_stats(stats_csv: Path) -> dict[tuple[str, str], Stat]:
    """Locust's ``<prefix>_stats.csv`` keyed by (type, name); the total row is ("", "Aggregated")."""
    stats: dict[tuple[str, str], Stat] = {}
    with stats_csv.open(newline="") as f:
        for row in csv.DictReader(f):
            percentiles = {k: _number(v) for k, v in row.items() if k.endswith("%")}
            stat = Stat(
                type=row["Type"],
                name=row["Name"],
                requests=int(row["Request Count"]),
                failures=int(row["Failure Count"]),
                per_second=_number(row["Requests/s"]),
                median=_number(row["Median Response Time"]),
                average=_number(row["Average Response Time"]),
                maximum=_number(row["Max Response Time"]),
                percentiles=percentiles,
            )
            stats[(stat.type, stat.name)] = stat
    return stats


def read_failures(failures_csv: Path) -> list[Failure]:
    if not failures_csv.is_file():
        return []
    with failures_csv.open(newline="") as f:
        failures = [
            Failure(row["Method"], row["Name"], row["Error"], int(row["Occurrences"]))
            for row in csv.DictReader(f)
        ]
    return sorted(failures, key=lambda x: -x.occurrences)


def _ms(value: float) -> str:
    return "–" if value != value else f"{value:,.0f} ms"  # NaN → dash


def render(report_dir: Path, context: Mapping[str, str] | None = None) -> str:
    """The summary as Markdown; ``context`` adds "what was run" lines (target, users, …)."""
    stats = read_stats(report_dir / f"{CSV_PREFIX}_stats.csv")
    failures = read_failures(report_dir / f"{CSV_PREFIX}_failures.csv")
    empty = Stat(WS, "", 0, 0, 0.0, float("nan"), float("nan"), float("nan"), {})
    deliver = stats.get((WS, DELIVER), empty)
    send = stats.get((WS, SEND_ACK), empty)
    total = stats.get(("", "Aggregated"), empty)
    acked = send.requests - send.failures
    lines = ["# Load test summary", ""]
    for key, value in (context or {}).items():
        lines.append(f"- {key}: {value}")
    if context:
        lines.append("")
    lines += [
        "| figure | value |",
        "|---|---|",
        f"| messages sent /s (WS `send`, acknowledged or not) | {send.per_second:,.1f} |",
        f"| messages acknowledged | {acked:,} of {send.requests:,} |",
        f"| deliveries /s (another user's socket got it) | {deliver.per_second:,.1f} |",
        f"| deliveries per message (fan-out) | {deliver.requests / acked if acked else 0:,.1f} |",
        f"| end-to-end delivery latency p50 / p95 / p99 | {_ms(deliver.p('50%'))} / "
        f"{_ms(deliver.p('95%'))} / {_ms(deliver.p('99%'))} |",
        f"| end-to-end delivery latency max | {_ms(deliver.maximum)} |",
        f"| send→ack latency p50 / p95 / p99 | {_ms(send.p('50%'))} / {_ms(send.p('95%'))} / "
        f"{_ms(send.p('99%'))} |",
        f"| requests (all kinds) /s | {total.per_second:,.1f} |",
        f"| failures | {total.failures:,} of {total.requests:,} |",
        "",
    ]
    if failures:
        lines += ["Failures by kind:", "", "| type | name | error | count |", "|---|---|---|---|"]
        for failure in failures[:15]:
            error = failure.error.replace("|", "\\|").replace("\n", " ")[:160]
            lines.append(f"| {failure.method} | {failure.name} | {error} | {failure.occurrences:,} |")
        lines.append("")
    lines += [
        "The delivery latency is Locust's `WS deliver` line (report.html, locust_stats.csv): receive "
        "time on one user's socket minus the send time another user wrote into the message.",
        "",
    ]
    return "\n".join(lines)


def write(report_dir: Path, context: Mapping[str, str] | None = None) -> Path:
    path = report_dir / "summary.md"
    path.write_text(render(report_dir, context))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.summary", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "report_dir", type=Path, help="a folder with locust_stats.csv (loadtests/reports/<ts>)"
    )
    args = parser.parse_args(argv)
    if not (args.report_dir / f"{CSV_PREFIX}_stats.csv").is_file():
        print(f"no {CSV_PREFIX}_stats.csv in {args.report_dir}", file=sys.stderr)
        return 1
    path = write(args.report_dir)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
