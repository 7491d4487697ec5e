"""``python -m loadtests.run`` (what ``make loadtest`` and ``make loadtest-ui`` call): seed a
target, run Locust against it for a bounded time, keep the report, write the summary.

Without ``--target`` it starts an embedded all-in-one itself (``python -m services.allinone``
on a free loopback port with a fresh data directory) and stops it afterwards, so a run never
sees an earlier run's data. With ``--target`` (the local cluster or compose through nginx,
e.g. ``http://127.0.0.1:8080``) it only seeds what is missing and runs against it.

Reports go to ``loadtests/reports/<UTC timestamp>/``: Locust's ``report.html``, its CSV files
(``locust_stats.csv``, ``locust_failures.csv``, ``locust_stats_history.csv``), its log, the
server's log (embedded mode) and ``summary.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import httpx

from loadtests import summary
from loadtests.profile import LOADTESTS_DIR, REPORTS_DIR, load_profile, manifest_path, profile_names
from loadtests.seed import seed

REPO = LOADTESTS_DIR.parent
LOCUSTFILE = LOADTESTS_DIR / "locustfile.py"
READY_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes] | None, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before it was ready")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url}/readyz did not answer 200 within {timeout:.0f} s")


@dataclass(frozen=True)
class Target:
    url: str
    pid: int | None = None  # known when this run started the server itself


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (fields 14 and 15 of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def embedded_server(log_path: Path, keep_data: bool) -> Iterator[Target]:
    """A fresh all-in-one on a free loopback port; stopped (SIGTERM, drained) on exit."""
    data_dir = Path(tempfile.mkdtemp(prefix="parley-loadtest-"))
    port = free_port()
    env = {**os.environ, "PARLEY_DATA_DIR": str(data_dir / "data"), "PARLEY_LOG_LEVEL": "WARNING"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.allinone", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, process)
            print(f"[loadtest] embedded all-in-one at {url} (data {data_dir}, log {log_path})", flush=True)
            yield Target(url, process.pid)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if not keep_data:
                shutil.rmtree(data_dir, ignore_errors=True)


def locust_command(args: argparse.Namespace, target: str, report_dir: Path) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--host",
        target,
        "--parley-profile",
        args.profile,
        "--users",
        str(args.users),
        "--spawn-rate",
        str(args.spawn_rate),
        "--csv",
        str(report_dir / summary.CSV_PREFIX),
        "--csv-full-history",
        "--html",
        str(report_dir / "report.html"),
        "--logfile",
        str(report_dir / "locust.log"),
        "--stop-timeout",
        "5",
        "--exit-code-on-error",
        "0",  # failures are figures in the summary, not a crash of the run
    ]
    if args.reset_stats:
        command.append("--reset-stats")
    if args.processes:
        command += ["--processes", str(args.processes)]
    if args.ui:
        command += ["--web-host", "127.0.0.1", "--web-port", str(args.web_port)]
        if args.autostart:  # Locust takes --run-time only for runs it starts itself
            command += ["--autostart", "--run-time", args.run_time]
    else:
        command += ["--headless", "--run-time", args.run_time, "--only-summary"]
    return command


@dataclass(frozen=True)
class LocustRun:
    exit_code: int
    wall_seconds: float
    cpu_seconds: dict[str, float]  # "Locust" and, when this run started it, "server"


def run_locust(command: list[str], server: Target) -> LocustRun:
    """Run Locust to its end, measuring the CPU it and the server used meanwhile: on a machine
    shared by both, that tells whether the load generator or the server was the bottleneck."""
    wall, locust_cpu = time.monotonic(), children_cpu_seconds()
    server_cpu = cpu_seconds(server.pid) if server.pid else None
    locust = subprocess.Popen(command, cwd=REPO)
    try:
        code = locust.wait()
    except KeyboardInterrupt:
        # Ctrl-C reached Locust too: let it stop its users and write the report and CSV files
        # (subprocess.run would kill it after a quarter of a second).
        try:
            code = locust.wait(timeout=30)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            locust.kill()
            code = locust.wait()
    usage = {"Locust": children_cpu_seconds() - locust_cpu}  # forked workers included
    if server.pid and server_cpu is not None:
        with contextlib.suppress(OSError):
            usage["server"] = cpu_seconds(server.pid) - server_cpu
    return LocustRun(code, time.monotonic() - wall, usage)


def seed_target(args: argparse.Namespace, target: str, profile_name: str) -> None:
    users = max(args.users, args.seed_users or 0)
    print(f"[loadtest] seeding {users} users (profile {profile_name})…", flush=True)
    started = time.perf_counter()
    manifest, _ = asyncio.run(
        seed(target, users, args.workspaces, args.channels, profile_name, args.seed_concurrency)
    )
    manifest.save(manifest_path(target))
    print(f"[loadtest] seeded in {time.perf_counter() - started:.1f} s", flush=True)


def run(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report_dir = Path(args.report_dir or REPORTS_DIR / stamp)
    report_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if args.target:
            server = Target(args.target.rstrip("/"))
            wait_ready(server.url, None, timeout=10)
        else:
            server = stack.enter_context(embedded_server(report_dir / "server.log", keep_data=args.keep_data))
        seed_target(args, server.url, profile.name)
        command = locust_command(args, server.url, report_dir)
        if args.ui:
            print(
                f"[loadtest] Locust web UI: http://127.0.0.1:{args.web_port}/  (Ctrl-C ends it)", flush=True
            )
        print("[loadtest] " + " ".join(command[1:]), flush=True)
        result = run_locust(command, server)
    if not (report_dir / f"{summary.CSV_PREFIX}_stats.csv").is_file():
        print(f"[loadtest] Locust wrote no statistics (exit {result.exit_code}); see {report_dir}/locust.log")
        return result.exit_code or 1
    context = run_context(args, server.url if args.target else "embedded", report_dir)
    context["CPU while Locust ran"] = (
        ", ".join(
            f"{who} {sec:.0f} s ({sec / result.wall_seconds:.0%} of one core)"
            for who, sec in result.cpu_seconds.items()
        )
        + f" over {result.wall_seconds:.0f} s, ramp-up included"
    )
    path = summary.write(report_dir, context)
    print(path.read_text())
    print(f"[loadtest] report: {report_dir}/report.html  summary: {path}")
    return result.exit_code


def run_context(args: argparse.Namespace, target: str, report_dir: Path) -> dict[str, str]:
    log = report_dir / "locust.log"
    text = log.read_text(errors="replace") if log.is_file() else ""
    cpu_warnings = text.count("CPU usage above")
    crashes = text.count("Unhandled exception in greenlet")
    context = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "target": target
        if target != "embedded"
        else "embedded all-in-one (fresh data dir, started by the run)",
        "users": f"{args.users} (spawn rate {args.spawn_rate}/s), run time {args.run_time}",
        "profile": f"`{args.profile}`",
        "Locust processes": str(args.processes) + " workers + master" if args.processes else "1",
        "statistics": "reset when all users were spawned (ramp-up and logins excluded)"
        if args.reset_stats
        else "whole run, ramp-up and logins included",
        "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, "
        f"locust {version('locust')}, websocket-client {version('websocket-client')}",
    }
    if cpu_warnings:
        context["warning"] = (
            f"Locust reported its CPU above 90% {cpu_warnings}× (locust.log): the load generator, "
            "not only the server, was saturated, so latencies are inflated; use --processes"
        )
    if crashes:
        context["error"] = f"{crashes} exception(s) escaped a Locust greenlet: see locust.log"
    return context


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtests.run", description=__doc__)
    parser.add_argument("--target", default="", help="base URL; empty: start an embedded all-in-one")
    parser.add_argument("--users", type=int, default=50, help="concurrent simulated users (default 50)")
    parser.add_argument("--spawn-rate", type=float, default=5, help="users started per second (default 5)")
    parser.add_argument("--run-time", default="60s", help="e.g. 60s, 5m (default 60s)")
    parser.add_argument(
        "--profile", default="default", help=f"one of {', '.join(profile_names())} or a JSON path"
    )
    parser.add_argument("--processes", type=int, default=0, help="Locust worker processes (0: one process)")
    parser.add_argument("--workspaces", type=int, default=1, help="seed: workspaces (default 1)")
    parser.add_argument("--channels", type=int, default=20, help="seed: channels per workspace (default 20)")
    parser.add_argument("--seed-users", type=int, default=0, help="seed: accounts, if more than --users")
    parser.add_argument("--seed-concurrency", type=int, default=16, help="seed: requests in flight")
    parser.add_argument(
        "--no-reset-stats",
        dest="reset_stats",
        action="store_false",
        help="keep the ramp-up (logins) in the figures; by default they are reset once all users run",
    )
    parser.add_argument("--ui", action="store_true", help="Locust's web UI instead of a headless run")
    parser.add_argument("--autostart", action="store_true", help="with --ui: start the test right away")
    parser.add_argument("--web-port", type=int, default=8089, help="with --ui (default 8089)")
    parser.add_argument("--report-dir", default="", help="default: loadtests/reports/<UTC timestamp>")
    parser.add_argument("--keep-data", action="store_true", help="keep the embedded server's data directory")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    try:
        return run(parse_args(argv))
    except (RuntimeError, FileNotFoundError, ValueError, httpx.HTTPError) as exc:
        print(f"[loadtest] failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
