"""Render ``gateway/nginx.conf.template`` for one topology.

One template, two targets, so compose and the local cluster balance, retry, limit and label
requests the same way:

    python gateway/render.py compose              # writes gateway/nginx.compose.conf
    python gateway/render.py compose --check      # exit 1 if that file is stale
    python gateway/render.py local --listen 127.0.0.1:8080 --api 127.0.0.1:8101 ...

The local cluster launcher (``deploy/local/cluster.py``) imports :func:`local_config` and
:func:`render` instead of shelling out. Substitution is strict: a ``{{name}}`` without a value,
or a value without a ``{{name}}``, is an error, so template and renderer cannot drift apart.
nginx's own ``$variables`` are never touched.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

GATEWAY_DIR = Path(__file__).resolve().parent
TEMPLATE = GATEWAY_DIR / "nginx.conf.template"
COMPOSE_OUTPUT = GATEWAY_DIR / "nginx.compose.conf"
PLACEHOLDER = re.compile(r"\{\{([a-z_]+)\}\}")

# Port every Parley container listens on inside the compose network (PARLEY_PORT there).
COMPOSE_SERVICE_PORT = 8000
COMPOSE_API_HOSTS = ("api-1", "api-2")
COMPOSE_REALTIME_HOSTS = ("realtime-1", "realtime-2")
# Docker's embedded DNS server, reachable from every container on a user-defined network.
DOCKER_DNS = "127.0.0.11"


@dataclass(frozen=True)
class GatewayConfig:
    """Everything that differs between topologies; the rest is fixed in the template."""

    listen: str
    api_servers: Sequence[str]
    realtime_servers: Sequence[str]
    web_root: str
    pid_path: str
    error_log: str
    access_log: str
    temp_dir: str
    # Unprivileged user for the worker processes (only meaningful when the master is root).
    user: str | None = None
    # Re-resolve upstream host names (containers get new addresses when they restart).
    resolver: str | None = None
    mime_types: str = "/etc/nginx/mime.types"
    worker_processes: str = "auto"
    login_rate: str = "10r/m"
    login_burst: int = 5
    client_max_body_size: str = "1m"
    max_fails: int = 2
    fail_timeout: str = "5s"


def fill(template: str, values: Mapping[str, str]) -> str:
    """Replace every ``{{name}}``; refuse missing and unused names."""
    wanted = set(PLACEHOLDER.findall(template))
    missing = wanted - values.keys()
    unused = values.keys() - wanted
    if missing or unused:
        raise ValueError(f"template/values mismatch: missing {sorted(missing)}, unused {sorted(unused)}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def _server_lines(servers: Sequence[str], config: GatewayConfig) -> str:
    if not servers:
        raise ValueError("an upstream needs at least one server")
    resolve = " resolve" if config.resolver else ""
    return "\n".join(
        f"        server {s} max_fails={config.max_fails} fail_timeout={config.fail_timeout}{resolve};"
        for s in servers
    )


def render(config: GatewayConfig, template: str | None = None) -> str:
    text = TEMPLATE.read_text() if template is None else template
    resolver = f"    resolver {config.resolver} valid=10s ipv6=off;\n" if config.resolver else ""
    values = {
        "user_directive": f"user {config.user};" if config.user else "# (workers run as the invoking user)",
        "worker_processes": config.worker_processes,
        "pid_path": config.pid_path,
        "error_log": config.error_log,
        "mime_types": config.mime_types,
        "temp_dir": config.temp_dir,
        "resolver": resolver,
        "access_log": config.access_log,
        "login_rate": config.login_rate,
        "login_burst": str(config.login_burst),
        "login_retry_after": str(_retry_after_seconds(config.login_rate)),
        "api_servers": _server_lines(config.api_servers, config),
        "realtime_servers": _server_lines(config.realtime_servers, config),
        "listen": config.listen,
        "client_max_body_size": config.client_max_body_size,
        "web_root": config.web_root.rstrip("/"),
    }
    return fill(text, values)


def _retry_after_seconds(rate: str) -> int:
    """Seconds until the login zone admits one more request (``10r/m`` → 6)."""
    match = re.fullmatch(r"(\d+)r/([sm])", rate)
    if not match:
        raise ValueError(f"login rate must look like 10r/m or 1r/s, not {rate!r}")
    per, unit = int(match.group(1)), match.group(2)
    return max(1, -(-(60 if unit == "m" else 1) // per))


def compose_config() -> GatewayConfig:
    """The nginx container of docker-compose.yml (official nginx image, upstreams by name)."""
    return GatewayConfig(
        listen="80",
        api_servers=[f"{h}:{COMPOSE_SERVICE_PORT}" for h in COMPOSE_API_HOSTS],
        realtime_servers=[f"{h}:{COMPOSE_SERVICE_PORT}" for h in COMPOSE_REALTIME_HOSTS],
        web_root="/srv/parley/web",
        pid_path="/var/run/nginx.pid",
        error_log="/dev/stderr",
        access_log="/dev/stdout",
        temp_dir="/var/cache/nginx",
        user="nginx",
        resolver=DOCKER_DNS,
    )


def local_config(
    *,
    state_dir: Path,
    log_dir: Path,
    listen: str,
    api_ports: Sequence[int],
    realtime_ports: Sequence[int],
    web_root: Path,
    login_rate: str = "10r/m",
    login_burst: int = 5,
) -> GatewayConfig:
    """nginx as a local process of the no-Docker cluster: its own prefix, pid, logs, temp."""
    return GatewayConfig(
        listen=listen,
        api_servers=[f"127.0.0.1:{p}" for p in api_ports],
        realtime_servers=[f"127.0.0.1:{p}" for p in realtime_ports],
        web_root=str(web_root),
        pid_path=str(state_dir / "nginx.pid"),
        error_log=str(log_dir / "nginx-error.log"),
        access_log=str(log_dir / "nginx-access.log"),
        temp_dir=str(state_dir / "tmp"),
        # A root master would otherwise give its workers to "nobody"; www-data is the account
        # Debian's nginx package is built around. Non-root: the workers keep the caller's uid.
        user="www-data" if os.geteuid() == 0 else None,
        login_rate=login_rate,
        login_burst=login_burst,
    )


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    targets = parser.add_subparsers(dest="target", required=True)
    compose = targets.add_parser("compose", help="render gateway/nginx.compose.conf")
    compose.add_argument("--check", action="store_true", help="fail if the committed file is stale")
    compose.add_argument("--out", type=Path, default=COMPOSE_OUTPUT)
    local = targets.add_parser("local", help="render for nginx as a local process")
    local.add_argument("--listen", default="127.0.0.1:8080")
    local.add_argument("--api", nargs="+", type=int, default=[8101, 8102], metavar="PORT")
    local.add_argument("--realtime", nargs="+", type=int, default=[8201, 8202], metavar="PORT")
    local.add_argument("--state-dir", type=Path, default=Path(".state/cluster/nginx"))
    local.add_argument("--log-dir", type=Path, default=Path(".state/cluster/logs"))
    local.add_argument("--web-root", type=Path, default=GATEWAY_DIR.parent / "web")
    local.add_argument("--out", type=Path, help="write here instead of stdout")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    if args.target == "compose":
        text = render(compose_config())
        if args.check:
            if not args.out.exists() or args.out.read_text() != text:
                print(f"{args.out} is stale: run `python gateway/render.py compose`", file=sys.stderr)
                return 1
            return 0
    else:
        text = render(
            local_config(
                state_dir=args.state_dir.resolve(),
                log_dir=args.log_dir.resolve(),
                listen=args.listen,
                api_ports=args.api,
                realtime_ports=args.realtime,
                web_root=args.web_root.resolve(),
            )
        )
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
