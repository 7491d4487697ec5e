"""Socket Mode: Slack's Events API over a WebSocket the app opens (``/slack/socket``).

The protocol, as Slack's SDKs speak it: ``apps.connections.open`` (app-level token) returns a
URL with a short-lived ticket; the server greets each socket with ``hello``; every event is an
``events_api`` envelope that the app acknowledges by sending back ``{"envelope_id": …}``; an
envelope not acknowledged within ``ack_timeout`` is sent again (``retry_attempt`` counts,
``retry_reason: "timeout"``), at most ``max_retries`` times; the server may send ``disconnect``
(``refresh_requested``) and close the socket a little later, after which the app opens a new
one.

Consumes pub/sub ``conv:<id>`` (conversations a connected bot is a member of) and
``user:<bot id>`` (the bot joined or left a conversation); produces envelopes.

How delivery stays complete and ordered although pub/sub is at-most-once: each app (bot) has
one session per node holding, per conversation, the seq of the last event it translated. A
session worker takes events one at a time; a duplicate (seq already seen) is dropped, and a gap
(seq jumps ahead) is filled from the store's event stream (``replay``, with the bot's
permissions) before the newer event, exactly as the realtime hub does for WebSocket clients.
Translated events become envelopes, and envelopes stay in the session until acknowledged, so
they survive the app's reconnects: a session outlives its last socket by ``session_linger``
seconds, during which events keep queueing and are delivered when the app is back.

Limits (see docs/slack-compat.md): sessions live in one node's memory, so an app whose sockets
land on two nodes gets each event once per node, and envelopes pending when a node stops are
lost with it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, WebSocket
from prometheus_client import Counter, Gauge
from pydantic import ValidationError

from parley.domain.actions import conversations, messages
from parley.domain.actions.api_tokens import ApiCaller, redeem_socket_ticket
from parley.domain.deps import Deps
from parley.domain.errors import DomainError
from parley.domain.events import Event, EventType
from parley.ports.pubsub import Subscription, conversation_channel, user_channel
from services.slack import ids
from services.slack.events import EventTranslator, event_callback
from services.slack.settings import SlackSettings

log = logging.getLogger(__name__)
router = APIRouter()

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013
MAX_CLIENT_FRAME = 64 * 1024
INBOX_SIZE = 10_000
TICK_SECONDS = 0.1

ENVELOPES = Counter("parley_slack_envelopes_total", "Socket Mode envelopes", ["outcome"])
SOCKETS = Gauge("parley_slack_sockets", "open Socket Mode connections")


class TooManyConnections(Exception):
    pass


class Envelope:
    def __init__(self, payload: dict[str, Any]) -> None:
        self.envelope_id = str(uuid.uuid4())
        self.payload = payload
        self.attempts = 0
        self.deadline = 0.0
        self.connection: SocketConnection | None = None

    def frame(self) -> dict[str, Any]:
        return {
            "envelope_id": self.envelope_id,
            "payload": self.payload,
            "type": "events_api",
            "accepts_response_payload": False,
            "retry_attempt": max(0, self.attempts - 1),
            "retry_reason": "timeout" if self.attempts > 1 else "",
        }


class SocketConnection:
    """One app socket: a bounded send queue drained by a writer task."""

    def __init__(self, websocket: WebSocket, queue_size: int) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.ws = websocket
        self.opened_at = asyncio.get_running_loop().time()
        self.draining_since: float | None = None
        self.closed = False
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=queue_size)
        self._writer = asyncio.create_task(self._write_loop(), name=f"slack-socket-writer:{self.id}")

    @property
    def active(self) -> bool:
        return not self.closed and self.draining_since is None

    def send(self, frame: dict[str, Any]) -> bool:
        if self.closed:
            return False
        try:
            self._queue.put_nowait(orjson.dumps(frame).decode())
            return True
        except asyncio.QueueFull:
            # An app that stops reading must not hold memory: drop the socket; its envelopes
            # stay unacked in the session and are redelivered on its next socket.
            asyncio.get_running_loop().create_task(self.close(CLOSE_POLICY, "send queue overflow"))
            return False

    async def _write_loop(self) -> None:
        try:
            while (text := await self._queue.get()) is not None:
                await self.ws.send_text(text)
        except Exception:
            self.closed = True  # the read loop sees the socket go and cleans up

    async def flush(self, timeout: float = 1.0) -> None:
        """Let the writer send what is queued (before a graceful close)."""
        if self.closed or self._writer.done():
            return
        with suppress(asyncio.QueueFull, TimeoutError):
            self._queue.put_nowait(None)
            await asyncio.wait_for(asyncio.shield(self._writer), timeout)

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self._writer.cancel()
        with suppress(Exception):
            await asyncio.wait_for(self.ws.close(code=code, reason=reason[:120]), timeout=1.0)


class AppSession:
    """One app (bot) on this node: its sockets, cursors and unacknowledged envelopes."""

    def __init__(self, hub: SocketModeHub, caller: ApiCaller) -> None:
        assert caller.bot is not None
        self.hub = hub
        self.caller = caller
        self.events = frozenset(caller.bot.event_types)
        self.connections: list[SocketConnection] = []
        self.cursors: dict[int, int] = {}  # conversation → last seq taken for translation
        self.emitted: dict[int, int] = {}  # conversation → last seq whose envelopes went out
        self.unacked: dict[str, Envelope] = {}
        self.backlog: deque[Envelope] = deque()
        self.idle_since: float | None = None
        self.inbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=INBOX_SIZE)
        self._translator = EventTranslator(hub.deps, caller)
        self._next = 0
        self._worker: asyncio.Task[None] | None = None

    @property
    def user_id(self) -> int:
        return self.caller.user.id

    async def start(self) -> None:
        """Follow every conversation the bot is in, from its current last seq."""
        views = await conversations.list_conversations(
            self.hub.deps, self.caller.user, self.caller.workspace.id, include_public=False
        )
        for view in views:
            self.cursors[view.conversation.id] = view.conversation.last_seq
        await self.hub.follow(self, list(self.cursors))
        self._worker = asyncio.create_task(self._run(), name=f"slack-session:{self.user_id}")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)

    def offer(self, kind: str, payload: bytes) -> None:
        try:
            self.inbox.put_nowait((kind, payload))
        except asyncio.QueueFull:
            # Dropping is safe: the next event of the conversation shows the gap, filled from the store.
            ENVELOPES.labels("inbox_overflow").inc()

    # -- translating, in seq order per conversation ----------------------------------------
    async def _run(self) -> None:
        while True:
            kind, payload = await self.inbox.get()
            try:
                event = Event.from_bytes(payload)
            except ValidationError:
                log.warning("ignoring malformed event for bot %s", self.user_id)
                continue
            if event.conversation_id is None or event.seq is None:
                continue  # ephemeral (typing, presence): Slack has no such events for bots
            try:
                if kind == "user":
                    await self._membership(event)
                else:
                    await self._advance(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Socket Mode: event %s for bot %s failed", event.event_id, self.user_id)

    async def _membership(self, event: Event) -> None:
        assert event.conversation_id is not None and event.seq is not None
        if event.type in (EventType.CONVERSATION_CREATED, EventType.MEMBER_JOINED):
            if event.conversation_id not in self.cursors:
                self.cursors[event.conversation_id] = event.seq - 1
                await self.hub.follow(self, [event.conversation_id])
            await self._advance(event)
        elif event.type is EventType.MEMBER_LEFT:
            await self._advance(event)
            self.cursors.pop(event.conversation_id, None)
            await self.hub.unfollow(self, [event.conversation_id])

    async def _advance(self, event: Event) -> None:
        assert event.conversation_id is not None and event.seq is not None
        last = self.cursors.get(event.conversation_id)
        if last is None or event.seq <= last:
            return  # not followed, or a duplicate
        if event.seq > last + 1:
            await self._fill(event.conversation_id, event.seq)
        self.cursors[event.conversation_id] = event.seq
        await self._emit(event)

    async def _fill(self, conversation_id: int, upto: int) -> None:
        """Emit the stored events between the cursor and ``upto`` (exclusive)."""
        for _attempt in range(3):
            after = self.cursors[conversation_id]
            try:
                replayed = await messages.replay(self.hub.deps, self.caller.user, conversation_id, after)
            except DomainError:
                return  # no longer a member
            if replayed.resync:
                log.info(
                    "bot %s skips events of %s older than the kept stream", self.user_id, conversation_id
                )
                return
            for raw in replayed.events:
                missed = Event.from_bytes(raw)
                if missed.seq is not None and self.cursors[conversation_id] < missed.seq < upto:
                    self.cursors[conversation_id] = missed.seq
                    await self._emit(missed)
            if self.cursors[conversation_id] >= upto - 1:
                return
            await asyncio.sleep(0.05)  # the store may not show the commit to this reader yet

    async def _emit(self, event: Event) -> None:
        for event_id, body in await self._translator.translate(event):
            if body["type"] in self.events:
                payload = event_callback(self.caller, body, event_id, int(event.ts.timestamp()))
                self.deliver(Envelope(payload))
        if event.conversation_id is not None and event.seq is not None:
            self.emitted[event.conversation_id] = event.seq

    # -- delivery ------------------------------------------------------------------------
    def _pick(self, avoid: SocketConnection | None) -> SocketConnection | None:
        active = [c for c in self.connections if c.active]
        if not active:
            return None
        others = [c for c in active if c is not avoid] or active
        self._next = (self._next + 1) % len(others)
        return others[self._next]

    def deliver(self, envelope: Envelope) -> None:
        connection = self._pick(avoid=envelope.connection)
        if connection is None:
            # Waits for the app's next socket (a retry that finds none waits there too).
            self.unacked.pop(envelope.envelope_id, None)
            self.backlog.append(envelope)
            self._bound()
            return
        envelope.attempts += 1
        envelope.connection = connection
        envelope.deadline = asyncio.get_running_loop().time() + self.hub.settings.ack_timeout
        self.unacked[envelope.envelope_id] = envelope
        if connection.send(envelope.frame()):
            ENVELOPES.labels("sent" if envelope.attempts == 1 else "resent").inc()

    def _bound(self) -> None:
        """An app that is away (or never acks) must not hold unbounded memory: beyond
        ``max_pending`` the oldest waiting envelopes are dropped."""
        while self.backlog and len(self.backlog) + len(self.unacked) > self.hub.settings.max_pending:
            self.backlog.popleft()
            ENVELOPES.labels("overflow").inc()

    def ack(self, envelope_id: str) -> None:
        if self.unacked.pop(envelope_id, None) is not None:
            ENVELOPES.labels("acked").inc()

    def tick(self, now: float) -> None:
        while self.backlog and any(c.active for c in self.connections):
            self.deliver(self.backlog.popleft())
        for envelope in [e for e in self.unacked.values() if e.deadline <= now]:
            if envelope.attempts > self.hub.settings.max_retries:
                del self.unacked[envelope.envelope_id]
                ENVELOPES.labels("dropped").inc()
                log.warning(
                    "bot %s never acknowledged envelope %s (%s); dropped",
                    self.user_id,
                    envelope.envelope_id,
                    envelope.payload.get("event_id"),
                )
            else:
                self.deliver(envelope)


class SocketModeHub:
    """This node's Socket Mode sessions and the pub/sub channels they need."""

    def __init__(self, deps: Deps, settings: SlackSettings) -> None:
        self.deps = deps
        self.settings = settings
        self.sessions: dict[int, AppSession] = {}
        self._followers: dict[int, set[AppSession]] = defaultdict(set)
        self._subscription: Subscription | None = None
        self._channels: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._pump(), name="slack-socket-pump"),
            asyncio.create_task(self._ticker(), name="slack-socket-ticker"),
        ]

    async def stop(self) -> None:
        """Ask every app to reconnect (to another node), then close."""
        for session in list(self.sessions.values()):
            for connection in list(session.connections):
                connection.send(self._disconnect_frame("refresh_requested"))
                await connection.flush()
                await connection.close(CLOSE_GOING_AWAY, "server shutting down: reconnect")
            await session.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._subscription is not None:
            await self._subscription.close()

    # -- sockets -------------------------------------------------------------------------
    async def open(self, websocket: WebSocket, caller: ApiCaller) -> SocketConnection:
        session = self.sessions.get(caller.user.id)
        if session is None:
            session = AppSession(self, caller)
            self.sessions[caller.user.id] = session
            try:
                await session.start()
            except BaseException:
                del self.sessions[caller.user.id]
                await self._drop(session)
                raise
        if sum(c.active for c in session.connections) >= self.settings.max_connections_per_app:
            raise TooManyConnections
        connection = SocketConnection(websocket, self.settings.send_queue_size)
        session.connections.append(connection)
        session.idle_since = None
        SOCKETS.inc()
        connection.send(
            {
                "type": "hello",
                "num_connections": sum(c.active for c in session.connections),
                "debug_info": {
                    "host": self._host(),
                    "build_number": 1,
                    "approximate_connection_time": int(self.settings.refresh_after or 18060),
                },
                "connection_info": {"app_id": ids.app_id(caller.user.id)},
            }
        )
        session.tick(asyncio.get_running_loop().time())  # hand over what waited for a socket
        return connection

    async def closed(self, connection: SocketConnection, caller: ApiCaller) -> None:
        SOCKETS.dec()
        await connection.close(CLOSE_NORMAL, "bye")
        session = self.sessions.get(caller.user.id)
        if session is None:
            return
        with suppress(ValueError):
            session.connections.remove(connection)
        if not session.connections:
            session.idle_since = asyncio.get_running_loop().time()

    def ack(self, caller: ApiCaller, text: str) -> None:
        try:
            frame = orjson.loads(text)
        except orjson.JSONDecodeError:
            return
        envelope_id = frame.get("envelope_id") if isinstance(frame, dict) else None
        session = self.sessions.get(caller.user.id)
        if isinstance(envelope_id, str) and session is not None:
            session.ack(envelope_id)

    def refresh(self, bot_user_id: int | None = None, reason: str = "refresh_requested") -> int:
        """Send ``disconnect`` to an app's sockets (all apps' when None); each is closed after
        ``disconnect_grace`` unless the app closed it first. Returns how many were asked."""
        now = asyncio.get_running_loop().time()
        asked = 0
        for session in list(self.sessions.values()):
            if bot_user_id is not None and session.user_id != bot_user_id:
                continue
            for connection in session.connections:
                if connection.active:
                    connection.send(self._disconnect_frame(reason))
                    connection.draining_since = now
                    asked += 1
        return asked

    def _disconnect_frame(self, reason: str) -> dict[str, Any]:
        return {"type": "disconnect", "reason": reason, "debug_info": {"host": self._host()}}

    def _host(self) -> str:
        return f"parley-{self.deps.settings.node_id}"

    # -- subscriptions -------------------------------------------------------------------
    async def follow(self, session: AppSession, conversation_ids: list[int]) -> None:
        channels = [user_channel(session.user_id)]
        for conversation_id in conversation_ids:
            self._followers[conversation_id].add(session)
            channels.append(conversation_channel(conversation_id))
        new = [c for c in channels if c not in self._channels]
        if new:
            self._channels.update(new)
            if self._subscription is None:
                self._subscription = self.deps.pubsub.subscription()
            await self._subscription.subscribe(*new)

    async def unfollow(self, session: AppSession, conversation_ids: list[int]) -> None:
        gone = []
        for conversation_id in conversation_ids:
            followers = self._followers.get(conversation_id)
            if followers is None:
                continue
            followers.discard(session)
            if not followers:
                del self._followers[conversation_id]
                gone.append(conversation_channel(conversation_id))
        await self._unsubscribe(gone)

    async def _unsubscribe(self, channels: list[str]) -> None:
        if channels and self._subscription is not None:
            self._channels.difference_update(channels)
            await self._subscription.unsubscribe(*channels)

    async def _drop(self, session: AppSession) -> None:
        await session.stop()
        await self.unfollow(session, list(session.cursors))
        if session.user_id not in self.sessions:
            await self._unsubscribe([user_channel(session.user_id)])
        if session.unacked or session.backlog:
            ENVELOPES.labels("expired").inc(len(session.unacked) + len(session.backlog))
            log.warning(
                "bot %s did not come back within %.0f s; %d events not delivered",
                session.user_id,
                self.settings.session_linger,
                len(session.unacked) + len(session.backlog),
            )

    # -- background work -----------------------------------------------------------------
    async def _pump(self) -> None:
        while True:
            if self._subscription is None:
                self._subscription = self.deps.pubsub.subscription()
            try:
                async for channel, payload in self._subscription.messages():
                    self._dispatch(channel, payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pub/sub stream failed; resubscribing")
                await asyncio.sleep(0.5)

    def _dispatch(self, channel: str, payload: bytes) -> None:
        kind, _, key = channel.partition(":")
        if not key.isdigit():
            return
        target = int(key)
        if kind == "conv":
            for follower in list(self._followers.get(target, ())):
                follower.offer("conv", payload)
        elif kind == "user" and (session := self.sessions.get(target)) is not None:
            session.offer("user", payload)

    async def _ticker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                await self._tick(loop.time())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Socket Mode housekeeping failed")

    async def _tick(self, now: float) -> None:
        settings = self.settings
        for session in list(self.sessions.values()):
            for connection in list(session.connections):
                if (
                    settings.refresh_after
                    and connection.active
                    and now - connection.opened_at > settings.refresh_after
                ):
                    connection.send(self._disconnect_frame("refresh_requested"))
                    connection.draining_since = now
                if (
                    connection.draining_since is not None
                    and now - connection.draining_since > settings.disconnect_grace
                ):
                    await connection.close(CLOSE_GOING_AWAY, "refreshed: reconnect")
            session.tick(now)
            if session.idle_since is not None and now - session.idle_since > settings.session_linger:
                del self.sessions[session.user_id]
                await self._drop(session)


@router.websocket("/slack/socket")
async def socket_mode_endpoint(websocket: WebSocket) -> None:
    deps: Deps = websocket.app.state.deps
    hub: SocketModeHub = websocket.app.state.slack_socket_hub
    try:
        caller = await redeem_socket_ticket(deps, websocket.query_params.get("ticket") or "")
    except DomainError as exc:
        await websocket.close(code=CLOSE_POLICY, reason=exc.message[:120])  # before accept: HTTP 403
        return
    if caller.bot is None:
        await websocket.close(code=CLOSE_POLICY, reason="Socket Mode is for apps")
        return
    await websocket.accept()
    try:
        connection = await hub.open(websocket, caller)
    except TooManyConnections:
        await websocket.close(code=CLOSE_TRY_AGAIN, reason="too many connections for this app")
        return
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None and message.get("bytes") is not None:
                text = message["bytes"].decode(errors="replace")
            if text is None or len(text) > MAX_CLIENT_FRAME:
                continue
            hub.ack(caller, text)
    finally:
        await hub.closed(connection, caller)


@asynccontextmanager
async def socket_mode_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Runs inside the app's own lifespan (after it set ``app.state.deps``)."""
    settings: SlackSettings | None = getattr(app.state, "slack_settings", None)
    if settings is None:
        settings = app.state.slack_settings = SlackSettings()
    hub = SocketModeHub(app.state.deps, settings)
    await hub.start()
    app.state.slack_socket_hub = hub
    try:
        yield
    finally:
        await hub.stop()
