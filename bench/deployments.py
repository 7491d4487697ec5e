"""The Parley under test, whichever way it runs: one all-in-one process (``ParleyServer``), the
local cluster behind nginx (``ClusterServer``), or a deployment someone else started
(``RemoteServer``, ``--url``). All three have the small interface scenarios use
(:class:`bench.server.Server`): base and WebSocket URLs, the processes whose CPU counts, the
``/metrics`` URLs the hop ages are read from.

The cluster is started the way the e2e tests start theirs (``deploy/local/cluster.py up``), with
its own state folder, ports, MySQL database, Kafka topics and consumer groups, search index and
Redis key prefix, all removed after the run (``cluster.py down`` first, so nothing still uses
them), so runs never see each other's data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.scenario import UNLIMITED_RATE, Options, progress
from bench.server import REPO, EngineUrls, Mode, ParleyServer, Server, remove_run_data

LAUNCHER = Path("deploy") / "local" / "cluster.py"  # in the checkout the cluster runs from
GATEWAY_OFFSET = 80
WORKER_OFFSETS = (301, 302, 303, 304, 401)  # relay, fanout, indexer, cache, slack-1
# Below Linux's ephemeral range (32768-60999): a port found free there can be taken by an
# outgoing connection before the cluster binds it (seen: the cache node failed to start).
PORT_BASES = range(23000, 32000, 1000)
# Distinct from `make cluster` (0-31) and the e2e cluster (500-531): they may share one Redis.
NODE_ID_BASE = 600
START_TIMEOUT = 180.0


@dataclass(frozen=True)
class ClusterProcess:
    name: str
    kind: str  # nginx, or the service module under services/
    port: int
    pid: int | None
    log: str


def read_manifest(state_dir: Path) -> tuple[str, list[ClusterProcess]]:
    """The gateway URL and the processes of a local cluster, from the ``cluster.json`` that
    ``cluster.py up`` writes into its state folder."""
    manifest: dict[str, Any] = json.loads((state_dir / "cluster.json").read_text())
    processes = [
        ClusterProcess(p["name"], p["kind"], int(p["port"]), p.get("pid"), p["log"])
        for p in manifest["processes"]
    ]
    return str(manifest["url"]).rstrip("/"), processes


def _pids(processes: Sequence[ClusterProcess]) -> dict[str, int]:
    return {p.name: p.pid for p in processes if p.pid is not None}


def _metrics_urls(processes: Sequence[ClusterProcess]) -> dict[str, str]:
    # nginx does not route /metrics: each service's own port does (one histogram per process;
    # bench/hops.py adds them up).
    return {p.name: f"http://127.0.0.1:{p.port}" for p in processes if p.kind != "nginx"}


def _ws_url(url: str) -> str:
    return url.replace("http", "ws", 1) + "/ws"


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port_base(api_nodes: int, realtime_nodes: int) -> int:
    """A port base whose gateway (+80), api (+101…), realtime (+201…), worker (+301…) and
    slack (+401) ports are all free (cluster.py's layout)."""
    offsets = [
        GATEWAY_OFFSET,
        *(100 + i for i in range(1, api_nodes + 1)),
        *(200 + i for i in range(1, realtime_nodes + 1)),
        *WORKER_OFFSETS,
    ]
    for base in PORT_BASES:
        if all(port_free(base + o) for o in offsets):
            return base
    raise RuntimeError("no free port range for a bench cluster")


class _ClusterTarget:
    """What a cluster target answers from its manifest: URLs, pids, metrics ports."""

    _url: str
    _processes: list[ClusterProcess]

    @property
    def url(self) -> str:
        return self._url

    @property
    def ws_url(self) -> str:
        return _ws_url(self._url)

    @property
    def metrics_urls(self) -> list[str]:
        return list(_metrics_urls(self._processes).values())

    @property
    def metrics_by_process(self) -> dict[str, str]:
        return _metrics_urls(self._processes)

    def processes(self) -> dict[str, int]:
        return _pids(self._processes)


class ClusterServer(_ClusterTarget):
    """The local cluster (nginx, api ×N, realtime ×N, relay, fanout, indexer, cache, slack)
    on the real engines, with this run's own data; reached through nginx only."""

    def __init__(
        self,
        *,
        settings: dict[str, str] | None = None,
        urls: EngineUrls | None = None,
        api_nodes: int = 2,
        realtime_nodes: int = 2,
        repo: Path = REPO,
    ) -> None:
        self.urls = urls or EngineUrls()
        self.repo = repo
        self.tag = uuid.uuid4().hex[:10]
        self.api_nodes, self.realtime_nodes = api_nodes, realtime_nodes
        # Under the repo's .state/, not /tmp's 0700 folders: nginx workers run as www-data when
        # the harness runs as root, and must reach their temp folder (as in tests/e2e).
        self.state_dir = repo / ".state" / "bench" / f"cluster-{self.tag}"
        self.database = f"parley_test_bench_{self.tag}"
        self.topic = f"parley.bench-{self.tag}.conversation-events.v1"
        self.index = f"parley-bench-{self.tag}"
        self.group_prefix = f"parley-bench-{self.tag}."
        self.redis_prefix = f"parley-bench-{self.tag}:"
        self.port_base = free_port_base(api_nodes, realtime_nodes)
        self.gateway_port = self.port_base + GATEWAY_OFFSET
        self._settings = settings or {}
        self._url = f"http://127.0.0.1:{self.gateway_port}"
        self._processes: list[ClusterProcess] = []

    def _launcher(self, command: str) -> list[str]:
        return [
            sys.executable,
            str(self.repo / LAUNCHER),
            command,
            "--state-dir",
            str(self.state_dir),
            "--gateway-port",
            str(self.gateway_port),
            "--port-base",
            str(self.port_base),
            "--database",
            self.database,
            "--node-id-base",
            str(NODE_ID_BASE),
            "--api-nodes",
            str(self.api_nodes),
            "--realtime-nodes",
            str(self.realtime_nodes),
            "--timeout",
            str(START_TIMEOUT - 20),
        ]

    def _environment(self) -> dict[str, str]:
        """The caller's environment without its PARLEY_* (a developer's shell must not leak into
        the run), plus this run's engines and names; cluster.py passes PARLEY_* to every service."""
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")},
            # cluster.py replaces the database with --database
            "PARLEY_DATABASE_URL": f"{self.urls.database}/{self.database}?charset=utf8mb4",
            "PARLEY_KAFKA_BOOTSTRAP": self.urls.kafka,
            "PARLEY_REDIS_URL": self.urls.redis,
            "PARLEY_ELASTICSEARCH_URL": self.urls.elasticsearch,
            "PARLEY_EVENTS_TOPIC": self.topic,
            "PARLEY_DEAD_LETTER_TOPIC": f"{self.topic}.dlq",
            "PARLEY_SEARCH_INDEX": self.index,
            "PARLEY_CONSUMER_GROUP_PREFIX": self.group_prefix,
            "PARLEY_REDIS_KEY_PREFIX": self.redis_prefix,
            "PARLEY_LOG_LEVEL": "WARNING",
            **self._settings,
        }

    async def _run_launcher(self, command: str, timeout: float) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.state_dir / "launcher.log").open("ab") as log:
            proc = await asyncio.create_subprocess_exec(
                *self._launcher(command),
                cwd=self.repo,
                env=self._environment(),
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise RuntimeError(f"cluster.py {command} took more than {timeout:.0f} s") from None
        if proc.returncode != 0:
            raise RuntimeError(
                f"cluster.py {command} exited with {proc.returncode}:\n{self._launcher_tail()}"
            )

    async def start(self) -> None:
        # A start that fails half-way still leaves processes and data behind: clean them up here,
        # since the caller only stops what started.
        try:
            await self._run_launcher("up", START_TIMEOUT)
            _, self._processes = read_manifest(self.state_dir)
        except BaseException:
            progress(f"cluster did not start:\n{self.log_tail()}")
            await self.stop()
            raise

    async def stop(self) -> None:
        """``cluster.py down`` (every process drains and exits), then this run's data goes."""
        with contextlib.suppress(Exception):
            await self._run_launcher("down", 120)
        await remove_run_data(
            self.urls,
            database=self.database,
            topics=[self.topic, f"{self.topic}.dlq"],
            index=self.index,
            redis_prefix=self.redis_prefix,
        )
        if os.environ.get("PARLEY_BENCH_KEEP") != "1":  # keep the logs to read them
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def _launcher_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return (self.state_dir / "launcher.log").read_text(errors="replace")[-chars:]
        return ""

    def log_tail(self, chars: int = 3000) -> str:
        """The launcher's output and the end of every process's log."""
        per_process = max(200, chars // max(1, len(self._processes) + 1))
        parts = [f"launcher:\n{self._launcher_tail(per_process)}"]
        for p in self._processes:
            with contextlib.suppress(OSError):
                parts.append(f"{p.name}:\n{Path(p.log).read_text(errors='replace')[-per_process:]}")
        return "\n".join(parts)


class RemoteServer(_ClusterTarget):
    """A deployment the harness did not start (compose, a ``make cluster``): nothing to start
    or stop, nothing removed. With the state folder of a local cluster (``--cluster-dir``), its
    processes' pids and metrics ports are read from ``cluster.json``; otherwise CPU and hop
    figures are not available."""

    def __init__(self, url: str, cluster_dir: Path | None = None) -> None:
        self.tag = uuid.uuid4().hex[:10]
        self._url = url.rstrip("/")
        self._processes: list[ClusterProcess] = []
        if cluster_dir is not None:
            _, self._processes = read_manifest(cluster_dir)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def log_tail(self, chars: int = 3000) -> str:
        return f"(a deployment the harness did not start: see its own logs; {self._url})"


def server_for(options: Options, mode: Mode, settings: dict[str, str] | None = None) -> Server:
    """The server of one run of ``mode``; rate limits lifted on the ones the harness starts."""
    deployment = options.deployment
    merged = {**UNLIMITED_RATE, **deployment.settings, **(settings or {})}
    if mode == "url":
        if deployment.url is None:
            raise ValueError("mode 'url' needs --url")
        return RemoteServer(deployment.url, deployment.cluster_dir)
    if mode == "cluster":
        return ClusterServer(
            settings=merged,
            urls=options.urls,
            api_nodes=deployment.api_nodes,
            realtime_nodes=deployment.realtime_nodes,
            repo=deployment.server_repo,
        )
    return ParleyServer(mode, settings=merged, urls=options.urls, repo=deployment.server_repo)


@asynccontextmanager
async def running_target(
    options: Options, mode: Mode, settings: dict[str, str] | None = None
) -> AsyncIterator[Server]:
    """A fresh server for one run (or the ``--url`` one); always stopped and its data removed
    afterwards."""
    server = server_for(options, mode, settings)
    progress(f"starting the {mode} server ({server.url})")
    await server.start()
    try:
        yield server
    except BaseException:
        progress(f"run failed; server log tail:\n{server.log_tail(3000)}")
        raise
    finally:
        await server.stop()
