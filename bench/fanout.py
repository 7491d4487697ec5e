"""fanout-1000 and idle-connections: what one process does with many sockets.

fanout-1000: ``fanout_sockets`` sockets (20 accounts × 50 sockets each, the per-user socket limit
raised for the run) follow one channel; one more socket sends ``fanout_messages`` messages with
4 in flight. The figure is deliveries/s = (messages × sockets) ÷ (last delivery − first send).
Every socket counts its deliveries (all must arrive); every tenth one also parses them for
send→deliver latency. The same clients then drive a bare FastAPI/uvicorn broadcast loop
(``bench/baseline_app.py``) on the same machine, and the ratio of the two is reported, as
issue 5 asks. The harness reads every frame in one Python process, so on 2 cores the client
side can be the ceiling of *both* figures: the harness's CPU share is printed with them.

Before measuring, the run waits for the sockets to go quiet: each connect publishes the
account's presence to every socket of its workspace, a burst of ~N²/2 frames for N sockets.

idle-connections: 100 accounts, each in its own workspace with one channel, open sockets in
rounds (to each count of ``idle_counts``: 1,000 then 10,000), wait until quiet, wait 3 s more,
and read the server's VmRSS. Memory per connection = (RSS − RSS before any socket) ÷ sockets.
Separate workspaces keep the presence burst at (N/100)²/2 per account instead of N²/2.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import orjson

from bench import hops, profile
from bench.clients import Account, api, bounded, create_room, open_socket, send_many, sign_up_many
from bench.scenario import Figure, Options, Scenario, progress, running_server
from bench.server import Mode, ParleyServer
from bench.stats import summarize_ms
from bench.wire import WireSocket

MESSAGE_CREATED = '"type":"message.created"'
QUIET_SECONDS = 1.0
QUIET_TIMEOUT = 300.0
FANOUT_ACCOUNTS = 20
IDLE_ACCOUNTS = 100
PROFILE_SECONDS = 5.0


@dataclass
class Counter:
    """A socket that counts what it receives (and, given an ``arrivals`` list, notes when each
    message arrives)."""

    ws: WireSocket
    frames: int = 0
    deliveries: int = 0
    last_ns: int = 0
    arrivals: list[tuple[str, int]] | None = None

    def __post_init__(self) -> None:
        self.ws.set_handler(self.on_text)

    def on_text(self, raw: str, now: int) -> None:
        self.frames += 1
        if MESSAGE_CREATED in raw[:48]:
            self.deliveries += 1
            self.last_ns = now
            if self.arrivals is not None:
                cmid = orjson.loads(raw)["data"]["message"]["client_msg_id"] or ""
                self.arrivals.append((cmid, now))


async def wait_quiet(counters: Sequence[Counter]) -> None:
    """Until no socket has received anything for ``QUIET_SECONDS`` (bounded)."""
    deadline = time.monotonic() + QUIET_TIMEOUT
    seen = -1
    while time.monotonic() < deadline:
        total = sum(c.frames for c in counters)
        if total == seen:
            return
        seen = total
        await asyncio.sleep(QUIET_SECONDS)
    raise RuntimeError(f"sockets still receiving after {QUIET_TIMEOUT} s")


async def _open_counters(
    server: ParleyServer, accounts: Sequence[Account], per_account: int, compression: bool
) -> list[Counter]:
    targets = [a for a in accounts for _ in range(per_account)]
    sockets = await bounded(
        [partial(open_socket, server.ws_url, a, compression=compression) for a in targets], 64
    )
    return [Counter(ws, arrivals=[] if i % 10 == 0 else None) for i, ws in enumerate(sockets)]


async def _burst(
    sender: WireSocket, conversation_id: str, counters: Sequence[Counter], messages: int, window: int = 4
) -> dict[str, float]:
    """Send ``messages``, wait for every delivery; deliveries/s and send→deliver latency."""
    for c in counters:
        c.deliveries = 0
        if c.arrivals is not None:
            c.arrivals.clear()
    texts = [f"fanout message {n}" for n in range(messages)]
    sent_at: dict[str, int] = {}
    started = time.perf_counter_ns()
    await send_many([sender], conversation_id, texts, tag=f"f{started}", window=window, sent_at=sent_at)
    expected = messages * len(counters)
    deadline = time.monotonic() + 120
    while sum(c.deliveries for c in counters) < expected:
        if time.monotonic() > deadline:
            got = sum(c.deliveries for c in counters)
            raise RuntimeError(f"{got:,} of {expected:,} deliveries after 120 s")
        await asyncio.sleep(0.02)
    last = max(c.last_ns for c in counters)
    latencies = [
        t - sent_at[cmid] for c in counters if c.arrivals for cmid, t in c.arrivals if cmid in sent_at
    ]
    return {"per_s": expected / ((last - started) / 1e9), **summarize_ms(latencies, "latency")}


async def _fanout_against(server: ParleyServer, options: Options, baseline: bool) -> dict[str, float]:
    async with api(server.url) as http:
        if baseline:
            accounts = [Account("0", "anyone", "none")] * FANOUT_ACCOUNTS
            sender_account = accounts[0]
            conversation_id = "1"
        else:
            accounts = await sign_up_many(http, f"f{server.tag}u", FANOUT_ACCOUNTS)
            room = await create_room(http, accounts, name="fanout")
            sender_account, conversation_id = accounts[0], room.conversation_id
    per_account = options.fanout_sockets // FANOUT_ACCOUNTS
    progress(f"opening {per_account * FANOUT_ACCOUNTS:,} sockets ({'bare loop' if baseline else 'Parley'})")
    counters = await _open_counters(server, accounts, per_account, options.compression)
    sender = await open_socket(server.ws_url, sender_account, compression=options.compression)
    try:
        await wait_quiet(counters)
        await _burst(sender, conversation_id, counters, 10)  # warm-up
        recorder = None
        if options.profile_dir is not None and not baseline:
            out = options.profile_dir / f"fanout-{server.tag}"
            recorder = await profile.record_later(server.pid, 0.5, PROFILE_SECONDS, out)
        before = await hops.scrape_all([] if baseline else server.metrics_urls)
        usage, server_usage = time.process_time(), server.cpu_seconds()
        started = time.monotonic()
        result = await _burst(
            sender, conversation_id, counters, options.fanout_messages, options.fanout_window
        )
        elapsed = time.monotonic() - started
        after = await hops.scrape_all([] if baseline else server.metrics_urls)
        result["frames_per_write"] = hops.frames_per_write(before, after)
        result["harness_cpu"] = (time.process_time() - usage) / elapsed
        result["server_cpu"] = (server.cpu_seconds() - server_usage) / elapsed
        # Server CPU per delivery: what one more socket in the conversation costs.
        deliveries = options.fanout_messages * len(counters)
        result["us_per_delivery"] = (server.cpu_seconds() - server_usage) / deliveries * 1e6
        if recorder is not None:
            await profile.finish(recorder)
        return result
    finally:
        await asyncio.gather(sender.close(), *(c.ws.close() for c in counters), return_exceptions=True)


FANOUT_FIGURES = [
    Figure("deliveries_per_s", "Parley deliveries/s"),
    Figure("baseline_per_s", "bare loop deliveries/s"),
    Figure("ratio", "Parley ÷ bare"),
    Figure("latency_p50_ms", "Parley send→deliver p50 ms"),
    Figure("latency_p99_ms", "p99 ms"),
    Figure("us_per_delivery", "Parley CPU µs/delivery"),
    Figure("frames_per_write", "Parley frames/socket write"),
    Figure("baseline_us_per_delivery", "bare CPU µs/delivery"),
    Figure("server_cpu", "Parley CPU (cores)"),
    Figure("harness_cpu", "harness CPU (cores)"),
    Figure("load1", "load avg"),
]


async def run_fanout(options: Options, mode: Mode) -> dict[str, float]:
    limits = {"PARLEY_MAX_CONNECTIONS_PER_USER": str(options.fanout_sockets)}
    async with running_server(options, mode, limits) as server:
        parley = await _fanout_against(server, options, baseline=False)
    async with running_server(options, "embedded", module="bench.baseline_app") as server:
        bare = await _fanout_against(server, options, baseline=True)
    result = {
        "deliveries_per_s": parley["per_s"],
        "baseline_per_s": bare["per_s"],
        "ratio": parley["per_s"] / bare["per_s"],
        "latency_p50_ms": parley["latency_p50_ms"],
        "latency_p99_ms": parley["latency_p99_ms"],
        "baseline_latency_p50_ms": bare["latency_p50_ms"],
        "baseline_latency_p99_ms": bare["latency_p99_ms"],
        "us_per_delivery": parley["us_per_delivery"],
        "frames_per_write": parley["frames_per_write"],
        "baseline_us_per_delivery": bare["us_per_delivery"],
        "server_cpu": parley["server_cpu"],
        "baseline_server_cpu": bare["server_cpu"],
        "harness_cpu": parley["harness_cpu"],
        "baseline_harness_cpu": bare["harness_cpu"],
    }
    progress(
        f"fanout: Parley {result['deliveries_per_s']:,.0f}/s, bare loop {result['baseline_per_s']:,.0f}/s "
        f"(ratio {result['ratio']:.2f}); server CPU per delivery {result['us_per_delivery']:.1f} / "
        f"{result['baseline_us_per_delivery']:.1f} µs; server CPU {result['server_cpu']:.2f} / "
        f"{result['baseline_server_cpu']:.2f} cores; harness CPU {result['harness_cpu']:.2f} / "
        f"{result['baseline_harness_cpu']:.2f} cores"
    )
    return result


IDLE_FIGURES = [
    Figure("rss_base_mib", "RSS before sockets MiB"),
    Figure("kib_per_conn_1000", "KiB/socket at 1k"),
    Figure("kib_per_conn_10000", "KiB/socket at 10k"),
    Figure("connect_per_s", "sockets opened/s"),
    Figure("load1", "load avg"),
]


async def run_idle(options: Options, mode: Mode) -> dict[str, float]:
    counts = sorted(options.idle_counts)
    per_account_max = -(-counts[-1] // IDLE_ACCOUNTS)
    limits = {"PARLEY_MAX_CONNECTIONS_PER_USER": str(per_account_max)}
    async with running_server(options, mode, limits) as server:
        async with api(server.url) as http:
            accounts = await sign_up_many(http, f"c{server.tag}u", IDLE_ACCOUNTS)
            await bounded([partial(create_room, http, [a], name="idle") for a in accounts], 8)
        await asyncio.sleep(3)
        base = server.rss_bytes()
        result = {"rss_base_mib": base / 2**20}
        counters: list[Counter] = []
        opening = 0.0
        try:
            for count in counts:
                per_account = count // IDLE_ACCOUNTS - len(counters) // IDLE_ACCOUNTS
                progress(f"opening sockets up to {count:,}")
                started = time.monotonic()
                new = await _open_counters(server, accounts, per_account, options.compression)
                opening += time.monotonic() - started
                counters += new
                await wait_quiet(counters)
                await asyncio.sleep(3)
                rss = server.rss_bytes()
                result[f"kib_per_conn_{count}"] = (rss - base) / len(counters) / 1024
                progress(
                    f"{len(counters):,} idle sockets: RSS {rss / 2**20:,.0f} MiB, "
                    f"{result[f'kib_per_conn_{count}']:.1f} KiB per socket"
                )
            result["connect_per_s"] = len(counters) / opening
            return result
        finally:
            await bounded([c.ws.close for c in counters], 256)


FANOUT_SCENARIO = Scenario(
    name="fanout-1000",
    summary="deliveries/s from one process to 1,000 sockets of one conversation, vs a bare loop (issue 5)",
    figures=FANOUT_FIGURES,
    run_once=run_fanout,
)
IDLE_SCENARIO = Scenario(
    name="idle-connections",
    summary="server resident memory per idle WebSocket at 1k and 10k sockets (issue 5)",
    figures=IDLE_FIGURES,
    run_once=run_idle,
)
