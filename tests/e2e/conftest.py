"""One local cluster for the whole e2e session, started through the real launcher.

``deploy/local/cluster.py up`` runs nginx, api ×2, realtime ×2, relay, fanout, indexer, cache and
slack ×2 (two Slack facade nodes, so the gateway's per-app Socket Mode pinning is tested) under
supervisord on the real engines (``PARLEY_TEST_*`` URLs, see tests/engines.py), with this
session's own ports, state folder, MySQL database, Kafka topics and search index, all removed at
the end of the session. Tests talk to it only through nginx, and break it the way production
breaks: SIGKILL to a pid that ``supervisorctl`` reports. supervisord restarts what was killed;
:meth:`Cluster.wait_ready` waits for that before the next test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pymysql
import pytest

from bench.deployments import port_free
from parley.composition import Parley
from parley.settings import Settings
from tests.engines import engine_url, engines_required
from tests.support.engines import topic_names
from tests.support.kafka import delete_topics_blocking

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = REPO / "deploy" / "local" / "cluster.py"
START_TIMEOUT = 150.0


@dataclass
class Cluster:
    state_dir: Path
    manifest: dict[str, Any]
    started_in: float

    @property
    def url(self) -> str:
        return str(self.manifest["url"]).rstrip("/")

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"

    @property
    def access_log(self) -> Path:
        return self.state_dir / "logs" / "nginx-access.log"

    def process(self, name: str) -> dict[str, Any]:
        return next(p for p in self.manifest["processes"] if p["name"] == name)

    def address(self, name: str) -> str:
        """The upstream address nginx reports for that node (X-Upstream-Addr)."""
        return f"127.0.0.1:{self.process(name)['port']}"

    def name_of(self, address: str) -> str:
        return next(p["name"] for p in self.manifest["processes"] if f"127.0.0.1:{p['port']}" == address)

    def supervisorctl(self, *args: str) -> str:
        ctl = Path(sys.executable).parent / "supervisorctl"
        out = subprocess.run(
            [str(ctl), "-c", self.manifest["supervisord_conf"], *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return out.stdout.strip()

    def pid(self, name: str) -> int:
        return int(self.supervisorctl("pid", name))

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> int:
        """SIGKILL by default: no shutdown hook runs, the kernel tears the sockets down.
        (SIGTERM is the graceful stop: uvicorn finishes in-flight requests first.)"""
        pid = self.pid(name)
        os.kill(pid, sig)
        return pid

    def wait_ready(self, name: str, *, not_pid: int | None = None, timeout: float = 90) -> None:
        """Until supervisord has restarted ``name`` (a pid other than ``not_pid``) and it is ready."""
        url = f"http://{self.address(name)}/readyz"
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                restarted = not_pid is None or self.pid(name) != not_pid
                if restarted and httpx.get(url, timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} not ready again within {timeout} s")
            time.sleep(0.2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _free_port_base() -> int:
    """A base whose +101/102, +201/202, +301..304, +401/402 ports are all free."""
    offsets = (101, 102, 201, 202, 301, 302, 303, 304, 401, 402)
    for base in range(21000, 60000, 1000):
        if all(port_free(base + o) for o in offsets):
            return base
    raise RuntimeError("no free port range for the e2e cluster")


def _drop_database(database_url: str, name: str) -> None:
    u = urlsplit(database_url)
    conn = pymysql.connect(
        host=u.hostname, port=u.port or 3306, user=u.username, password=u.password or "", connect_timeout=5
    )
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


async def _drop_search_index(url: str, index: str) -> None:
    search = Parley(Settings(elasticsearch_url=url, search_index=index), "tool").search
    await search.start()
    try:
        await search.drop()  # type: ignore[attr-defined]
    finally:
        await search.close()


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    urls = {e: engine_url(e) for e in ("mysql", "kafka", "redis", "elasticsearch")}
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        message = "nginx not installed (bash deploy/local/nginx.sh install)"
        if engines_required():
            pytest.fail(message)
        pytest.skip(message)
    tag = uuid.uuid4().hex[:10]
    # Under the repo's .state/, not pytest's 0700 tmp dirs: nginx workers run as www-data
    # when the tests run as root, and must reach their temp folder.
    state_dir = REPO / ".state" / "e2e" / tag
    database = f"parley_test_e2e_{tag}"
    events_topic, dead_letter_topic = topic_names(tag)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")},
        "PARLEY_DATABASE_URL": urls["mysql"],
        "PARLEY_KAFKA_BOOTSTRAP": urls["kafka"],
        "PARLEY_REDIS_URL": urls["redis"],
        "PARLEY_ELASTICSEARCH_URL": urls["elasticsearch"],
        "PARLEY_EVENTS_TOPIC": events_topic,
        "PARLEY_DEAD_LETTER_TOPIC": dead_letter_topic,
        "PARLEY_EVENTS_PARTITIONS": "4",
        "PARLEY_SEARCH_INDEX": f"parley-test-{tag}",
        "PARLEY_CONSUMER_GROUP_PREFIX": f"parley-test-{tag}.",
        "PARLEY_REDIS_KEY_PREFIX": f"parley-test-{tag}:",
        "PARLEY_LOG_LEVEL": "INFO",
    }
    command = [
        sys.executable,
        str(LAUNCHER),
        "--state-dir",
        str(state_dir),
        "--gateway-port",
        str(_free_port()),
        "--port-base",
        str(_free_port_base()),
        "--database",
        database,
        # distinct from `make cluster`'s node ids (0-31): both may share one Redis
        "--node-id-base",
        "500",
        "--slack-nodes",
        "2",
        "--timeout",
        str(START_TIMEOUT - 20),
    ]
    started = time.monotonic()
    up = subprocess.run(
        [*command, "up"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=False,
    )
    try:
        if up.returncode != 0:
            pytest.fail(f"cluster did not start:\n{up.stdout}\n{up.stderr}"[-6000:])
        manifest = json.loads((state_dir / "cluster.json").read_text())
        yield Cluster(state_dir, manifest, time.monotonic() - started)
    finally:
        subprocess.run([*command, "down"], env=env, cwd=REPO, capture_output=True, timeout=120, check=False)
        with contextlib.suppress(Exception):
            _drop_database(urls["mysql"], database)
        with contextlib.suppress(Exception):
            asyncio.run(_drop_search_index(urls["elasticsearch"], f"parley-test-{tag}"))
        # After ``down``: no process of the cluster still produces to them or consumes them.
        delete_topics_blocking(urls["kafka"], (events_topic, dead_letter_topic))
        if os.environ.get("PARLEY_E2E_KEEP") != "1":
            shutil.rmtree(state_dir, ignore_errors=True)
