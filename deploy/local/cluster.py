"""The local cluster: the docker-compose topology as local processes, without Docker.

    python deploy/local/cluster.py up       # render configs, start everything, wait until ready
    python deploy/local/cluster.py status   # the process table (exit 0 when all are ready)
    python deploy/local/cluster.py down     # stop everything `up` started (not the engines)

What runs, under supervisord (a real process supervisor: restarts crashed nodes, one log file
per process, ``supervisorctl`` to poke at single processes):

    nginx        gateway port (8080)      gateway/nginx.conf.template rendered for 127.0.0.1
    api-1, -2    port base + 101, 102     python -m services.api
    realtime-1,2 port base + 201, 202     python -m services.realtime
    relay        port base + 301          python -m services.relay
    fanout       port base + 302          python -m services.fanout
    indexer      port base + 303          python -m services.indexer
    cache        port base + 304          python -m services.cache
    slack-1…     port base + 401…         python -m services.slack (Slack Web API + Socket Mode)

The engines (MariaDB, Kafka, Redis, Elasticsearch) are NOT started here: ``make cluster`` runs
``deploy/local/engines.sh up`` first, and their URLs come from the environment
(``PARLEY_DATABASE_URL``, …) or, where unset, from ``deploy/local/engines.sh env``. The cluster
gets its own MySQL database (``--database``, created if missing), a secret generated once into
the state folder, and distinct ``PARLEY_NODE_ID`` per process (snowflake ids must not collide).
Every other ``PARLEY_*`` variable in the caller's environment is passed to every service, which
is how tests give a cluster its own Kafka topics and search index.

``up`` is idempotent: a running cluster whose configuration did not change is left alone;
changed processes are restarted (``supervisorctl update`` semantics).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: make `gateway` importable
    sys.path.insert(0, str(REPO))

from gateway.render import fill, local_config, render  # noqa: E402

HERE = Path(__file__).resolve().parent
SUPERVISORD_TEMPLATE = HERE / "supervisord.conf.template"
PROGRAM_TEMPLATE = HERE / "program.conf.template"
ENGINE_VARS = (
    "PARLEY_DATABASE_URL",
    "PARLEY_KAFKA_BOOTSTRAP",
    "PARLEY_REDIS_URL",
    "PARLEY_ELASTICSEARCH_URL",
)
# Set per process or by the cluster itself; never taken from the caller's environment.
CLUSTER_VARS = frozenset(
    {"PARLEY_HOST", "PARLEY_PORT", "PARLEY_NODE_ID", "PARLEY_SECRET_KEY", "PARLEY_ENV", "PARLEY_NICE"}
)
WORKERS = ("relay", "fanout", "indexer", "cache")
# Off the users' path (search freshness, a watermarked history cache): at a lower CPU priority,
# so on one machine they yield the cores to the hops a delivery waits on (PARLEY_NICE).
BACKGROUND = frozenset({"indexer", "cache"})
BACKGROUND_NICE = "10"
DATABASE_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")


def log(message: str) -> None:
    print(f"[cluster] {message}", file=sys.stderr, flush=True)


class ClusterError(RuntimeError):
    """A failure with a message meant for the person who ran the command."""


# -- what to run ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    state_dir: Path
    gateway_port: int = 8080
    port_base: int = 8000
    database: str = "parley_cluster"
    api_nodes: int = 2
    realtime_nodes: int = 2
    # One, as in docker-compose.yml; more spread apps over nodes (nginx pins each app's Socket
    # Mode sockets to one node by hashing its app id), the e2e tests run two to prove the pinning.
    slack_nodes: int = 1
    node_id_base: int = 0
    login_rate: str = "10r/m"
    login_burst: int = 5
    timeout: float = 180.0

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def nginx_dir(self) -> Path:
        return self.state_dir / "nginx"

    @property
    def supervisord_conf(self) -> Path:
        return self.state_dir / "supervisord.conf"

    @property
    def supervisord_pid(self) -> Path:
        return self.state_dir / "supervisord.pid"

    @property
    def manifest(self) -> Path:
        return self.state_dir / "cluster.json"

    @property
    def socket(self) -> Path:
        path = self.state_dir / "supervisor.sock"
        # AF_UNIX paths are limited to ~107 bytes: deep state folders get a short alias in /tmp.
        if len(str(path)) > 100:
            digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:12]
            return Path(f"/tmp/parley-cluster-{digest}.sock")
        return path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}/"


@dataclass(frozen=True)
class Process:
    name: str  # the supervisor program name
    kind: str  # nginx or the service module under services/
    port: int
    node_id: int | None
    log: str

    @property
    def probe_url(self) -> str:
        # Services: /readyz (every engine they need answers). nginx: its own /healthz.
        return f"http://127.0.0.1:{self.port}/{'healthz' if self.kind == 'nginx' else 'readyz'}"


def plan(spec: Spec) -> list[Process]:
    def proc(name: str, kind: str, port: int, node: int | None) -> Process:
        return Process(name, kind, port, node, str(spec.log_dir / f"{name}.log"))

    b, n = spec.port_base, spec.node_id_base
    procs = [proc("nginx", "nginx", spec.gateway_port, None)]
    procs += [proc(f"api-{i}", "api", b + 100 + i, n + i) for i in range(1, spec.api_nodes + 1)]
    procs += [
        proc(f"realtime-{i}", "realtime", b + 200 + i, n + 10 + i) for i in range(1, spec.realtime_nodes + 1)
    ]
    procs += [proc(w, w, b + 301 + i, n + 21 + i) for i, w in enumerate(WORKERS)]
    procs += [proc(f"slack-{i}", "slack", b + 400 + i, n + 30 + i) for i in range(1, spec.slack_nodes + 1)]
    return procs


# -- engines, database, secret -------------------------------------------------------------------
def engine_urls(environ: Mapping[str, str]) -> dict[str, str]:
    """Engine URLs from the environment, the gaps filled from ``deploy/local/engines.sh env``."""
    urls = {v: environ[v] for v in ENGINE_VARS if environ.get(v)}
    if len(urls) < len(ENGINE_VARS) and (HERE / "engines.sh").exists():
        out = subprocess.run(
            ["bash", str(HERE / "engines.sh"), "env"], capture_output=True, text=True, timeout=60, check=False
        )
        for line in out.stdout.splitlines():
            words = shlex.split(line)
            if len(words) == 2 and words[0] == "export" and "=" in words[1]:
                name, value = words[1].split("=", 1)
                urls.setdefault(name, value)
    missing = [v for v in ENGINE_VARS if not urls.get(v)]
    if missing:
        raise ClusterError(
            f"no URL for {', '.join(missing)}: start the engines (`make engines`) or export the variables"
        )
    return {v: urls[v] for v in ENGINE_VARS}


def with_database(url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=database).render_as_string(hide_password=False)


def ensure_database(url: str) -> None:
    """CREATE DATABASE IF NOT EXISTS, as the application user of the URL."""
    import pymysql
    from sqlalchemy.engine import make_url

    u = make_url(url)
    name = u.database or ""
    if not DATABASE_NAME.match(name):
        raise ClusterError(f"database name {name!r} must match {DATABASE_NAME.pattern}")
    try:
        conn = pymysql.connect(
            host=u.host or "127.0.0.1",
            port=u.port or 3306,
            user=u.username or "",
            password=u.password or "",
            connect_timeout=5,
        )
    except pymysql.MySQLError as exc:
        raise ClusterError(f"MySQL at {u.host}:{u.port} does not answer: {exc}") from exc
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
    except pymysql.MySQLError as exc:
        raise ClusterError(
            f"cannot create database {name!r} as {u.username!r}: {exc}. Grant that user rights on it, "
            "or choose a database it may create with --database / PARLEY_CLUSTER_DATABASE"
        ) from exc
    finally:
        conn.close()


def cluster_secret(spec: Spec) -> str:
    """One secret per cluster, made on first start: every api and realtime node must verify the
    tokens the others issue, and PARLEY_ENV=prod refuses the development default."""
    path = spec.state_dir / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def service_environment(spec: Spec, environ: Mapping[str, str]) -> dict[str, str]:
    """What every service process shares (per-process port and node id are added later)."""
    urls = engine_urls(environ)
    urls["PARLEY_DATABASE_URL"] = with_database(urls["PARLEY_DATABASE_URL"], spec.database)
    passthrough = {
        k: v
        for k, v in environ.items()
        if k.startswith("PARLEY_") and k not in CLUSTER_VARS and k not in ENGINE_VARS
    }
    passthrough = {
        k: v for k, v in passthrough.items() if not k.startswith(("PARLEY_CLUSTER_", "PARLEY_TEST_"))
    }
    passthrough.pop("PARLEY_REQUIRE_ENGINES", None)
    return {
        "PARLEY_DATA_DIR": str(spec.state_dir / "data"),
        **passthrough,
        **urls,
        "PARLEY_ENV": "prod",
        "PARLEY_SECRET_KEY": cluster_secret(spec),
        "PARLEY_HOST": "127.0.0.1",
        "PYTHONUNBUFFERED": "1",
    }


# -- configuration files ---------------------------------------------------------------------------
def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    if found is None:
        raise ClusterError("nginx is not installed: run `bash deploy/local/nginx.sh install`")
    return found


def nginx_command(spec: Spec) -> list[str]:
    conf = spec.nginx_dir / "nginx.conf"
    # daemon off: supervisord owns the process (the compose image sets the same on its command line)
    return [
        nginx_binary(),
        "-p",
        str(spec.nginx_dir),
        "-c",
        str(conf),
        "-e",
        str(spec.log_dir / "nginx-error.log"),
        "-g",
        "daemon off;",
    ]


def write_nginx_config(spec: Spec, procs: Sequence[Process]) -> bool:
    """Render, write and ``nginx -t`` the gateway config; True if it changed."""
    config = local_config(
        state_dir=spec.nginx_dir,
        log_dir=spec.log_dir,
        listen=f"127.0.0.1:{spec.gateway_port}",
        api_ports=[p.port for p in procs if p.kind == "api"],
        realtime_ports=[p.port for p in procs if p.kind == "realtime"],
        slack_ports=[p.port for p in procs if p.kind == "slack"],
        web_root=REPO / "web",
        login_rate=spec.login_rate,
        login_burst=spec.login_burst,
    )
    path = spec.nginx_dir / "nginx.conf"
    text = render(config)
    changed = not path.exists() or path.read_text() != text
    path.write_text(text)
    test = subprocess.run(
        [*nginx_command(spec)[:-2], "-t"], capture_output=True, text=True, timeout=30, check=False
    )
    if test.returncode != 0:
        raise ClusterError(f"nginx rejects the rendered config:\n{test.stderr}")
    return changed


def _supervisor_env_value(value: str) -> str:
    # supervisord expands %(name)s in environment= and splits on commas outside quotes.
    if '"' in value or "\n" in value:
        raise ClusterError(f"value not representable in supervisord's environment=: {value!r}")
    return '"' + value.replace("%", "%%") + '"'


def program_section(spec: Spec, proc: Process, shared_env: Mapping[str, str]) -> str:
    if proc.kind == "nginx":
        command, env, stopsignal = nginx_command(spec), {}, "QUIT"  # QUIT: finish open requests
    else:
        command = [sys.executable, "-m", f"services.{proc.kind}"]
        env = {**shared_env, "PARLEY_PORT": str(proc.port), "PARLEY_NODE_ID": str(proc.node_id)}
        if proc.kind in BACKGROUND:
            env["PARLEY_NICE"] = BACKGROUND_NICE
        stopsignal = "TERM"
    return fill(
        PROGRAM_TEMPLATE.read_text(),
        {
            "name": proc.name,
            "command": shlex.join(command).replace("%", "%%"),
            "repo": str(REPO),
            "environment": ",".join(f"{k}={_supervisor_env_value(v)}" for k, v in sorted(env.items())),
            "stopsignal": stopsignal,
            "log_dir": str(spec.log_dir),
        },
    )


def write_supervisord_config(spec: Spec, procs: Sequence[Process], shared_env: Mapping[str, str]) -> None:
    text = fill(
        SUPERVISORD_TEMPLATE.read_text(),
        {
            "socket": str(spec.socket),
            "log_dir": str(spec.log_dir),
            "state_dir": str(spec.state_dir),
            "repo": str(REPO),
            "programs": "\n".join(program_section(spec, p, shared_env) for p in procs),
        },
    )
    # Secrets and engine passwords are in there: owner-only.
    fd = os.open(spec.supervisord_conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


# -- supervisord -----------------------------------------------------------------------------------
def _supervisor_tool(name: str) -> str:
    tool = Path(sys.executable).parent / name
    if not tool.exists():
        raise ClusterError(f"{name} not found next to {sys.executable}: pip install supervisor==4.3.0")
    return str(tool)


def rpc(spec: Spec) -> Any:
    from supervisor.xmlrpc import SupervisorTransport  # type: ignore[import-untyped]

    transport = SupervisorTransport(None, None, f"unix://{spec.socket}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def supervisor_running(spec: Spec) -> bool:
    if read_pid(spec.supervisord_pid) is None:
        return False
    try:
        return bool(rpc(spec).supervisor.getState()["statename"] == "RUNNING")
    except (OSError, xmlrpc.client.Error):
        return False


def start_supervisord(spec: Spec) -> None:
    # A clean environment: services get exactly what their environment= lines say, not
    # whatever the caller's shell happened to export.
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "LC_ALL", "TZ") if k in os.environ}
    subprocess.run(
        [_supervisor_tool("supervisord"), "-c", str(spec.supervisord_conf)], env=env, check=True, timeout=30
    )
    deadline = time.monotonic() + 20
    while not supervisor_running(spec):
        if time.monotonic() > deadline:
            raise ClusterError(f"supervisord did not come up; see {spec.log_dir / 'supervisord.log'}")
        time.sleep(0.1)


def apply_config(spec: Spec) -> None:
    """``supervisorctl update``: restart programs whose section changed, add new, drop gone."""
    server = rpc(spec)
    added, changed, removed = server.supervisor.reloadConfig()[0]
    for group in [*removed, *changed]:
        server.supervisor.stopProcessGroup(group)
        server.supervisor.removeProcessGroup(group)
    for group in [*changed, *added]:
        server.supervisor.addProcessGroup(group)
    if added or changed or removed:
        log(f"configuration applied: added {added}, changed {changed}, removed {removed}")
    for info in server.supervisor.getAllProcessInfo():
        if info["statename"] in ("STOPPED", "EXITED", "FATAL"):
            server.supervisor.startProcess(info["name"], False)


def process_info(spec: Spec) -> dict[str, dict[str, Any]]:
    try:
        return {i["name"]: i for i in rpc(spec).supervisor.getAllProcessInfo()}
    except (OSError, xmlrpc.client.Error):
        return {}


# -- waiting -------------------------------------------------------------------------------------
def _probe(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def tail(path: str, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(
            "    " + line for line in Path(path).read_text(errors="replace").splitlines()[-lines:]
        )
    return "    (no log yet)"


def wait_ready(spec: Spec, procs: Sequence[Process]) -> None:
    deadline = time.monotonic() + spec.timeout
    pending = list(procs)
    with httpx.Client() as client:
        while pending:
            pending = [p for p in pending if not _probe(client, p.probe_url)]
            if not pending:
                return
            states = process_info(spec)
            fatal = [p for p in pending if states.get(p.name, {}).get("statename") == "FATAL"]
            if fatal or time.monotonic() > deadline:
                broken = fatal or pending
                details = "\n".join(
                    f"  {p.name} ({states.get(p.name, {}).get('statename', '?')}), {p.probe_url}, "
                    f"log {p.log}:\n{tail(p.log)}"
                    for p in broken
                )
                why = "failed to start" if fatal else f"not ready after {spec.timeout:.0f} s"
                raise ClusterError(f"{len(broken)} process(es) {why}:\n{details}")
            time.sleep(0.2)


# -- the commands ----------------------------------------------------------------------------------
def up(spec: Spec, environ: Mapping[str, str]) -> list[Process]:
    started = time.monotonic()
    _supervisor_tool("supervisord")
    for d in (spec.state_dir, spec.log_dir, spec.nginx_dir, spec.nginx_dir / "tmp", spec.state_dir / "data"):
        d.mkdir(parents=True, exist_ok=True)
        # nginx workers run as www-data when we are root: they must reach nginx/tmp
        d.chmod(0o755)
    procs = plan(spec)
    shared_env = service_environment(spec, environ)
    ensure_database(shared_env["PARLEY_DATABASE_URL"])
    nginx_changed = write_nginx_config(spec, procs)
    write_supervisord_config(spec, procs, shared_env)
    if supervisor_running(spec):
        log("supervisord already running: applying the configuration")
        apply_config(spec)
        if nginx_changed:
            # same command line, new file: supervisord sees no change, so reload nginx itself
            # (HUP: new workers with the new config, old ones finish their requests)
            log("gateway config changed: reloading nginx")
            rpc(spec).supervisor.signalProcess("nginx", "HUP")
    else:
        stop_leftovers(spec)
        log(f"starting supervisord ({len(procs)} processes)…")
        start_supervisord(spec)
    wait_ready(spec, procs)
    write_manifest(spec, procs)
    log(f"up in {time.monotonic() - started:.1f} s")
    return procs


def down(spec: Spec) -> None:
    pid = read_pid(spec.supervisord_pid)
    if pid is not None:
        log(f"stopping supervisord (pid {pid}) and its processes…")
        with contextlib.suppress(OSError, xmlrpc.client.Error):
            rpc(spec).supervisor.shutdown()
        if not _wait_exit(pid, 60):
            log("supervisord still alive after 60 s: SIGKILL")
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    stop_leftovers(spec)
    log("down (engines left running: `make engines-down` stops them)")


def _wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return True
        time.sleep(0.1)
    return False


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return ""


def stop_leftovers(spec: Spec) -> None:
    """Processes of an earlier run that outlived their supervisord (it was SIGKILLed, say):
    the pids recorded in the manifest and nginx's pid file, each checked against its command
    line so that a recycled pid is never hit."""
    candidates: list[tuple[int, str]] = []
    nginx_pid = read_pid(spec.nginx_dir / "nginx.pid")
    if nginx_pid is not None:
        candidates.append((nginx_pid, "nginx"))
    with contextlib.suppress(OSError, ValueError, KeyError):
        for p in json.loads(spec.manifest.read_text())["processes"]:
            if p.get("pid"):
                candidates.append(
                    (int(p["pid"]), "nginx" if p["kind"] == "nginx" else f"services.{p['kind']}")
                )
    # signal all first, then wait: their graceful shutdowns overlap
    signalled = []
    for pid, marker in candidates:
        if marker in _cmdline(pid):
            log(f"stopping leftover {marker} (pid {pid})")
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGQUIT if marker == "nginx" else signal.SIGTERM)
                signalled.append(pid)
    for pid in signalled:
        if not _wait_exit(pid, 20):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def write_manifest(spec: Spec, procs: Sequence[Process]) -> None:
    """cluster.json: what is running where, for people and for the e2e tests."""
    info = process_info(spec)
    manifest = {
        "url": spec.url,
        "database": spec.database,
        "supervisord_conf": str(spec.supervisord_conf),
        "processes": [{**asdict(p), "pid": info.get(p.name, {}).get("pid")} for p in procs],
    }
    spec.manifest.write_text(json.dumps(manifest, indent=2) + "\n")


def read_manifest(spec: Spec) -> list[Process]:
    """The processes of the last `up` (status must describe what runs, not today's defaults)."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        fields = Process.__dataclass_fields__
        return [
            Process(**{k: v for k, v in p.items() if k in fields})
            for p in json.loads(spec.manifest.read_text())["processes"]
        ]
    return []


def print_table(spec: Spec, procs: Sequence[Process]) -> bool:
    info = process_info(spec)
    rows = [("PROCESS", "STATE", "PID", "PORT", "NODE", "LOG")]
    all_running = bool(info)
    for p in procs:
        i = info.get(p.name, {})
        state = i.get("statename", "DOWN")
        all_running = all_running and state == "RUNNING"
        node = "-" if p.node_id is None else str(p.node_id)
        rows.append((p.name, state, str(i.get("pid") or "-"), str(p.port), node, _relative(p.log)))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return all_running


def _relative(path: str) -> str:
    with contextlib.suppress(ValueError):
        return str(Path(path).relative_to(Path.cwd()))
    return path


@contextlib.contextmanager
def _errors_as_exit() -> Iterator[None]:
    try:
        yield
    except ClusterError as exc:
        log(f"ERROR: {exc}")
        raise SystemExit(1) from None


def parse_args(argv: Sequence[str]) -> tuple[str, Spec]:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="deploy/local/cluster.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument(
        "--state-dir", type=Path, default=Path(env.get("PARLEY_CLUSTER_DIR", REPO / ".state/cluster"))
    )
    parser.add_argument("--gateway-port", type=int, default=int(env.get("PARLEY_CLUSTER_PORT", "8080")))
    parser.add_argument(
        "--port-base",
        type=int,
        default=int(env.get("PARLEY_CLUSTER_PORT_BASE", "8000")),
        help="api nodes listen on base+101…, realtime on base+201…, workers on base+301…, slack on base+401…",
    )
    parser.add_argument("--database", default=env.get("PARLEY_CLUSTER_DATABASE", "parley_cluster"))
    parser.add_argument("--api-nodes", type=int, default=2)
    parser.add_argument("--realtime-nodes", type=int, default=2)
    parser.add_argument("--slack-nodes", type=int, default=1, help="Slack-compatible facade nodes (≥ 1)")
    parser.add_argument("--node-id-base", type=int, default=int(env.get("PARLEY_CLUSTER_NODE_ID_BASE", "0")))
    parser.add_argument("--login-rate", default="10r/m", help="nginx login limit (e.g. 10r/m)")
    parser.add_argument("--login-burst", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for readiness")
    args = parser.parse_args(argv)
    for flag in ("api_nodes", "realtime_nodes", "slack_nodes"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1 (nginx needs a server per upstream)")
    spec = Spec(
        state_dir=args.state_dir.resolve(),
        gateway_port=args.gateway_port,
        port_base=args.port_base,
        database=args.database,
        api_nodes=args.api_nodes,
        realtime_nodes=args.realtime_nodes,
        slack_nodes=args.slack_nodes,
        node_id_base=args.node_id_base,
        login_rate=args.login_rate,
        login_burst=args.login_burst,
        timeout=args.timeout,
    )
    return args.command, spec


def main(argv: Sequence[str] | None = None) -> int:
    command, spec = parse_args(sys.argv[1:] if argv is None else argv)
    with _errors_as_exit():
        if command == "up":
            procs = up(spec, os.environ)
            print(f"\nParley is up: {spec.url}\n")
            print_table(spec, procs)
            tool = _relative(str(Path(sys.executable).parent / "supervisorctl"))
            ctl = f"{tool} -c {_relative(str(spec.supervisord_conf))}"
            print(f"\nsingle processes:  {ctl} status|stop|start NAME")
            print("stop everything:   make cluster-down   (the engines stay up)")
        elif command == "down":
            down(spec)
        else:
            procs = read_manifest(spec) or plan(spec)
            if not supervisor_running(spec):
                print("cluster is down")
                return 3
            with contextlib.suppress(OSError, ValueError, KeyError):
                print(f"{json.loads(spec.manifest.read_text())['url']}\n")
            return 0 if print_table(spec, procs) else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
