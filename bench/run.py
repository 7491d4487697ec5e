"""``python -m bench.run``: run Parley's benchmark scenarios and print their figures.

Each scenario runs ``--runs`` times (3 by default), each time against a freshly started server,
and its figures are printed per run and as the median of the runs, after a header naming the
machine, Python, the engines' versions and the load average. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bench import fanout, history, indexer, large_history, send_deliver
from bench.clients import frames_before_hello
from bench.machine import engine_versions, load_average, machine_lines
from bench.scenario import Options, Scenario, progress
from bench.server import Deployment, EngineUrls, Mode
from bench.stats import fmt, median_of_runs, table

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        send_deliver.SCENARIO,
        history.SCENARIO,
        indexer.SCENARIO,
        fanout.FANOUT_SCENARIO,
        fanout.IDLE_SCENARIO,
        large_history.SCENARIO,
    )
}
DEFAULT_ALL = ["send-deliver", "history", "indexer", "fanout-1000", "idle-connections", "history-1m"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Scenarios: "
        + "; ".join(f"{s.name}: {s.summary}" for s in SCENARIOS.values())
        + ". 'all' runs every one of them. Modes: embedded and engines start one all-in-one process "
        "(SQLite etc. / MariaDB, Kafka, Redis, Elasticsearch); cluster starts the local cluster "
        "(deploy/local/cluster.py: nginx, api ×N, realtime ×N, relay, fanout, indexer, cache, slack on "
        "the engines) with its own database, topics, groups and index, and drives it through nginx; "
        "--url drives a running deployment. send-deliver and history run in every mode; indexer "
        "(it restarts the server to time a rebuild), fanout-1000 and idle-connections (they measure "
        "one realtime process) and history-1m run embedded/engines only, and are skipped otherwise.",
    )
    p.add_argument(
        "scenarios",
        nargs="*",
        default=["all"],
        choices=[*SCENARIOS, "all"],
        metavar="SCENARIO",
        help=f"one or more of {', '.join(SCENARIOS)}, or all (the default)",
    )
    p.add_argument(
        "--mode",
        choices=["embedded", "engines", "cluster", "both", "all"],
        default="embedded",
        help="both: embedded and engines; all: embedded, engines and cluster (default embedded)",
    )
    p.add_argument("--runs", type=int, default=3, help="runs per figure; the median is reported (default 3)")
    p.add_argument("--time-limit", type=float, default=900, help="seconds one run may take (default 900)")
    p.add_argument("--json", type=Path, help="also write every run's figures to this JSON file")
    p.add_argument(
        "--max-load",
        type=float,
        help="before each run, wait (up to --max-load-wait s) until the 1-minute load average is below this",
    )
    p.add_argument("--max-load-wait", type=float, default=600)
    g = p.add_argument_group("send-deliver")
    g.add_argument("--senders", type=int, default=50)
    g.add_argument("--listeners", type=int, default=10, help="listening members per conversation")
    g.add_argument(
        "--rooms", type=int, default=1, help="conversations; the senders are spread over them (default 1)"
    )
    g.add_argument("--window", type=int, default=4, help="sends in flight per sender at saturation")
    g.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before phase A")
    g.add_argument("--duration", type=float, default=10.0, help="measured seconds of each phase")
    g.add_argument("--load-fraction", type=float, default=0.5, help="phase B rate / saturation rate")
    g.add_argument(
        "--paced-rate",
        type=float,
        default=None,
        metavar="SENDS_PER_S",
        help="phase B at this fixed rate instead (e.g. 750: half of issue 2's 1,500 sends/s)",
    )
    g.add_argument(
        "--load-curve",
        type=fractions,
        default=(),
        metavar="F,F,…",
        help="after phase B, one more paced phase at each of these fractions of the run's saturation "
        "(e.g. 0.1,0.25,0.75): send→deliver latency against load, printed as a second table",
    )
    g.add_argument("--profile", type=Path, metavar="DIR", help="py-spy the server during phase A into DIR")
    g = p.add_argument_group("history / indexer")
    g.add_argument("--history-messages", type=int, default=10_000)
    g.add_argument("--history-requests", type=int, default=400)
    g.add_argument("--history-limit", type=int, default=20, help="page size of the measured requests")
    g.add_argument("--index-messages", type=int, default=5_000)
    g = p.add_argument_group("fanout-1000 / idle-connections")
    g.add_argument("--fanout-sockets", type=int, default=1_000)
    g.add_argument("--fanout-messages", type=int, default=400)
    g.add_argument("--fanout-window", type=int, default=4, help="the sender's messages in flight (default 4)")
    g.add_argument("--idle-counts", default="1000,10000", help="comma-separated socket counts")
    g = p.add_argument_group("history-1m (seeded once per mode by bench.bulk_seed, kept for the runs)")
    g.add_argument("--bulk-messages", type=int, default=1_000_000, help="stored messages (default 1,000,000)")
    g.add_argument("--bulk-channels", type=int, default=100, help="channels they are spread over")
    g.add_argument("--bulk-history-requests", type=int, default=300, help="per history variant")
    g.add_argument("--bulk-searches", type=int, default=100, help="per search kind")
    g = p.add_argument_group("cluster and running deployments")
    g.add_argument("--api-nodes", type=int, default=2, help="cluster mode: api processes (default 2)")
    g.add_argument(
        "--realtime-nodes", type=int, default=2, help="cluster mode: realtime processes (default 2)"
    )
    g.add_argument(
        "--url",
        help="drive this running deployment (e.g. http://127.0.0.1:8080 of `make cluster` or compose) "
        "instead of starting a server; --mode is then ignored. Nothing is started, stopped or removed; "
        "its rate limits stay as they are (PARLEY_RATE_LIMIT_*), and CPU and hop figures are n/a "
        "unless --cluster-dir is given",
    )
    g.add_argument(
        "--cluster-dir",
        type=Path,
        help="with --url: the state folder of the local cluster behind it (e.g. .state/cluster): "
        "its cluster.json gives the pids (CPU figures) and metrics ports (hop ages)",
    )
    g.add_argument(
        "--versus",
        type=Path,
        metavar="CHECKOUT",
        help="compare with the server of another checkout (e.g. `git worktree add ../before HEAD~1`; "
        "its server runs on this harness's Python): each figure is taken --runs times from each, "
        "interleaved A B B A A B … "
        "(on a shared machine the second run of a pair tends to do better), and the medians are "
        "printed side by side",
    )
    g.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="PARLEY_X=VALUE",
        help="a setting for the servers the harness starts (send-deliver, history); repeatable",
    )
    g = p.add_argument_group("clients and engines")
    g.add_argument("--compression", action="store_true", help="negotiate permessage-deflate on sockets")
    defaults = EngineUrls()
    g.add_argument("--mysql-url", default=defaults.database, help="server URL without a database")
    g.add_argument("--kafka", default=defaults.kafka)
    g.add_argument("--redis-url", default=defaults.redis)
    g.add_argument("--elasticsearch-url", default=defaults.elasticsearch)
    return p.parse_args(argv)


def server_settings(pairs: Sequence[str]) -> dict[str, str]:
    settings: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.startswith("PARLEY_"):
            raise SystemExit(f"--server-env wants PARLEY_NAME=VALUE, got {pair!r}")
        settings[key] = value
    return settings


def options_from(args: argparse.Namespace) -> Options:
    return Options(
        urls=EngineUrls(args.mysql_url, args.kafka, args.redis_url, args.elasticsearch_url),
        deployment=Deployment(
            url=args.url,
            cluster_dir=args.cluster_dir.resolve() if args.cluster_dir else None,
            api_nodes=args.api_nodes,
            realtime_nodes=args.realtime_nodes,
            settings=server_settings(args.server_env),
        ),
        compression=args.compression,
        senders=args.senders,
        listeners=args.listeners,
        rooms=args.rooms,
        window=args.window,
        warmup=args.warmup,
        duration=args.duration,
        load_fraction=args.load_fraction,
        paced_rate=args.paced_rate,
        load_curve=args.load_curve,
        profile_dir=args.profile,
        history_messages=args.history_messages,
        history_requests=args.history_requests,
        history_limit=args.history_limit,
        index_messages=args.index_messages,
        fanout_sockets=args.fanout_sockets,
        fanout_messages=args.fanout_messages,
        fanout_window=args.fanout_window,
        idle_counts=tuple(int(n) for n in args.idle_counts.split(",") if n.strip()),
        runs=args.runs,
        bulk_messages=args.bulk_messages,
        bulk_channels=args.bulk_channels,
        bulk_history_requests=args.bulk_history_requests,
        bulk_searches=args.bulk_searches,
    )


def raise_file_limit() -> int:
    """Sockets are files: lift the soft RLIMIT_NOFILE to the hard one (the server, a child,
    inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def wait_for_quiet(max_load: float | None, max_wait: float) -> None:
    """Other work on a 2-core machine moves every figure: wait for it to calm down (bounded);
    the load average at the start of each run is printed and kept with its figures either way."""
    if max_load is None:
        return
    waited = 0.0
    while os.getloadavg()[0] > max_load and waited < max_wait:
        if waited == 0:
            progress(f"load average {load_average()} is above {max_load}: waiting (up to {max_wait:g} s)")
        await asyncio.sleep(10)
        waited += 10


Variant = tuple[str, Options]  # a label and the options of the servers it runs


def variants_of(options: Options, versus: Path | None) -> list[Variant]:
    """This checkout's server, and with ``--versus`` the other checkout's."""
    if versus is None:
        return [("", options)]
    other = replace(options, deployment=replace(options.deployment, server_repo=versus.resolve()))
    return [("this checkout", options), (str(versus), other)]


def interleaved(variants: Sequence[Variant], runs: int) -> list[Variant]:
    """``runs`` runs of each variant in A B B A A B … order: each variant as often first as
    second in a pair, so whatever favours a pair's first or second run favours neither."""
    order: list[Variant] = []
    for n in range(runs):
        order += variants if n % 2 == 0 else list(reversed(variants))
    return order


async def run_scenario(
    scenario: Scenario, mode: Mode, variants: Sequence[Variant], args: argparse.Namespace
) -> tuple[dict[str, list[dict[str, float]]], list[str]]:
    results: dict[str, list[dict[str, float]]] = {label: [] for label, _ in variants}
    failures: list[str] = []
    time_limit = args.time_limit
    schedule = interleaved(variants, args.runs)
    for n, (label, options) in enumerate(schedule, 1):
        await wait_for_quiet(args.max_load, args.max_load_wait)
        which = f" ({label})" if label else ""
        progress(
            f"── {scenario.name} [{mode}] run {n}/{len(schedule)}{which} (load average {load_average()})"
        )
        load1 = os.getloadavg()[0]
        run_options = options
        if options.profile_dir is not None and n > 1:
            run_options = replace(options, profile_dir=None)  # one profile is enough
        try:
            async with asyncio.timeout(time_limit):
                result = await scenario.run_once(run_options, mode)
        except Exception as exc:
            failures.append(f"run {n}{which}: {type(exc).__name__}: {exc}")
            progress(f"run {n} failed: {type(exc).__name__}: {exc}")
            continue
        result.setdefault("load1", load1)
        results[label].append(result)
        progress("run figures: " + ", ".join(f"{k}={fmt(v)}" for k, v in result.items()))
    return results, failures


def versus_table(scenario: Scenario, mode: Mode, results: dict[str, list[dict[str, float]]]) -> str:
    """Each variant's medians, one row each, for the same figures."""
    rows = [
        [
            f"{label} (median of {len(runs)})",
            *(fmt(median_of_runs(runs).get(f.key, float("nan"))) for f in scenario.figures),
        ]
        for label, runs in results.items()
        if runs
    ]
    return f"{scenario.name} [{mode}], side by side\n" + table(
        ["", *(f.label for f in scenario.figures)], rows
    )


def figures_table(scenario: Scenario, mode: Mode, results: list[dict[str, float]], label: str = "") -> str:
    rows = [
        [f"run {i}", *(fmt(r.get(f.key, float("nan"))) for f in scenario.figures)]
        for i, r in enumerate(results, 1)
    ]
    if results:
        median = median_of_runs(results)
        rows.append(
            [
                f"**median of {len(results)}**",
                *(fmt(median.get(f.key, float("nan"))) for f in scenario.figures),
            ]
        )
    title = f"{scenario.name} [{mode}]" + (f" — {label}" if label else "")
    return title + "\n" + table(["", *(f.label for f in scenario.figures)], rows)


def extra_tables(scenario: Scenario, mode: Mode, by_variant: dict[str, list[dict[str, float]]]) -> list[str]:
    if scenario.extra_table is None:
        return []
    texts = []
    for label, runs in by_variant.items():
        if runs and (text := scenario.extra_table(runs)):
            texts.append(f"{scenario.name} [{mode}]" + (f" — {label}" if label else "") + f", {text}")
    return texts


def fractions(text: str) -> tuple[float, ...]:
    """``--load-curve``: comma-separated fractions of saturation, each in (0, 1]."""
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not values or any(not 0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"fractions of saturation must be in (0, 1]: {text!r}")
    return values


def modes_of(args: argparse.Namespace) -> list[Mode]:
    if args.url:
        return ["url"]
    if args.cluster_dir is not None:
        raise SystemExit("--cluster-dir goes with --url")
    return {
        "both": ["embedded", "engines"],
        "all": ["embedded", "engines", "cluster"],
    }.get(args.mode, [args.mode])


def server_lines(modes: Sequence[Mode], options: Options) -> list[str]:
    """What "server CPU" means in each mode, and the shape of a cluster."""
    d = options.deployment
    lines = []
    if "cluster" in modes:
        lines.append(
            f"cluster: nginx, api ×{d.api_nodes}, realtime ×{d.realtime_nodes}, relay, fanout, indexer, "
            "cache, slack ×1 (deploy/local/cluster.py), driven through nginx; server CPU = the sum over "
            "nginx (master + workers) and every Parley process; engines CPU = mariadb + kafka + redis + "
            "elasticsearch"
        )
    if "url" in modes:
        seen = f"processes of {d.cluster_dir}/cluster.json" if d.cluster_dir else "n/a (not started here)"
        lines.append(f"url: {d.url} (started elsewhere); server CPU and hop ages: {seen}")
    if d.settings:
        lines.append(f"server settings: {d.settings}")
    return lines


async def main(args: argparse.Namespace) -> int:
    # SIGTERM (e.g. from `timeout`) cancels like Ctrl-C does, so every server is stopped and
    # every run's database, topics and index are removed on the way out.
    current = asyncio.current_task()
    if current is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, current.cancel)
    names = DEFAULT_ALL if "all" in args.scenarios else list(dict.fromkeys(args.scenarios))
    modes = modes_of(args)
    options = options_from(args)
    if args.versus is not None and args.url:
        raise SystemExit("--versus starts the servers it compares: not with --url")
    variants = variants_of(options, args.versus)
    nofile = raise_file_limit()
    header = [*machine_lines(), f"open files limit: {nofile}"]
    if "engines" in modes or "cluster" in modes:
        header += [f"{k}: {v}" for k, v in engine_versions(options.urls).items()]
    header += server_lines(modes, options)
    if args.versus is not None:
        header.append(f"versus: the server of {args.versus.resolve()}, runs interleaved A B B A …")
    print("\n".join(header), flush=True)
    tables: list[str] = []
    recorded: dict[str, dict[str, object]] = {}
    any_failed = False
    for name in names:
        scenario = SCENARIOS[name]
        for mode in modes:
            if mode not in scenario.modes:
                progress(
                    f"{name} does not run in {mode} mode (runs in: {', '.join(scenario.modes)}): skipped"
                )
                continue
            by_variant, failures = await run_scenario(scenario, mode, variants, args)
            texts = [figures_table(scenario, mode, runs, label) for label, runs in by_variant.items()]
            texts += extra_tables(scenario, mode, by_variant)
            if len(by_variant) > 1:
                texts.append(versus_table(scenario, mode, by_variant))
            text = "\n\n".join(texts)
            if failures:
                any_failed = True
                text += "\nfailed runs: " + "; ".join(failures)
            tables.append(text)
            print("\n" + text + "\n", flush=True)
            for label, runs in by_variant.items():
                recorded[f"{name}[{mode}]" + (f" {label}" if label else "")] = {
                    "runs": runs,
                    "median": median_of_runs(runs) if runs else {},
                    "failures": failures,
                }
    if frames_before_hello:
        tables.append(f"note: frames received before hello (by type): {dict(frames_before_hello)}")
    print("\n" + "=" * 80 + "\n" + "\n".join(header) + "\n\n" + "\n\n".join(tables), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps({"header": header, "scenarios": recorded}, indent=2, default=str))
    return 1 if any_failed else 0


def run(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import uvloop
    except ImportError:  # the plain loop works, only with more client overhead
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        return runner(main(args))
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("interrupted: servers stopped, run data removed", file=sys.stderr, flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(run())
