"""Parley users for Locust: log in over REST, hold one WebSocket, chat, read, search, react.

Each simulated user takes one seeded account (``python -m loadtests.seed`` made them and wrote
the manifest), logs in, opens one WebSocket and keeps it for the whole run. A reader greenlet
reads every frame the server pushes while the user's own greenlet runs tasks chosen by the
profile's weights: sends to channels and DMs over the socket, typing notices, read markers,
history pages, searches and reactions over REST.

What ends up in Locust's statistics besides the REST requests (type ``WS``):

- ``deliver``: the **end-to-end delivery latency**: for every ``message.created`` another user
  sent, receive time minus the send time the sender put in the message's ``client_msg_id``
  (``lt-<wall-clock ms>-…``). Both ends read the same wall clock (Locust workers on one machine),
  so this is what a person would feel: from pressing enter to seeing it on the other screen.
- ``send→ack``: from writing the ``send`` frame to its ``ack`` (the message is durable).
- ``mark_read→ack``, ``typing`` (time to write the frame), ``connect+hello``.
- failures: every ``error`` frame (e.g. ``rate_limited``), acks not received in time, closed
  sockets (the user reconnects at its next task).

Why ``websocket-client`` in a greenlet: it is a blocking client over the standard ``socket``
module, which Locust's gevent monkey-patching turns cooperative, so one greenlet per socket can
sit in ``recv`` without blocking anything; it is small and maintained, and the same library
locust-plugins' WebSocket users build on, without the extra dependencies.

Run it through ``make loadtest`` (see loadtests/README.md), or directly::

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000 --parley-profile default
"""

from __future__ import annotations

import sys
from pathlib import Path

# `locust -f loadtests/locustfile.py` puts loadtests/ on sys.path, not the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import heapq
import itertools
import logging
import random
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, NamedTuple

import gevent  # type: ignore[import-untyped]
import orjson
import websocket
from locust import FastHttpUser, events, task
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import WorkerRunner

from loadtests.manifest import ConversationEntry, Manifest
from loadtests.profile import (
    CLIENT_MSG_ID_PREFIX,
    PASSWORD,
    Profile,
    TaskName,
    load_profile,
    manifest_path,
    normalized_target,
)

log = logging.getLogger("parley.loadtest")
WS = "WS"
DELIVER = "deliver"
SEND_ACK = "send→ack"
MARK_READ_ACK = "mark_read→ack"
CONNECT = "connect+hello"
# Words for message texts and search queries: searches find something, as real ones mostly do.
_VOCABULARY = (
    "deploy release build review merge branch ticket standup lunch coffee meeting design "
    "database cache queue latency metrics alert pager incident rollback hotfix customer invoice "
    "roadmap sprint retro demo launch beta feedback bug feature test staging production kafka "
    "redis search index shard replica backup restore migrate schema docs onboarding welcome "
    "thanks great agreed blocked waiting tomorrow today friday weekend holiday office remote"
)
WORDS = tuple(_VOCABULARY.split())
EMOJI = ("thumbsup", "tada", "eyes", "heart", "rocket", "white_check_mark")


class WsFailure(Exception):
    """An error frame, a missing ack or a closed socket, as Locust shows it in Failures."""


class Pending(NamedTuple):
    """A frame waiting for its ack or error."""

    name: str  # the statistic to report it under
    started: float  # perf_counter when it was written
    counted: bool  # sent inside the measurement window


# ---------------------------------------------------------------- per-process run context


@dataclass
class RunContext:
    manifest: Manifest
    profile: Profile
    ws_url: str
    task_names: list[TaskName]
    task_weights: list[int]


_context: RunContext | None = None
_setup_error: str | None = None


class SlotAllocator:
    """Hands each simulated user of this process a distinct seeded account.

    Process k of n (Locust's worker index, and the worker count the master expects) takes
    accounts k, k + n, k + 2n, …: disjoint across processes without talking to each other.
    A stopped user gives its slot back, so ramping down and up reuses accounts instead of
    wrapping around onto ones still in use. More Locust users than seeded accounts share
    accounts (their own messages then don't count as deliveries): seed at least as many.
    """

    def __init__(self) -> None:
        self._free: list[int] = []
        self._next = 0
        self._warned = False

    def acquire(self, environment: Environment, accounts: int) -> tuple[int, int]:
        if self._free:
            local = heapq.heappop(self._free)
        else:
            local, self._next = self._next, self._next + 1
        worker, workers = 0, 1
        if isinstance(environment.runner, WorkerRunner):
            worker = environment.runner.worker_index
            options = environment.parsed_options
            workers = max(1, int(getattr(options, "expect_workers", 1) or 1))
        slot = worker + workers * local
        if slot >= accounts and not self._warned:
            self._warned = True
            log.warning("more Locust users than seeded accounts (%d): accounts are shared", accounts)
        return local, slot % accounts

    def release(self, local: int) -> None:
        heapq.heappush(self._free, local)


_slots = SlotAllocator()


class MeasurementWindow:
    """Which sends count, when statistics are reset after the ramp-up (``--reset-stats``).

    Locust resets its statistics the moment the last user is spawned, but messages sent during
    the ramp-up are still in flight then, and the last users are still logging in (argon2 on the
    server). Counting only messages *sent* once this process's users have all started keeps the
    figures about the steady state: a message counts (its ``send→ack`` and its deliveries) when
    its send time is at or after ``from_ms``. Without a reset, everything counts.
    """

    def __init__(self) -> None:
        self.from_ms = 0.0
        self.enabled = False  # Locust's --reset-stats
        self._starting = 0
        self._waiting = False

    def restart(self, enabled: bool) -> None:
        self.from_ms, self.enabled, self._waiting = 0.0, enabled, False

    def counts(self, sent_ms: float) -> bool:
        return sent_ms >= self.from_ms

    def user_starting(self) -> None:
        self._starting += 1

    def user_started(self) -> None:
        self._starting -= 1
        if self._waiting and self._starting <= 0:
            self._open()

    def spawning_complete(self) -> None:
        if not self.enabled:
            return
        if self._starting <= 0:
            self._open()
        else:  # nothing counts until the stragglers have logged in
            self.from_ms, self._waiting = float("inf"), True

    def _open(self) -> None:
        self.from_ms, self._waiting = time.time() * 1000, False


_window = MeasurementWindow()


@events.spawning_complete.add_listener  # type: ignore[untyped-decorator]
def _ramp_up_done(**_: Any) -> None:
    _window.spawning_complete()


@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]
def _add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--parley-profile",
        default="default",
        env_var="PARLEY_LOAD_PROFILE",
        include_in_web_ui=True,
        help="load profile: a name in loadtests/profiles/ or a JSON path",
    )
    parser.add_argument(
        "--parley-manifest",
        default="",
        env_var="PARLEY_LOAD_MANIFEST",
        include_in_web_ui=False,
        help="the seed's manifest (default: loadtests/.seed/<hash of --host>.json)",
    )


@events.test_start.add_listener  # type: ignore[untyped-decorator]
def _load_context(environment: Environment, **_: Any) -> None:
    """Read the profile and manifest once per process, when a run starts (workers get the
    master's custom arguments and host with the spawn message, just before this fires)."""
    global _context, _setup_error
    _window.restart(enabled=bool(environment.reset_stats))
    options = environment.parsed_options
    host = environment.host or ""
    path = Path(getattr(options, "parley_manifest", "") or manifest_path(host))
    try:
        profile = load_profile(getattr(options, "parley_profile", "default") or "default")
        manifest = Manifest.load(path)
    except (OSError, ValueError) as exc:
        _context = None
        _setup_error = (
            f"cannot start: {exc}. Seed first: python -m loadtests.seed --target {host or 'URL'} --users N"
        )
        log.error(_setup_error)
        return
    if manifest.target != normalized_target(host):
        log.warning("manifest %s was seeded for %s, not %s", path, manifest.target, host)
    if manifest.profile != profile.name:
        log.warning("manifest seeded with profile %r; running profile %r", manifest.profile, profile.name)
    ws_url = normalized_target(host).replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/ws"
    tasks = profile.behaviour.tasks
    _context = RunContext(manifest, profile, ws_url, list(tasks), list(tasks.values()))
    _setup_error = None


def make_text(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    length = 0
    while length < chars:
        word = rng.choice(WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:chars].strip() or "hello"


# ---------------------------------------------------------------- the user


class ParleyUser(FastHttpUser):
    """One person: one account, one socket, tasks at the profile's pace."""

    def wait_time(self) -> float:
        assert self.ctx is not None
        low, high = self.ctx.profile.behaviour.think_seconds
        return self.rng.uniform(low, high)

    def on_start(self) -> None:
        _window.user_starting()
        try:
            self._start()
        finally:
            _window.user_started()

    def _start(self) -> None:
        """Take an account, log in, open the socket."""
        self.ctx: RunContext | None = _context
        self.rng = random.Random()
        self.ws: websocket.WebSocket | None = None
        self.reader: gevent.Greenlet | None = None
        self.stopping = False
        self.pending: dict[int, Pending] = {}  # frame id → what to report when its answer comes
        self.frame_ids = itertools.count(1)
        self.last_seq: dict[str, int] = {}  # conversation id → highest seq seen
        self.recent_from_others: deque[str] = deque(maxlen=50)  # message ids, for reactions
        self.local_slot: int | None = None
        if self.ctx is None:
            self._fire(WS, "setup", 0.0, WsFailure(_setup_error or "no manifest loaded"))
            raise StopUser()
        manifest = self.ctx.manifest
        self.local_slot, index = _slots.acquire(self.environment, len(manifest.users))
        self.me = manifest.users[index]
        self.large = manifest.conversations_of(index, "large")
        self.small = manifest.conversations_of(index, "small")
        self.dms = manifest.conversations_of(index, "dm")
        self.everywhere = self.large + self.small + self.dms
        self.workspace_id = self.me.workspace_id
        response = self.client.post(
            "/api/v1/auth/login", json={"username": self.me.username, "password": PASSWORD}
        )
        if response.status_code != 200:
            raise StopUser()
        body = response.json()
        self.user_id = str(body["user"]["id"])
        self.token = str(body["token"])
        self.auth = {"Authorization": f"Bearer {self.token}"}
        self._connect()

    def on_stop(self) -> None:
        self.stopping = True
        self._drop_socket()
        if self.local_slot is not None:
            _slots.release(self.local_slot)
            self.local_slot = None

    @task
    def act(self) -> None:
        assert self.ctx is not None
        self._expire_pending()
        if self.ws is None:
            self._connect()
            if self.ws is None:
                return
        name = self.rng.choices(self.ctx.task_names, self.ctx.task_weights)[0]
        getattr(self, f"_{name}")()

    # -- tasks (one per profile task name)

    def _send_channel(self) -> None:
        assert self.ctx is not None
        share = self.ctx.profile.behaviour.large_channel_send_share
        pool = self.large if self.large and (not self.small or self.rng.random() < share) else self.small
        if pool:
            self._send_message(self.rng.choice(pool))
        elif self.dms:
            self._send_message(self.rng.choice(self.dms))

    def _send_dm(self) -> None:
        if self.dms:
            self._send_message(self.rng.choice(self.dms))
        else:
            self._send_channel()

    def _typing(self) -> None:
        if not self.everywhere:
            return
        conversation = self.rng.choice(self.everywhere)
        started = time.perf_counter()
        if self._write({"type": "typing", "conversation_id": conversation.id}):
            self._fire(WS, "typing", (time.perf_counter() - started) * 1000, None)

    def _mark_read(self) -> None:
        seen = [(c, s) for c, s in self.last_seq.items() if s > 0]
        if not seen:
            return
        conversation_id, seq = self.rng.choice(seen)
        frame_id = next(self.frame_ids)
        self._expect_answer(frame_id, MARK_READ_ACK, time.time() * 1000)
        self._write({"type": "mark_read", "id": frame_id, "conversation_id": conversation_id, "seq": seq})

    def _read_history(self) -> None:
        assert self.ctx is not None
        if not self.everywhere:
            return
        conversation = self.rng.choice(self.everywhere)
        page = self.ctx.profile.behaviour.history_page
        path = f"/api/v1/conversations/{conversation.id}/messages"
        response = self.client.get(
            path, params={"limit": page}, headers=self.auth, name="/api/v1/conversations/[id]/messages"
        )
        if response.status_code != 200:
            return
        body = response.json()
        # One in three readers scrolls back a page, as people do when they open a busy channel.
        if body["has_more"] and body["messages"] and self.rng.random() < 1 / 3:
            oldest = min(int(m["seq"]) for m in body["messages"])
            self.client.get(
                path,
                params={"limit": page, "before": oldest},
                headers=self.auth,
                name="/api/v1/conversations/[id]/messages?before",
            )

    def _search(self) -> None:
        self.client.get(
            "/api/v1/search",
            params={"q": self.rng.choice(WORDS), "workspace_id": self.workspace_id, "limit": 20},
            headers=self.auth,
            name="/api/v1/search",
        )

    def _react(self) -> None:
        if not self.recent_from_others:
            return
        message_id = self.rng.choice(self.recent_from_others)
        with self.client.post(
            f"/api/v1/messages/{message_id}/reactions",
            json={"emoji": self.rng.choice(EMOJI)},
            headers=self.auth,
            name="/api/v1/messages/[id]/reactions",
            catch_response=True,
        ) as response:
            # 409 already_reacted is the server keeping its promise, not a failure.
            if response.status_code in (204, 409):
                response.success()

    # -- the socket

    def _send_message(self, conversation: ConversationEntry) -> None:
        assert self.ctx is not None
        sizes = self.ctx.profile.behaviour.message_chars
        chars = self.rng.choices([c for c, _ in sizes], [w for _, w in sizes])[0]
        text = make_text(self.rng, chars)
        frame_id = next(self.frame_ids)
        sent_ms = int(time.time() * 1000)
        client_msg_id = f"{CLIENT_MSG_ID_PREFIX}{sent_ms}-{self.me.index}-{frame_id}"
        self._expect_answer(frame_id, SEND_ACK, sent_ms)
        self._write(
            {
                "type": "send",
                "id": frame_id,
                "conversation_id": conversation.id,
                "text": text,
                "client_msg_id": client_msg_id,
            }
        )

    def _connect(self) -> None:
        assert self.ctx is not None
        started = time.perf_counter()
        try:
            ws = websocket.create_connection(
                self.ctx.ws_url,
                timeout=10,
                enable_multithread=True,  # the reader answers pings while tasks send: lock writes
                # websocket-client checks UTF-8 in pure Python, frame by frame, which costs more
                # CPU than the rest of a delivery; orjson rejects invalid UTF-8 when parsing anyway.
                skip_utf8_validation=True,
                header={"X-Request-ID": f"lt-{self.me.username}"},
            )
            ws.send(orjson.dumps({"type": "auth", "token": self.token}).decode())
            hello = orjson.loads(ws.recv())
            if hello.get("type") != "hello":
                ws.close()
                raise WsFailure(f"expected hello, got {hello.get('type')}: {hello.get('message', '')}")
            ws.settimeout(None)
        except (websocket.WebSocketException, OSError, WsFailure, orjson.JSONDecodeError) as exc:
            self._fire(WS, CONNECT, (time.perf_counter() - started) * 1000, exc)
            return
        self._fire(WS, CONNECT, (time.perf_counter() - started) * 1000, None)
        for entry in hello.get("conversations", []):
            conversation = entry["conversation"]
            self.last_seq[str(conversation["id"])] = int(conversation["last_seq"])
        self.ws = ws
        self.reader = gevent.spawn(self._read_loop, ws)

    def _write(self, frame: dict[str, Any]) -> bool:
        ws = self.ws
        if ws is None:
            self._fail_pending("socket closed before the frame was sent")
            return False
        try:
            ws.send(orjson.dumps(frame).decode())
            return True
        except (websocket.WebSocketException, OSError) as exc:
            self._socket_lost(f"send failed: {exc}")
            return False

    def _read_loop(self, ws: websocket.WebSocket) -> None:
        while True:
            try:
                opcode, frame = ws.recv_data_frame()
            except (websocket.WebSocketException, OSError) as exc:
                if ws is self.ws:
                    self._socket_lost(f"receive failed: {exc}")
                return
            received_ms = time.time() * 1000
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                data = bytes(frame.data or b"")
                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
                if ws is self.ws:
                    self._socket_lost(f"closed by server: {code} {data[2:].decode(errors='replace')}")
                return
            if opcode == websocket.ABNF.OPCODE_TEXT:
                try:
                    self._on_frame(frame.data, received_ms)
                except Exception as exc:  # a bad frame must not kill the reader and hide later ones
                    self._fire(WS, "frame", 0.0, WsFailure(f"unreadable frame: {exc!r}"))

    def _on_frame(self, raw: str | bytes, received_ms: float) -> None:
        frame = orjson.loads(raw)
        kind = frame.get("type")
        if kind == "message.created":
            self._on_message(frame, received_ms, len(raw))
        elif kind == "ack":
            self._answered(frame.get("id"), None)
        elif kind == "error":
            self._answered(frame.get("id"), WsFailure(f"{frame.get('code')}: {frame.get('message')}"))
        elif kind in ("member.joined", "conversation.created") and frame.get("seq") is not None:
            self._note_seq(frame)
        elif kind == "resync":
            self._fire(WS, "resync", 0.0, None)

    def _on_message(self, frame: dict[str, Any], received_ms: float, size: int) -> None:
        self._note_seq(frame)
        message = frame["data"]["message"]
        if str(message["user_id"]) == self.user_id:
            return  # our own echo: only other users' receipts count as deliveries
        self.recent_from_others.append(str(message["id"]))
        client_msg_id = message.get("client_msg_id") or ""
        if client_msg_id.startswith(CLIENT_MSG_ID_PREFIX):
            sent_ms = int(client_msg_id[len(CLIENT_MSG_ID_PREFIX) :].split("-", 1)[0])
            if _window.counts(sent_ms):
                self._fire(WS, DELIVER, max(0.0, received_ms - sent_ms), None, size)

    def _note_seq(self, frame: dict[str, Any]) -> None:
        conversation_id = str(frame["conversation_id"])
        self.last_seq[conversation_id] = max(self.last_seq.get(conversation_id, 0), int(frame["seq"]))

    def _expect_answer(self, frame_id: int, name: str, sent_ms: float) -> None:
        self.pending[frame_id] = Pending(name, time.perf_counter(), _window.counts(sent_ms))

    def _answered(self, frame_id: Any, error: WsFailure | None) -> None:
        entry = self.pending.pop(frame_id, None) if isinstance(frame_id, int) else None
        if entry is None:
            if error is not None:  # an error for no frame of ours (or one already timed out)
                self._fire(WS, "error", 0.0, error)
            return
        self._report(entry, error)

    def _report(self, entry: Pending, error: WsFailure | None) -> None:
        if entry.counted:
            self._fire(WS, entry.name, (time.perf_counter() - entry.started) * 1000, error)

    def _expire_pending(self) -> None:
        assert self.ctx is not None
        limit = self.ctx.profile.behaviour.ack_timeout_seconds
        now = time.perf_counter()
        for frame_id, entry in list(self.pending.items()):
            if now - entry.started > limit:
                del self.pending[frame_id]
                self._report(entry, WsFailure(f"no answer within {limit:g} s"))

    def _fail_pending(self, reason: str) -> None:
        for entry in self.pending.values():
            self._report(entry, WsFailure(reason))
        self.pending.clear()

    def _socket_lost(self, reason: str) -> None:
        if self.stopping:
            return
        self._fire(WS, "connection", 0.0, WsFailure(reason))
        self._fail_pending(reason)
        self._drop_socket()

    def _drop_socket(self) -> None:
        ws, reader = self.ws, self.reader
        self.ws, self.reader = None, None
        # Stop the reader before closing: close() reads the server's close reply itself, and a
        # gevent socket allows only one greenlet in recv at a time.
        in_reader = reader is not None and reader is gevent.getcurrent()
        if reader is not None and not in_reader:
            reader.kill(block=True, timeout=2)
        if ws is None:
            return
        try:
            if in_reader:
                ws.shutdown()  # type: ignore[no-untyped-call]  # the server closed or the socket broke: no handshake to wait for
            else:
                ws.close(timeout=1)
        except (websocket.WebSocketException, OSError):
            pass

    def _fire(
        self, request_type: str, name: str, response_time: float, exception: Exception | None, length: int = 0
    ) -> None:
        self.environment.events.request.fire(
            request_type=request_type,
            name=name,
            response_time=response_time,
            response_length=length,
            exception=exception,
            context={},
        )
