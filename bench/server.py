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
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import httpx
import pymysql  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient

REPO = Path(__file__).resolve().parents[1]
Mode = Literal["embedded", "engines"]


@dataclass(frozen=True)
class EngineUrls:
    """Where the real engines listen (the local ones of ``deploy/local`` by default)."""

    database: str = "mysql+aiomysql://parley:parley@127.0.0.1:13306"  # no database: one is made per run
    kafka: str = "127.0.0.1:19092"
    redis: str = "redis://127.0.0.1:16379/0"
    elasticsearch: str = "http://127.0.0.1:19200"


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
    ) -> None:
        self.mode = mode
        self.urls = urls or EngineUrls()
        self.module = module
        self.port = free_port()
        self.tag = uuid.uuid4().hex[:10]
        self.workdir = Path(tempfile.mkdtemp(prefix=f"parley-bench-{self.tag}-"))
        self.log_path = self.workdir / "server.log"
        self._settings = settings or {}
        self._database: str | None = None
        self._env: dict[str, str] = {}
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
            env.update(self._provision_engines())
        self._env = env
        with self.log_path.open("ab") as log:
            # The harness raised its own RLIMIT_NOFILE; the child inherits it (idle-connections).
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                self.module,
                cwd=REPO,
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
        """SIGTERM (graceful drain), SIGKILL after 30 s. The data stays until ``stop``."""
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
            cwd=REPO,
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
        with _mysql(self.urls.database) as cur:
            cur.execute(
                f"CREATE DATABASE `{self._database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
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
        if self._database is not None:
            with _mysql(self.urls.database) as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{self._database}`")
        with contextlib.suppress(Exception):
            admin = AIOKafkaAdminClient(bootstrap_servers=self.urls.kafka)
            await admin.start()
            try:
                await admin.delete_topics([self._topic, f"{self._topic}.dlq"])
            finally:
                await admin.close()
        async with httpx.AsyncClient(base_url=self.urls.elasticsearch, timeout=10) as http:
            with contextlib.suppress(httpx.HTTPError):
                found = await http.get(f"/{self._index}-v*", params={"expand_wildcards": "all"})
                if found.status_code == 200 and found.json():
                    await http.delete("/" + ",".join(found.json()))
                await http.delete(f"/_index_template/{self._index}")


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
