"""docker-compose.yml and the gateway config, checked without a Docker engine.

Debian's ``docker-compose`` (1.29) validates the file (``deploy/local/compose-tools.sh`` installs
it; missing, the test skips, or fails under ``PARLEY_REQUIRE_ENGINES=1`` as CI runs it). The rest
reads the files themselves: what would break ``make up`` for a user even when the syntax is fine
- two nodes with one snowflake node id, nginx pointing at a service that does not exist, a
dependency on a service that has no healthcheck to wait for.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.engines import engines_required

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
PARLEY_SERVICES = {
    "api-1",
    "api-2",
    "realtime-1",
    "realtime-2",
    "slack",
    "relay",
    "fanout",
    "indexer",
    "cache",
}


def _require(tool: str, hint: str) -> str:
    path = shutil.which(tool) or next((p for p in (f"/usr/sbin/{tool}",) if Path(p).exists()), None)
    if path is None:
        if engines_required():
            pytest.fail(f"PARLEY_REQUIRE_ENGINES=1 but {tool} is not installed ({hint})")
        pytest.skip(f"{tool} not installed ({hint})")
    return path


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def test_docker_compose_validates_the_file() -> None:
    tool = _require("docker-compose", "bash deploy/local/compose-tools.sh")
    for profile in ([], ["--profile", "observability"]):
        out = subprocess.run(
            [tool, "-f", str(COMPOSE_FILE), *profile, "config", "-q"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=REPO,
        )
        assert out.returncode == 0, out.stderr


def test_the_committed_compose_gateway_config_is_rendered_from_the_template() -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "gateway" / "render.py"), "compose", "--check"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr


def test_every_parley_node_has_its_own_node_id_and_the_topology_is_complete(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert PARLEY_SERVICES | {"nginx", "mysql", "kafka", "redis", "elasticsearch"} <= services.keys()
    node_ids = [services[s]["environment"]["PARLEY_NODE_ID"] for s in sorted(PARLEY_SERVICES)]
    assert len(set(node_ids)) == len(node_ids), f"snowflake node ids collide: {node_ids}"
    for name in PARLEY_SERVICES:
        assert services[name]["command"] == [f"services.{name.split('-')[0]}"]
        assert services[name]["image"] == "parley:local", "one image, the service chosen by command"


def test_only_the_consumers_off_the_users_path_run_at_a_lower_cpu_priority(compose: dict[str, Any]) -> None:
    niceness = {name: compose["services"][name]["environment"].get("PARLEY_NICE") for name in PARLEY_SERVICES}
    assert {name for name, nice in niceness.items() if nice} == {"indexer", "cache"}
    assert niceness["indexer"] == niceness["cache"] == "10"


def test_every_dependency_waits_for_a_healthcheck(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        assert "healthcheck" in service or name == "kafka-exporter", f"{name} has no healthcheck"
        assert service.get("deploy", {}).get("resources", {}).get("limits"), f"{name} has no resource limits"
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, f"{name} → {dependency}"
            assert "healthcheck" in services[dependency], f"{name} waits for {dependency}, which has none"


def test_nginx_and_prometheus_point_at_services_that_exist(compose: dict[str, Any]) -> None:
    services = compose["services"].keys()
    gateway = (REPO / "gateway" / "nginx.compose.conf").read_text()
    upstream_hosts = set(re.findall(r"^\s*server ([\w.-]+):\d+", gateway, flags=re.MULTILINE))
    assert upstream_hosts == {"api-1", "api-2", "realtime-1", "realtime-2", "slack"}
    scrape = yaml.safe_load((REPO / "deploy" / "observability" / "prometheus.yml").read_text())
    targets = {
        t.split(":")[0]
        for job in scrape["scrape_configs"]
        for c in job["static_configs"]
        for t in c["targets"]
    }
    assert targets >= PARLEY_SERVICES, f"not scraped: {PARLEY_SERVICES - targets}"
    assert targets - {"localhost"} <= services


def test_the_local_rendering_of_the_gateway_passes_nginx_t(tmp_path: Path) -> None:
    nginx = _require("nginx", "bash deploy/local/nginx.sh install")
    sys.path.insert(0, str(REPO))
    from gateway.render import local_config, render

    (tmp_path / "tmp").mkdir()
    config = local_config(
        state_dir=tmp_path,
        log_dir=tmp_path,
        listen="127.0.0.1:1",
        api_ports=[1, 2],
        realtime_ports=[3, 4],
        web_root=REPO / "web",
    )
    conf = tmp_path / "nginx.conf"
    conf.write_text(render(config))
    out = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr


def test_the_dashboard_charts_metrics_the_services_export() -> None:
    dashboard = json.loads(
        (
            REPO / "deploy" / "observability" / "grafana" / "dashboards" / "parley-message-flow.json"
        ).read_text()
    )
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {re.sub(r"_(bucket|count|sum)$", "", m) for e in exprs for m in re.findall(r"\bparley_\w+", e)}
    exported = (REPO / "parley" / "runtime" / "metrics.py").read_text()
    missing = {m for m in used if f'"{m.removesuffix("_total")}' not in exported}
    assert not missing, f"charted but not exported: {missing}"
    for wanted in (
        "parley_messages_sent_total",
        "parley_events_consumed_total",
        "parley_ws_events_delivered_total",
    ):
        assert wanted in used
    assert any("kafka_consumergroup_lag" in e for e in exprs), "consumer lag per group"
