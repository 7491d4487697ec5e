"""``python -m bench.write_cost``: the embedded store's CPU per durable send in a write batch.

The send-deliver scenario measures the whole all-in-one on a shared 2-core VM whose speed
drifts by tens of percent within an hour. This one isolates the group commit
(``MessageWriter``: the batch's checks, seqs, message and outbox inserts, the commit) on the
embedded SQLite store, with the WebSocket, the relay and the consumers left out, and reports the
process's CPU per send (every thread: the loop's hand-offs and the database thread). Run the
variants to compare in one invocation each, alternately; it is stable to a few percent.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from parley.composition import Parley
from parley.domain.actions import accounts, conversations, workspaces
from parley.domain.message_writer import SendRequest
from parley.settings import Settings

TEXT = "hello @channel, a message of the size people type in a chat: about eighty characters."


async def measure(
    data_dir: Path, batch: int, batches: int, repeats: int, database_url: str | None = None
) -> list[tuple[float, float]]:
    """(CPU µs per send, wall ms per batch), once per repeat, over ``batches`` batches of
    ``batch`` concurrent sends."""
    parley = Parley(Settings(data_dir=data_dir, database_url=database_url), "tool")
    await parley.start("store")  # migrates the new database
    deps = parley.deps
    run = uuid.uuid4().hex[:8]  # a MySQL database may hold an earlier run's accounts
    users = [await accounts.sign_up(deps, f"w{run}{i}", "a-long-password") for i in range(batch)]
    workspace = await workspaces.create_workspace(deps, users[0], "Bench", f"bench-{run}")
    channel = await conversations.create_channel(deps, users[0], workspace.id, "general")
    for user in users[1:]:
        await workspaces.add_workspace_member(deps, users[0], workspace.id, user.username)
        await conversations.join(deps, user, channel.id)
    writer = parley.message_writer
    sent = 0

    async def one_batch() -> None:
        nonlocal sent
        requests = [
            SendRequest(
                message_id=deps.ids.next_id(),
                user_id=user.id,
                conversation_id=channel.id,
                text=TEXT,
                client_msg_id=f"c{sent}-{i}",
                thread_root_id=None,
                created_at=datetime.now(UTC),
            )
            for i, user in enumerate(users)
        ]
        sent += 1
        # All submitted before the writer runs: they form one batch, as under load.
        stored = await asyncio.gather(*(writer.submit(r) for r in requests))
        seqs = sorted(message.seq for message, created in stored if created)
        if len(seqs) != len(requests) or seqs != list(range(seqs[0], seqs[0] + len(seqs))):
            raise RuntimeError(f"a batch did not store each send once with consecutive seqs: {seqs}")

    for _ in range(max(1, batches // 10)):  # warm-up: caches, compiled statements
        await one_batch()
    results = []
    for _ in range(repeats):
        started, wall = time.process_time(), time.perf_counter()
        for _ in range(batches):
            await one_batch()
        cpu_per_send = (time.process_time() - started) / (batches * batch) * 1e6
        results.append((cpu_per_send, (time.perf_counter() - wall) / batches * 1e3))
    await parley.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.write_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=20, help="sends per group-commit batch (default 20)")
    parser.add_argument("--batches", type=int, default=200, help="batches per repeat (default 200)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats; the median is reported (default 5)")
    parser.add_argument(
        "--database-url", help="a MySQL/MariaDB store (mysql+aiomysql://…) instead of the embedded SQLite"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="parley-write-cost-") as tmp:
        runs = asyncio.run(measure(Path(tmp), args.batch, args.batches, args.repeats, args.database_url))
    cpu, wall = [r[0] for r in runs], [r[1] for r in runs]
    print(
        f"write batch of {args.batch} ({'MySQL' if args.database_url else 'SQLite'}): "
        f"{statistics.median(cpu):.0f} µs CPU per send, {statistics.median(wall):.2f} ms per batch "
        f"(medians of {len(runs)}; CPU {', '.join(f'{c:.0f}' for c in cpu)})"
    )


if __name__ == "__main__":
    main()
