"""CPU time of whole process trees: the processes under test and the local engines.

A process's own ``utime + stime`` leaves out its children until they exit, and nginx does its
work in worker processes under a master: so a figure for "nginx" (or any process) is the sum
over the process and its descendants, read from ``/proc``. The engines are found by their
command lines; on a 2-core machine shared with them, their CPU is part of what a run costs.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

from bench.server import cpu_seconds

# What an engine's command line contains (argv[0] or an argument); the first process found wins.
ENGINE_MARKERS = {
    "mariadb": ("mariadbd", "mysqld"),
    "kafka": ("kafka.Kafka", "-Dparley.engine=kafka"),
    "redis": ("redis-server",),
    "elasticsearch": ("org.elasticsearch.bootstrap.Elasticsearch", "-Dparley.engine=elasticsearch"),
}


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children[ppid].append(int(stat.parent.name))
    return children


def process_tree(pid: int, children: Mapping[int, list[int]] | None = None) -> list[int]:
    """``pid`` and every descendant of it that runs now."""
    children = _children_by_parent() if children is None else children
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def tree_cpu_seconds(pids: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each named process and its descendants (a process that has
    gone counts 0: supervisord restarted it, say)."""
    children = _children_by_parent()
    used: dict[str, float] = {}
    for name, pid in pids.items():
        total = 0.0
        for member in process_tree(pid, children):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += cpu_seconds(member)
        used[name] = total
    return used


def _cmdline(pid_dir: Path) -> list[str]:
    with contextlib.suppress(OSError):
        return (pid_dir / "cmdline").read_bytes().decode(errors="replace").split("\0")
    return []


def engine_pids(markers: Mapping[str, Iterable[str]] = ENGINE_MARKERS) -> dict[str, int]:
    """The local engines' root processes, by name; an engine not running here is left out."""
    found: dict[str, int] = {}
    for pid_dir in sorted(Path("/proc").glob("[0-9]*"), key=lambda p: int(p.name)):
        args = _cmdline(pid_dir)
        if not args or not args[0]:
            continue
        # redis-server rewrites its title: argv[0] is "redis-server 127.0.0.1:16379"
        program = args[0].split()[0].rsplit("/", 1)[-1]
        for engine, words in markers.items():
            if engine not in found and any(w == program or w in args for w in words):
                found[engine] = int(pid_dir.name)
    return found


def is_python(pid: int) -> bool:
    """Whether ``pid`` runs a Python interpreter (py-spy can sample it; nginx it cannot)."""
    args = _cmdline(Path(f"/proc/{pid}"))
    return bool(args) and args[0].split()[0].rsplit("/", 1)[-1].startswith("python")
