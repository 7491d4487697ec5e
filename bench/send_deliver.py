"""send-deliver: durable sends/s at saturation, then send→deliver latency at a fraction of it.

Set-up: ``rooms`` public channels (default 1); the ``senders`` are spread over them and each
has ``listeners`` more members that only listen. Every account holds its own socket, and the
senders' sockets receive their room's messages too, as a chat client does: a message goes out to
``senders / rooms + listeners`` sockets.

Phase A (saturation): every sender keeps ``window`` sends in flight (a new send as soon as an
ack frees a slot) for ``warmup + duration`` seconds. The figure is acks per second over the
``duration`` after the warm-up; an ack means the message is committed (issue 2's "durable").
Afterwards the harness waits until every acked message reached every listener of its room and counts the
misses (must be 0) and the deliveries per second seen in the same window.

Phase B (latency): open-loop pacing at ``load_fraction`` × the saturation rate just measured (or
at a fixed ``paced_rate``), spread evenly over the senders (each on its own schedule, offset). A
message carries its *scheduled* send time in its ``client_msg_id``; each listener notes when
it arrives. Latencies are measured from the scheduled time, so a harness that falls behind its
schedule shows up in the figures instead of hiding (no coordinated omission); the schedule lag
is reported on its own. Every (message, listener) pair counts; the first second is warm-up.

Phase C (``--load-curve``, optional): phase B again at each given fraction of the saturation,
on the same sockets: the p50 and p99 against load, printed as a second table.

The clients run in this process with the server on the same cores: their CPU is part of what
the machine does, and the figures are for the pair, not the server alone.

Any server of bench/deployments.py will do: the all-in-one (embedded or on the engines), the
local cluster through nginx (server CPU is then the sum over its processes, each reported on its
own too; hop ages are added up over every process's ``/metrics``), or a running deployment
(``--url``: no CPU or hop figures unless ``--cluster-dir`` names a local cluster's state folder).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import resource
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import orjson

from bench import hops, profile
from bench.clients import api, create_room, open_sockets, send_frame, sign_up_many
from bench.cpu import engine_pids, is_python, tree_cpu_seconds
from bench.deployments import running_target
from bench.scenario import Figure, Options, Scenario, deadline_after, progress
from bench.server import Mode, Server
from bench.stats import fmt, median_of_runs, percentile, summarize_ms, table
from bench.wire import WireSocket

MESSAGE_CREATED = '"type":"message.created"'
ACK = '"type":"ack"'
ERROR = '"type":"error"'
DRAIN_TIMEOUT = 60.0
PHASE_B_WARMUP = 1.0


@dataclass
class Window:
    """The measured interval of a phase, in ``perf_counter_ns``."""

    start_ns: int = 0
    end_ns: int = 0

    def __contains__(self, t: int) -> bool:
        return self.start_ns <= t <= self.end_ns

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


@dataclass
class Listener:
    """A member that only listens: notes when each bench message arrives, and its order."""

    ws: WireSocket
    conversation_id: str
    received: dict[str, int] = field(default_factory=dict)  # client_msg_id → arrival (ns)
    last_seq: int = 0
    out_of_order: int = 0  # a seq not above the previous one: a duplicate or a reordering

    def on_text(self, raw: str, now: int) -> None:
        if MESSAGE_CREATED in raw[:48]:
            message = orjson.loads(raw)["data"]["message"]
            if message["seq"] <= self.last_seq:
                self.out_of_order += 1
            self.last_seq = max(self.last_seq, message["seq"])
            if message.get("client_msg_id"):
                self.received.setdefault(message["client_msg_id"], now)


@dataclass
class Ack:
    conversation_id: str
    client_msg_id: str
    sent_ns: int  # the scheduled (phase B) or actual (phase A) send time
    acked_ns: int


@dataclass
class Sender:
    """A member that sends and, like any client, also receives the conversation's events."""

    index: int
    ws: WireSocket
    conversation_id: str
    slots: asyncio.Semaphore
    pending: dict[int, tuple[str, int]] = field(default_factory=dict)  # frame id → (cmid, sent)
    acks: list[Ack] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    schedule_lag_ns: list[int] = field(default_factory=list)
    echoes_in_window: int = 0
    window: Window = field(default_factory=Window)
    _frame_ids: itertools.count[int] = field(default_factory=itertools.count)

    async def send(self, phase: str, n: int, sent_ns: int) -> None:
        frame_id = next(self._frame_ids)
        client_msg_id = f"{phase}{self.index}.{n}.{sent_ns}"
        self.pending[frame_id] = (client_msg_id, sent_ns)
        text = f"bench message {n} from sender {self.index}"
        await self.ws.send(send_frame(self.conversation_id, frame_id, text, client_msg_id))

    def on_text(self, raw: str, now: int) -> None:
        head = raw[:48]
        if MESSAGE_CREATED in head:
            if now in self.window:
                self.echoes_in_window += 1
        elif ACK in head or ERROR in head:
            self._answered(orjson.loads(raw), now)

    def _answered(self, frame: dict[str, object], now: int) -> None:
        frame_id = frame.get("id")
        if not isinstance(frame_id, int) or frame_id not in self.pending:
            return
        client_msg_id, sent_ns = self.pending.pop(frame_id)
        if frame["type"] == "ack" and not frame.get("duplicate"):
            self.acks.append(Ack(self.conversation_id, client_msg_id, sent_ns, now))
        else:
            self.errors.append(str(frame.get("code") or "duplicate"))
        self.slots.release()


FIGURES = [
    Figure("sends_per_s", "durable sends/s (saturation)"),
    Figure("listener_deliveries_per_s", "deliveries/s to listeners"),
    Figure("socket_deliveries_per_s", "deliveries/s to all sockets"),
    Figure("paced_rate", "paced sends/s"),
    Figure("latency_p50_ms", "p50 ms"),
    Figure("latency_p95_ms", "p95 ms"),
    Figure("latency_p99_ms", "p99 ms"),
    Figure("latency_max_ms", "max ms"),
    Figure("ack_p50_ms", "ack p50 ms"),
    Figure("ack_p99_ms", "ack p99 ms"),
    Figure("frames_per_write", "B: frames/socket write"),
    Figure("missing", "missing deliveries"),
    Figure("server_cpu", "server CPU (cores)"),
    Figure("engines_cpu", "engines CPU (cores)"),
    Figure("load1", "load avg"),
]


def _batch_phase_figures(before: hops.Scrape, after: hops.Scrape) -> dict[str, float]:
    """Where phase B's batches spent their time, p50 / p99 of each phase (``BatchTiming``)."""
    p50, p99 = hops.batch_phase_ms(before, after, 0.5), hops.batch_phase_ms(before, after, 0.99)
    if not p50:
        return {}
    progress(
        "phase B: batch phases, p50 / p99 ms: "
        + ", ".join(f"{phase} {p50[phase]:.1f} / {p99[phase]:.1f}" for phase in p50)
    )
    return {f"batch_{phase}_p50_ms": ms for phase, ms in p50.items()} | {
        f"batch_{phase}_p99_ms": ms for phase, ms in p99.items()
    }


async def run_once(options: Options, mode: Mode) -> dict[str, float]:
    async with running_target(options, mode) as server:
        senders, listeners = await _set_up(server, options)
        try:
            # The harness's own full collections (it keeps every ack and arrival) would stall
            # its readers for 100+ ms and show up as delivery latency: none while measuring.
            gc.collect()
            gc.freeze()
            gc.disable()
            await _warm_up(senders, listeners)
            result = await _saturate(server, senders, listeners, options, engines=mode != "embedded")
            rate = options.paced_rate or options.load_fraction * result["sends_per_s"]
            before_each = await hops.scrape_each(server.metrics_by_process)
            result |= await _paced(senders, listeners, options, rate)
            after_each = await hops.scrape_each(server.metrics_by_process)
            before, after = hops.merge(list(before_each.values())), hops.merge(list(after_each.values()))
            result |= _loop_figures(before_each, after_each)
            result |= _hop_figures(hops.median_ms(before, after), hops.quantile_ms(before, after, 0.99))
            result |= hops.write_batches(before, after)
            result["frames_per_write"] = hops.frames_per_write(before, after)
            progress(
                f"phase B: group commit {result.get('batch_sends', 0):.1f} sends/batch, {result.get('batch_ms', 0):.1f} ms/batch"
            )
            result |= _batch_phase_figures(before, after)
            if options.load_curve:
                result |= await _load_curve(senders, listeners, options, result)
            result["order_violations"] = float(sum(lis.out_of_order for lis in listeners))
            result["errors"] = float(sum(len(s.errors) for s in senders))
            return result
        finally:
            gc.enable()
            gc.unfreeze()
            await asyncio.gather(*(s.ws.close() for s in senders), *(lis.ws.close() for lis in listeners))


async def _set_up(server: Server, options: Options) -> tuple[list[Sender], list[Listener]]:
    """``rooms`` conversations; the senders are spread over them; each has ``listeners``."""
    rooms = max(1, options.rooms)
    total = options.senders + options.listeners * rooms
    progress(f"signing up {options.senders} senders and {options.listeners} listeners × {rooms} rooms")
    async with api(server.url) as http:
        accounts = await sign_up_many(http, f"b{server.tag}u", total)
        sender_accounts, listener_accounts = accounts[: options.senders], accounts[options.senders :]
        conversation_ids = []
        for r in range(rooms):
            members = sender_accounts[r::rooms] + listener_accounts[r::rooms]
            conversation_ids.append((await create_room(http, members, name=f"bench{r}")).conversation_id)
    progress("opening sockets")
    sockets = await open_sockets(server.ws_url, accounts, compression=options.compression)
    senders = [
        Sender(i, ws, conversation_ids[i % rooms], asyncio.Semaphore(options.window))
        for i, ws in enumerate(sockets[: options.senders])
    ]
    listeners = [Listener(ws, conversation_ids[i % rooms]) for i, ws in enumerate(sockets[options.senders :])]
    for sender in senders:
        sender.ws.set_handler(sender.on_text)
    for listener in listeners:
        listener.ws.set_handler(listener.on_text)
    return senders, listeners


async def _warm_up(senders: Sequence[Sender], listeners: Sequence[Listener]) -> None:
    """One message end to end in each room: the consumers are running (and own their
    partitions on Kafka)."""
    first_of_room = {s.conversation_id: s for s in senders}.values()
    for sender in first_of_room:
        await sender.slots.acquire()
        await sender.send("w", 0, time.perf_counter_ns())
    acks = [a for sender in first_of_room for a in await _acks_of(sender, 60.0)]
    missing, _ = await _await_deliveries(listeners, acks, 60.0)
    if missing:
        raise RuntimeError("the warm-up messages did not reach every listener within 60 s")


async def _acks_of(sender: Sender, timeout: float) -> list[Ack]:
    for _ in range(int(timeout / 0.01)):
        if not sender.pending:
            break
        await asyncio.sleep(0.01)
    return sender.acks


async def _saturate(
    server: Server,
    senders: Sequence[Sender],
    listeners: Sequence[Listener],
    options: Options,
    *,
    engines: bool,
) -> dict[str, float]:
    progress(
        f"phase A: {len(senders)} senders × window {options.window}, "
        f"{options.warmup:g} s warm-up + {options.duration:g} s measured"
    )
    for s in senders:
        s.acks.clear()
    window = Window(deadline_after(options.warmup), deadline_after(options.warmup + options.duration))
    for s in senders:
        s.window = window
    recorders = []
    if options.profile_dir is not None:
        # Every Python process of a cluster: which one is the busiest is what the profile is for.
        for name, pid in server.processes().items():
            if not is_python(pid):
                continue
            out = options.profile_dir / f"send-deliver-{server.tag}-{name}"
            recorders.append(await profile.record_later(pid, options.warmup, options.duration, out))
    cpu = CpuMeter(server, window, engines=engines)
    await asyncio.gather(cpu.watch(), *(_closed_loop(s, window.end_ns) for s in senders))
    acks = await _all_acks(senders)
    last_ack = max(a.acked_ns for a in acks)
    missing, drained_ns = await _await_deliveries(listeners, acks, DRAIN_TIMEOUT)
    for recorder in recorders:
        await profile.finish(recorder)
    in_window = [a for a in acks if a.acked_ns in window]
    deliveries = sum(1 for lis in listeners for t in lis.received.values() if t in window)
    echoes = sum(s.echoes_in_window for s in senders)
    result = {
        "sends_per_s": len(in_window) / window.seconds,
        "listener_deliveries_per_s": deliveries / window.seconds,
        "socket_deliveries_per_s": (deliveries + echoes) / window.seconds,
        **cpu.figures(),
        "sat_missing": float(missing),
        "sat_drain_s": max(0, drained_ns - last_ack) / 1e9,
        **summarize_ms([a.acked_ns - a.sent_ns for a in in_window], "sat_ack"),
    }
    progress(
        f"phase A: {result['sends_per_s']:,.0f} sends/s, {result['listener_deliveries_per_s']:,.0f} "
        f"listener deliveries/s, {missing} missing, "
        f"delivery drain {result['sat_drain_s']:.2f} s after last ack; "
        f"CPU cores busy: server {fmt(result['server_cpu'])}, engines {fmt(result['engines_cpu'])}, "
        f"harness {result['harness_cpu']:.2f}"
    )
    if len(cpu.by_process) > 1 or cpu.by_engine:
        progress(
            "phase A: CPU cores by process: "
            + ", ".join(f"{name} {cores:.2f}" for name, cores in cpu.by_process.items())
            + "; engines: "
            + ", ".join(f"{name} {cores:.2f}" for name, cores in cpu.by_engine.items())
        )
    return result


@dataclass
class CpuSample:
    """CPU seconds used so far: by each server process, each engine, this harness."""

    processes: dict[str, float] = field(default_factory=dict)
    engines: dict[str, float] = field(default_factory=dict)
    harness: float = 0.0


def _cores(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    return {name: (used - before.get(name, 0.0)) / seconds for name, used in after.items()}


class CpuMeter:
    """CPU used during a window, in cores (1.0 = one core busy all the time), by the server's
    processes (each with its children: nginx's workers), the local engines and this harness:
    on a shared 2-core machine it says who had the CPU."""

    def __init__(self, server: Server, window: Window, *, engines: bool) -> None:
        self._window = window
        self._processes = server.processes()
        self._engines = engine_pids() if engines else {}
        self._start = CpuSample()
        self._end = CpuSample()
        self.by_process: dict[str, float] = {}
        self.by_engine: dict[str, float] = {}

    def _sample(self) -> CpuSample:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return CpuSample(
            tree_cpu_seconds(self._processes),
            tree_cpu_seconds(self._engines),
            usage.ru_utime + usage.ru_stime,
        )

    async def watch(self) -> None:
        await asyncio.sleep(max(0, self._window.start_ns - time.perf_counter_ns()) / 1e9)
        self._start = self._sample()
        await asyncio.sleep(max(0, self._window.end_ns - time.perf_counter_ns()) / 1e9)
        self._end = self._sample()

    def figures(self) -> dict[str, float]:
        seconds = self._window.seconds
        self.by_process = _cores(self._start.processes, self._end.processes, seconds)
        self.by_engine = _cores(self._start.engines, self._end.engines, seconds)
        nan = float("nan")  # not measurable (a deployment the harness cannot see into)
        return {
            "server_cpu": sum(self.by_process.values()) if self.by_process else nan,
            "engines_cpu": sum(self.by_engine.values()) if self.by_engine else nan,
            "harness_cpu": (self._end.harness - self._start.harness) / seconds,
            **{f"cpu_{name}": v for name, v in self.by_process.items()},
            **{f"cpu_engine_{name}": v for name, v in self.by_engine.items()},
        }


async def _closed_loop(sender: Sender, until_ns: int) -> None:
    n = 0
    while True:
        await sender.slots.acquire()
        now = time.perf_counter_ns()
        if now >= until_ns:
            sender.slots.release()
            return
        await sender.send("a", n, now)
        n += 1


async def _paced(
    senders: Sequence[Sender], listeners: Sequence[Listener], options: Options, rate: float, phase: str = "B"
) -> dict[str, float]:
    duration = PHASE_B_WARMUP + options.duration
    progress(
        f"phase {phase}: open loop at {rate:,.0f} sends/s for {duration:g} s ({PHASE_B_WARMUP:g} s warm-up)"
    )
    for s in senders:
        s.acks.clear()
        s.window = Window()
        # Open loop: the window is not a limit here (sends go out on schedule, acks or not).
        s.slots = asyncio.Semaphore(1_000_000)
    interval_ns = int(len(senders) / rate * 1e9)
    count = int(duration * 1e9 / interval_ns)
    start_ns = deadline_after(0.1)
    await asyncio.gather(
        *(
            _open_loop(s, start_ns + s.index * interval_ns // len(senders), interval_ns, count)
            for s in senders
        )
    )
    acks = await _all_acks(senders)
    missing, _ = await _await_deliveries(listeners, acks, DRAIN_TIMEOUT)
    measured_from = start_ns + int(PHASE_B_WARMUP * 1e9)
    sent_at = {a.client_msg_id: a.sent_ns for a in acks if a.sent_ns >= measured_from}
    latencies = [
        t - sent_at[cmid] for lis in listeners for cmid, t in lis.received.items() if cmid in sent_at
    ]
    measured_s = max(a.sent_ns for a in acks) / 1e9 - measured_from / 1e9
    result = {
        "paced_rate": len(sent_at) / measured_s if measured_s > 0 else 0.0,
        "missing": float(missing),
        **summarize_ms(latencies, "latency"),
        **summarize_ms([a.acked_ns - a.sent_ns for a in acks if a.sent_ns >= measured_from], "ack"),
        "schedule_lag_p99_ms": percentile([lag / 1e6 for s in senders for lag in s.schedule_lag_ns], 99),
    }
    progress(
        f"phase {phase}: {result['paced_rate']:,.0f} sends/s; send→deliver p50 {result['latency_p50_ms']:.1f} ms, "
        f"p99 {result['latency_p99_ms']:.1f} ms, max {result['latency_max_ms']:.1f} ms over "
        f"{len(latencies):,} deliveries; {missing} missing; harness schedule lag p99 "
        f"{result['schedule_lag_p99_ms']:.1f} ms"
    )
    return result


def _loop_figures(before: dict[str, hops.Scrape], after: dict[str, hops.Scrape]) -> dict[str, float]:
    """Phase B's event loops, process by process (``parley.runtime.loop_health``): which one ran
    late, and whether full collections were the cause."""
    figures = {name: hops.loop_health(before[name], after[name]) for name in after}
    figures = {name: f for name, f in figures.items() if f["lag_p99_ms"] > 0}
    if not figures:
        return {}
    progress(
        "phase B: event-loop lag p99 ms (stalls of 50+ ms; full collections, p99 ms) by process: "
        + ", ".join(
            f"{name} {f['lag_p99_ms']:.1f} ({f['stalls']:.0f}; {f['gc2']:.0f}, {f['gc2_p99_ms']:.1f})"
            for name, f in figures.items()
        )
    )
    return {f"loop_{name}_{key}": value for name, f in figures.items() for key, value in f.items()}


def _hop_figures(medians: dict[str, float], p99s: dict[str, float]) -> dict[str, float]:
    """Phase B's event age at each hop (see bench/hops.py): where the latency goes."""
    hops_in_order = [hop for hop, _ in sorted(medians.items(), key=lambda kv: kv[1])]
    progress(
        "phase B: event age at each hop, p50 / p99 ms since commit: "
        + ", ".join(f"{hop} {medians[hop]:.1f} / {p99s.get(hop, float('nan')):.1f}" for hop in hops_in_order)
    )
    return {f"age_{hop}_p50_ms": ms for hop, ms in medians.items()} | {
        f"age_{hop}_p99_ms": ms for hop, ms in p99s.items()
    }


async def _open_loop(sender: Sender, start_ns: int, interval_ns: int, count: int) -> None:
    for n in range(count):
        due = start_ns + n * interval_ns
        delay = due - time.perf_counter_ns()
        if delay > 0:
            await asyncio.sleep(delay / 1e9)
        sender.schedule_lag_ns.append(time.perf_counter_ns() - due)
        await sender.send("b", n, due)


async def _all_acks(senders: Sequence[Sender]) -> list[Ack]:
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while any(s.pending for s in senders):
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{sum(len(s.pending) for s in senders)} sends unanswered after {DRAIN_TIMEOUT} s"
            )
        await asyncio.sleep(0.01)
    acks = [a for s in senders for a in s.acks]
    if not acks:
        raise RuntimeError(f"no send was acknowledged; errors: {[e for s in senders for e in s.errors][:5]}")
    return acks


async def _await_deliveries(
    listeners: Iterable[Listener], acks: Iterable[Ack], timeout: float
) -> tuple[int, int]:
    """Wait until every listener has every acked message of its room; returns (misses left,
    when done)."""
    expected: dict[str, set[str]] = {}
    for ack in acks:
        expected.setdefault(ack.conversation_id, set()).add(ack.client_msg_id)
    deadline = time.monotonic() + timeout
    listeners = list(listeners)
    while True:
        missing = sum(
            len(expected.get(lis.conversation_id, set()).difference(lis.received)) for lis in listeners
        )
        if missing == 0 or time.monotonic() > deadline:
            return missing, time.perf_counter_ns()
        await asyncio.sleep(0.02)


# (name in a curve key, the paced phase's figure, column label)
CURVE_FIGURES = [
    ("rate", "paced_rate", "paced sends/s"),
    ("p50_ms", "latency_p50_ms", "p50 ms"),
    ("p99_ms", "latency_p99_ms", "p99 ms"),
    ("ack_p99_ms", "ack_p99_ms", "ack p99 ms"),
    ("missing", "missing", "missing deliveries"),
]


def curve_key(fraction: float, name: str) -> str:
    return f"curve_{fraction * 100:g}pct_{name}"


async def _load_curve(
    senders: Sequence[Sender], listeners: Sequence[Listener], options: Options, result: dict[str, float]
) -> dict[str, float]:
    """Phase C: one more paced phase per ``--load-curve`` fraction of this run's saturation, on the
    same sockets. Latency grows with load long before saturation on a shared box, and where it
    crosses a line is what one fraction cannot show. Phase B joins the curve at its fraction."""
    saturation = result["sends_per_s"]
    points: dict[str, float] = {}
    if options.paced_rate is None:
        points |= {curve_key(options.load_fraction, n): result[key] for n, key, _ in CURVE_FIGURES}
    for fraction in options.load_curve:
        paced = await _paced(senders, listeners, options, fraction * saturation, phase=f"C ({fraction:.0%})")
        points |= {curve_key(fraction, n): paced[key] for n, key, _ in CURVE_FIGURES}
    return points


def curve_table(runs: list[dict[str, float]]) -> str | None:
    """Latency against load: the medians over runs of each fraction's figures."""
    percents = sorted(
        {
            float(k.removeprefix("curve_").split("pct_")[0])
            for run in runs
            for k in run
            if k.startswith("curve_")
        }
    )
    if not percents:
        return None
    median = median_of_runs(runs)
    rows = [
        [
            f"{pct:g} % of saturation",
            *(fmt(median.get(curve_key(pct / 100, n), float("nan"))) for n, _, _ in CURVE_FIGURES),
        ]
        for pct in percents
    ]
    headers = ["", *(label for _, _, label in CURVE_FIGURES)]
    return f"latency against load (median of {len(runs)})\n" + table(headers, rows)


SCENARIO = Scenario(
    name="send-deliver",
    summary="durable sends/s at saturation; send→deliver latency at a fraction of it (issue 2/3/5)",
    figures=FIGURES,
    extra_table=curve_table,
    run_once=run_once,
    modes=("embedded", "engines", "cluster", "url"),
)
