"""What the figures were measured on: the machine, Python, the engines' versions, the load.

A benchmark figure without its machine is a rumour: every report starts with this header.
"""

from __future__ import annotations

import contextlib
import glob
import os
import platform
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pymysql
import redis

from bench.server import EngineUrls


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_gib() -> float:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    return float("nan")


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def machine_lines() -> list[str]:
    return [
        f"date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"machine: {os.cpu_count()} cores ({cpu_model()}), {memory_gib():.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}",
        f"python: {platform.python_version()} ({platform.python_implementation()})",
        f"load average at start (1/5/15 min): {load_average()}",
    ]


def engine_versions(urls: EngineUrls) -> dict[str, str]:
    """Each engine's own answer about its version; "unreachable: …" when it does not answer."""
    probes: dict[str, Callable[[], str]] = {
        "MariaDB/MySQL": lambda: _mysql_version(urls.database),
        "Kafka": _kafka_version,
        "Redis": lambda: _redis_version(urls.redis),
        "Elasticsearch": lambda: _elasticsearch_version(urls.elasticsearch),
    }
    versions: dict[str, str] = {}
    for name, probe in probes.items():
        try:
            versions[name] = probe()
        except Exception as exc:
            versions[name] = f"unreachable: {type(exc).__name__}: {exc}"[:120]
    return versions


def _mysql_version(url: str) -> str:
    parts = urlsplit(url.replace("+aiomysql", ""))
    conn = pymysql.connect(
        host=parts.hostname,
        port=parts.port or 3306,
        user=parts.username,
        password=parts.password or "",
        connect_timeout=3,
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            row = cur.fetchone()
    finally:
        conn.close()
    return str(row[0]) if row else "unknown"


def _redis_version(url: str) -> str:
    client = redis.Redis.from_url(url, socket_timeout=3)
    try:
        return str(client.info("server")["redis_version"])
    finally:
        client.close()


def _elasticsearch_version(url: str) -> str:
    body = httpx.get(url, timeout=3).json()
    return f"{body['version']['number']} (lucene {body['version'].get('lucene_version', '?')})"


def _kafka_version() -> str:
    """Kafka's wire protocol does not tell a broker's release, so read it from the jar name on
    the running broker's class path (``kafka_2.13-<version>.jar``)."""
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            args = Path(cmdline).read_bytes().decode(errors="replace").split("\0")
            if "kafka.Kafka" not in args or "-cp" not in args:
                continue
            classpath = args[args.index("-cp") + 1]
            for entry in classpath.split(":"):
                for jar in glob.glob(os.path.join(os.path.dirname(entry), "kafka_2.13-*.jar")):
                    match = re.search(r"kafka_2\.13-([0-9][^/]*)\.jar$", jar)
                    if match:
                        return f"{match.group(1)} (broker class path)"
    raise RuntimeError("no running kafka.Kafka process found")
