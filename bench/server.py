"""The Parley under test: an all-in-one child process with its own data, started and stopped
by the harness.

Embedded mode gets a fresh data directory. Engines mode gets a fresh MariaDB database
(``parley_test_bench_<tag>``: the ``parley`` account may create ``parley_test%`` databases),
its own Kafka topics and Elasticsearch index, all removed again when the server stops, so runs
never see each other's data (Redis keys are distinct because every id is new).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import urlsplit

import httpx
import pymysql
from aiokafka.admin import AIOKafkaAdminClient

# PARLEY_BENCH_SERVER_REPO: start the server from another checkout (a git worktree of another
# commit) while this harness drives it: two versions side by side with the same clients.
REPO = Path(os.environ.get("PARLEY_BENCH_SERVER_REPO") or Path(__file__).resolve().parents[1])
# embedded / engines: one all-in-one process; cluster: the local cluster behind nginx
# (bench/cluster.py); url: a deployment the harness did not start (``--url``).
Mode = Literal["embedded", "engines", "cluster", "url"]


class Server(Protocol):
    """What a scenario may use of the Parley under test, whichever way it runs."""

    tag: str  # unique per run: account names and topics are made from it

    @property
    def url(self) -> str: ...

    @property
    def ws_url(self) -> str: ...

    @property
    def metrics_urls(self) -> list[str]:
        """Base URLs whose ``/metrics`` together count everything the server does (one per
        process in a cluster; none when unknown)."""
        ...

    @property
    def metrics_by_process(self) -> dict[str, str]:
        """The same URLs by process name."""
        ...

    def processes(self) -> dict[str, int]:
        """The server's processes by name → pid (each with its children, e.g. nginx's
        workers): what its CPU figure sums. Empty when the harness cannot see them."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def log_tail(self, chars: int = 3000) -> str: ...


@dataclass(frozen=True)
class EngineUrls:
    """Where the real engines listen (the local ones of ``deploy/local`` by default)."""

    database: str = "mysql+aiomysql://parley:parley@127.0.0.1:13306"  # no database: one is made per run
    kafka: str = "127.0.0.1:19092"
    redis: str = "redis://127.0.0.1:16379/0"
    elasticsearch: str = "http://127.0.0.1:19200"


@dataclass(frozen=True)
class Deployment:
    """How a run's server is made, beyond its mode: the command line's ``--url`` and cluster
    options (see bench/cluster.py)."""

    url: str | None = None  # a running deployment to drive instead of starting one
    cluster_dir: Path | None = None  # with ``url``: a local cluster's state folder (pids, ports)
    api_nodes: int = 2
    realtime_nodes: int = 2
    settings: dict[str, str] = field(default_factory=dict)  # extra PARLEY_* for started servers
    # The checkout the started servers run from (``--versus``: another version of Parley).
    server_repo: Path = REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (VmRSS of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it if the harness dies (no orphaned servers)."""
    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (/proc/<pid>/stat utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ParleyServer:
    """``python -m <module>`` (the all-in-one by default) on a free loopback port."""

    def __init__(
        self,
        mode: Mode,
        *,
        settings: dict[str, str] | None = None,
        urls: EngineUrls | None = None,
        module: str = "services.allinone",
        repo: Path = REPO,
    ) -> None:
        self.mode = mode
        self.urls = urls or EngineUrls()
        self.module = module
        self.repo = repo
        self.port = free_port()
        self.tag = uuid.uuid4().hex[:10]
        self.workdir = Path(tempfile.mkdtemp(prefix=f"parley-bench-{self.tag}-"))
        self.log_path = self.workdir / "server.log"
        self._settings = settings or {}
        self._database: str | None = None
        self._env: dict[str, str] = {}
        self._engine_env: dict[str, str] | None = None
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def parley_env(self) -> dict[str, str]:
        """The ``PARLEY_*`` settings the server runs with (after ``start``): for a tool that opens
        its store or search index in-process (``bench.bulk_seed.settings_from_env``)."""
        return {k: v for k, v in self._env.items() if k.startswith("PARLEY_")}

    @property
    def metrics_urls(self) -> list[str]:
        return [self.url]

    @property
    def metrics_by_process(self) -> dict[str, str]:
        return {self.module.rsplit(".", 1)[-1]: self.url}

    def processes(self) -> dict[str, int]:
        return {self.module.rsplit(".", 1)[-1]: self.pid}

    def rss_bytes(self) -> int:
        return rss_bytes(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self, timeout: float = 120.0) -> None:
        env = {
            **os.environ,
            "PARLEY_DATA_DIR": str(self.workdir / "data"),
            "PARLEY_PORT": str(self.port),
            "PARLEY_LOG_LEVEL": "WARNING",
            **self._settings,
        }
        if self.mode == "engines":
            # Started again after ``terminate``: the same database, topics and index.
            if self._engine_env is None:
                self._engine_env = self._provision_engines()
            env.update(self._engine_env)
        self._env = env
        with self.log_path.open("ab") as log:
            # The harness raised its own RLIMIT_NOFILE; the child inherits it (idle-connections).
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                self.module,
                cwd=self.repo,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        await self._wait_ready(timeout)

    async def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with httpx.AsyncClient() as http:
            while True:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"{self.module} exited early:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.url}/readyz", timeout=2)).status_code == 200:
                        return
                if loop.time() > deadline:
                    raise RuntimeError(f"{self.module} not ready within {timeout} s:\n{self.log_tail()}")
                await asyncio.sleep(0.1)

    async def terminate(self) -> None:
        """SIGTERM (graceful drain), SIGKILL after 30 s. The data stays until ``stop``; ``start``
        again runs the server on it."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await asyncio.wait_for(self.proc.wait(), 10)

    async def stop(self) -> None:
        """Terminate, then remove what this run created (data directory, database, topics, index)."""
        await self.terminate()
        if self.mode == "engines":
            await self._remove_engine_data()
        shutil.rmtree(self.workdir, ignore_errors=True)

    async def run_tool(self, module: str, *args: str, timeout: float = 300) -> str:
        """Run ``python -m module`` on this server's data and settings (after ``terminate``, for
        tools that want the data to themselves); returns its output."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *args,
            cwd=self.repo,
            env=self._env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            raise
        text = out.decode(errors="replace")
        if proc.returncode != 0:
            raise RuntimeError(f"{module} exited with {proc.returncode}:\n{text[-2000:]}")
        return text

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # -- real engines ----------------------------------------------------------------------
    @property
    def _topic(self) -> str:
        return f"parley.bench-{self.tag}.conversation-events.v1"

    @property
    def _index(self) -> str:
        return f"parley-bench-{self.tag}"

    def _provision_engines(self) -> dict[str, str]:
        self._database = f"parley_test_bench_{self.tag}"
        create_database(self.urls, self._database)
        return {
            "PARLEY_DATABASE_URL": f"{self.urls.database}/{self._database}?charset=utf8mb4",
            "PARLEY_KAFKA_BOOTSTRAP": self.urls.kafka,
            "PARLEY_REDIS_URL": self.urls.redis,
            "PARLEY_ELASTICSEARCH_URL": self.urls.elasticsearch,
            "PARLEY_EVENTS_TOPIC": self._topic,
            "PARLEY_DEAD_LETTER_TOPIC": f"{self._topic}.dlq",
            "PARLEY_SEARCH_INDEX": self._index,
        }

    async def _remove_engine_data(self) -> None:
        await remove_run_data(
            self.urls, database=self._database, topics=[self._topic, f"{self._topic}.dlq"], index=self._index
        )


def create_database(urls: EngineUrls, name: str) -> None:
    with _mysql(urls.database) as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")


async def remove_run_data(
    urls: EngineUrls,
    *,
    database: str | None,
    topics: list[str],
    index: str,
    redis_prefix: str | None = None,
) -> None:
    """Remove what one run made on the engines: its database, Kafka topics, Elasticsearch index
    and, given its key prefix, its Redis keys. Best effort past the database: a run that failed
    half-way may not have made all of them. (A run's Kafka consumer groups stay listed, empty,
    until the broker's offsets retention drops them: aiokafka has no call to delete a group.)"""
    if database is not None:
        with _mysql(urls.database) as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
    with contextlib.suppress(Exception):
        admin = AIOKafkaAdminClient(bootstrap_servers=urls.kafka)
        await admin.start()
        try:
            await admin.delete_topics(topics)
        finally:
            await admin.close()
    async with httpx.AsyncClient(base_url=urls.elasticsearch, timeout=10) as http:
        with contextlib.suppress(httpx.HTTPError):
            found = await http.get(f"/{index}-v*", params={"expand_wildcards": "all"})
            if found.status_code == 200 and found.json():
                await http.delete("/" + ",".join(found.json()))
            await http.delete(f"/_index_template/{index}")
    if redis_prefix:
        await _delete_redis_keys(urls.redis, redis_prefix)


async def _delete_redis_keys(url: str, prefix: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        with contextlib.suppress(Exception):
            batch: list[bytes] = []
            async for key in client.scan_iter(match=f"{prefix}*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    await client.unlink(*batch)
                    batch.clear()
            if batch:
                await client.unlink(*batch)
    finally:
        await client.aclose()


@contextlib.contextmanager
def _mysql(url: str) -> Iterator[pymysql.cursors.Cursor]:
    parts = urlsplit(url.replace("+aiomysql", ""))
    conn = pymysql.connect(
        host=parts.hostname,
        port=parts.port or 3306,
        user=parts.username,
        password=parts.password or "",
        autocommit=True,
    )
    try:
        with conn.cursor() as cur:
            yield cur
    finally:
        conn.close()
