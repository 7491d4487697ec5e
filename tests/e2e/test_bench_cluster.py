"""The benchmark harness against a cluster behind nginx (``python -m bench.run send-deliver --url
… --cluster-dir …``): a short send-deliver through the gateway reports every acknowledged
message delivered to every listener, with CPU summed over the cluster's processes and hop ages
added up over their ``/metrics``.

It drives the e2e session's cluster (tests/e2e/conftest.py) rather than starting its own: a
cluster start and stop costs 10-20 s on the 2-core machine, the send-deliver itself ~10 s with
these numbers. ``bench.deployments.ClusterServer`` (``--mode cluster``) starts its cluster with
the same launcher the fixture uses; its start, data and teardown are checked by the last test,
which does start one and is marked slow.
"""

from __future__ import annotations

import asyncio
import json
import os
from urllib.parse import urlsplit

import httpx
import pymysql
import pytest

from bench import send_deliver
from bench.deployments import ClusterServer
from bench.scenario import Options
from bench.server import Deployment, EngineUrls
from tests.e2e.conftest import Cluster
from tests.engines import engine_url

# `serial`: one process runs every test of the session's one cluster (tests/e2e/conftest.py).
pytestmark = [pytest.mark.engines, pytest.mark.slow, pytest.mark.timeout(240), pytest.mark.serial]


def _engine_urls() -> EngineUrls:
    parts = urlsplit(engine_url("mysql"))
    return EngineUrls(
        database=f"{parts.scheme}://{parts.netloc}",
        kafka=engine_url("kafka"),
        redis=engine_url("redis"),
        elasticsearch=engine_url("elasticsearch"),
    )


async def test_send_deliver_through_nginx_misses_nothing_and_sees_every_process(cluster: Cluster) -> None:
    # Tiny on purpose: the e2e cluster keeps its rate limits (50 sends/s per user, burst 200),
    # and the point is the harness's accounting through nginx, not a figure.
    options = Options(
        deployment=Deployment(url=cluster.url, cluster_dir=cluster.state_dir),
        senders=4,
        listeners=2,
        rooms=2,
        window=2,
        warmup=0.5,
        duration=1.0,
    )

    result = await send_deliver.run_once(options, "url")

    assert result["sends_per_s"] > 0 and result["paced_rate"] > 0
    assert result["sat_missing"] == 0 and result["missing"] == 0  # every ack reached every listener
    assert result["errors"] == 0 and result["order_violations"] == 0
    # CPU: every process of the manifest (nginx with its workers, both realtime nodes …) counted
    names = {p["name"] for p in cluster.manifest["processes"]}
    assert {k.removeprefix("cpu_") for k in result if k.startswith("cpu_") and "engine" not in k} == names
    assert result["server_cpu"] > 0
    # Hop ages: the delivery hop is only observed on the realtime nodes, fanout and relay only in
    # their processes: all present means every service's /metrics was read.
    assert result["age_delivery_p50_ms"] > 0 and result["age_fanout_p50_ms"] > 0
    assert result["age_relay_p50_ms"] > 0
    # Event-loop lag and collections, process by process: every Parley process reported its own.
    lagging = {k.split("_")[1] for k in result if k.startswith("loop_") and k.endswith("_lag_p99_ms")}
    assert lagging == names - {"nginx"}


async def test_cluster_mode_starts_its_own_cluster_and_removes_its_data() -> None:
    urls = _engine_urls()
    server = ClusterServer(urls=urls, api_nodes=1, realtime_nodes=1)
    await server.start()
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await http.get(f"{server.url}/healthz")).status_code == 200
            metrics = await asyncio.gather(*(http.get(f"{u}/metrics") for u in server.metrics_urls))
        assert all(m.status_code == 200 for m in metrics)
        assert set(server.processes()) >= {"nginx", "api-1", "realtime-1", "relay", "fanout"}
        manifest = json.loads((server.state_dir / "cluster.json").read_text())
        assert manifest["database"] == server.database
    finally:
        await server.stop()

    mysql = urlsplit(urls.database)
    conn = pymysql.connect(
        host=mysql.hostname, port=mysql.port or 3306, user=mysql.username, password=mysql.password or ""
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW DATABASES LIKE %s", (server.database,))
            assert cur.fetchall() == ()
    finally:
        conn.close()
    async with httpx.AsyncClient(base_url=urls.elasticsearch, timeout=10) as http:
        found = await http.get(f"/{server.index}-v*", params={"expand_wildcards": "all"})
        assert found.status_code == 200 and found.json() == {}
    assert not server.state_dir.exists()
    for pid in server.processes().values():  # every process of the cluster has exited
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
