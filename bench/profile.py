"""Sampling the server under load with py-spy, and reading the samples.

py-spy (``pip install py-spy``; not a dependency of Parley) attaches to the server's pid from
outside, so the server runs unmodified. ``record --format raw`` writes collapsed stacks
(``frame;frame;…;leaf count``); from them this module ranks functions by *self* time (samples
where the function itself was running) and by *inclusive* time (samples with it anywhere on
the stack), and groups self time by package, which is usually the most telling view.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.scenario import progress

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")
SAMPLE_RATE = 100


@dataclass
class Recording:
    task: asyncio.Task[int]
    output: Path


async def record_later(pid: int, delay: float, duration: float, output_base: Path) -> Recording:
    """Start sampling ``pid`` after ``delay`` seconds, for ``duration`` seconds."""
    beside_python = Path(sys.executable).with_name("py-spy")
    exe = str(beside_python) if beside_python.exists() else shutil.which("py-spy")
    if exe is None:
        raise RuntimeError("py-spy is not installed: pip install py-spy (into the venv)")
    output_base.parent.mkdir(parents=True, exist_ok=True)
    output = output_base.with_suffix(".collapsed.txt")

    async def run() -> int:
        await asyncio.sleep(delay)
        proc = await asyncio.create_subprocess_exec(
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(duration))),
            "--rate",
            str(SAMPLE_RATE),
            "--format",
            "raw",
            # Only the thread holding the GIL: the server's ceiling is one interpreter, and
            # threads blocked on the GIL (aiosqlite's workers) would otherwise look busy.
            "--gil",
            "--output",
            str(output),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            progress(f"py-spy failed ({proc.returncode}): {err.decode(errors='replace')[-500:]}")
        return proc.returncode or 0

    return Recording(asyncio.create_task(run()), output)


async def finish(recording: Recording, top: int = 25) -> None:
    await recording.task
    if recording.output.exists():
        progress(f"profile written to {recording.output}")
        print(report(recording.output, top), flush=True)


def _frames(line: str) -> tuple[list[str], int]:
    stack, _, count = line.rstrip().rpartition(" ")
    return stack.split(";"), int(count)


def _where(frame: str) -> tuple[str, str]:
    """(function, file) of a py-spy frame ``func (path/file.py:123)``."""
    match = FRAME.match(frame.strip())
    if match is None:
        return frame.strip(), ""
    return match.group("func"), match.group("file")


def package_of(path: str) -> str:
    """A readable owner for a source file: the site-packages distribution, a repo module, or
    the standard library module."""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    for root in ("parley/", "services/"):
        if f"/{root}" in path or path.startswith(root):
            tail = path[path.find(root) :]
            return tail.removesuffix(".py").replace("/", ".")
    if "/lib/python3" in path:
        module = path.split("/lib/python3", 1)[1].split("/", 1)[1]
        return "stdlib:" + module.removesuffix(".py").replace("/", ".")
    return path or "native"


def report(collapsed: Path, top: int = 25) -> str:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        if not line.strip():
            continue
        frames, count = _frames(line)
        total += count
        func, file = _where(frames[-1])
        self_time[f"{func} ({file})"] += count
        by_package[package_of(file)] += count
        for key in {f"{f} ({p})" for f, p in (_where(fr) for fr in frames)}:
            inclusive[key] += count
    if total == 0:
        return "(no samples)"

    def rows(counter: Counter[str]) -> str:
        return "\n".join(f"  {100 * n / total:5.1f}%  {name}" for name, n in counter.most_common(top))

    return (
        f"{total} samples at {SAMPLE_RATE} Hz (stacks of the thread holding the GIL)\n"
        f"self time by package:\n{rows(by_package)}\n"
        f"self time by function:\n{rows(self_time)}\n"
        f"inclusive time by function:\n{rows(inclusive)}"
    )
