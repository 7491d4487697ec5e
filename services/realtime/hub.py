"""RealtimeHub: this node's sockets and the pub/sub channels they need.

Consumes pub/sub channels ``conv:<id>`` (conversation events), ``user:<id>`` (membership
changes of local users) and ``ws:<id>`` (presence); produces WebSocket frames to local sockets.
A node subscribes to a conversation's channel only while one of its sockets follows it, so
nodes share the load of large workspaces instead of each receiving everything.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from datetime import datetime

import orjson

from parley.domain.actions.messages import replay
from parley.domain.deps import Deps
from parley.domain.errors import DomainError, Forbidden, NotFound
from parley.domain.events import EventType
from parley.domain.models import User
from parley.ports.pubsub import Subscription, conversation_channel, user_channel, workspace_channel
from parley.runtime import metrics
from services.realtime.connection import ClientConnection, Gap, WriteRound

log = logging.getLogger(__name__)
SWEEP_INTERVAL = 2.0


class RealtimeHub:
    def __init__(self, deps: Deps) -> None:
        self._deps = deps
        self._by_user: dict[int, set[ClientConnection]] = defaultdict(set)
        self._by_conversation: dict[int, set[ClientConnection]] = defaultdict(set)
        self._by_workspace: dict[int, set[ClientConnection]] = defaultdict(set)
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._presence_task: asyncio.Task[None] | None = None
        self._sweep_task: asyncio.Task[None] | None = None
        self._channels: set[str] = set()
        self._status: dict[int, str] = {}
        # Membership events applied per user, so a gap fill can tell whether its store read is
        # older than a join or leave this node has applied since.
        self._membership_events: Counter[int] = Counter()
        # Shared by this node's sockets.
        self.write_round = WriteRound(max_defer=deps.settings.ws_write_defer_max_ms / 1000)
        self.stopped = False

    @property
    def connections(self) -> list[ClientConnection]:
        return [c for conns in self._by_user.values() for c in conns]

    async def start(self) -> None:
        self._task = asyncio.create_task(self._pump(), name="realtime-hub")
        self._presence_task = asyncio.create_task(self._refresh_presence(), name="presence-refresh")
        self._sweep_task = asyncio.create_task(self._sweep(), name="catch-up-sweep")

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        for task in (self._task, self._presence_task, self._sweep_task):
            if task:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._subscription:
            await self._subscription.close()

    async def _sweep(self) -> None:
        """Safety net for pub/sub's at-most-once delivery: a lost event is normally noticed when
        the next one arrives (seq gap), but a loss at the tail of a conversation has no next
        event. Every few seconds, read each followed conversation's stored ``last_seq``; a socket
        that has still not been sent what was stored one sweep *earlier* is filled from the
        store. Comparing with the earlier reading, not the current one, keeps busy conversations
        (always a few events in flight) from triggering fills on every sweep."""
        previous: dict[int, int] = {}
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            try:
                conversation_ids = list(self._by_conversation)
                if not conversation_ids:
                    previous = {}
                    continue
                async with self._deps.store.read() as reader:
                    stored = await reader.last_seqs(conversation_ids)
                for conn, conversation_id in self._behind(previous):
                    conn.catch_up(conversation_id)
                previous = stored
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("catch-up sweep failed; next one in %s s", SWEEP_INTERVAL, exc_info=True)

    def _behind(self, stored: dict[int, int]) -> list[tuple[ClientConnection, int]]:
        """Sockets not yet sent a conversation's events up to ``stored[conversation]``."""
        behind = []
        for conversation_id, last in stored.items():
            for conn in self._by_conversation.get(conversation_id, ()):
                stream = conn.streams.get(conversation_id)
                if stream is not None and not stream.filling and stream.last_seq < last:
                    behind.append((conn, conversation_id))
        return behind

    def note_status(self, user_id: int, status: str) -> None:
        self._status[user_id] = status

    async def _refresh_presence(self) -> None:
        """Presence entries expire (a crashed node's users go offline by themselves): renew the
        entries of users connected here, well before they lapse."""
        ttl = self._deps.settings.presence_ttl_seconds
        while True:
            await asyncio.sleep(ttl / 3)
            for user_id in list(self._by_user):
                await self._deps.presence.set(user_id, self._status.get(user_id, "online"), ttl)

    def user_connection_count(self, user_id: int) -> int:
        return len(self._by_user.get(user_id, ()))

    # -- registration --------------------------------------------------------------------
    async def register(self, conn: ClientConnection, cursors: dict[int, int]) -> list[dict[str, object]]:
        """Follow every conversation of the user, replaying from ``cursors`` where given;
        returns the conversations for the hello frame."""
        user_id = conn.user.id
        # The user channel first: a membership change committed after the read below reaches
        # this socket live; one that arrives while the read runs is recorded, so the read's
        # older view cannot undo it.
        conn.membership_changes = {}
        self._by_user[user_id].add(conn)
        metrics.CONNECTIONS.inc()
        try:
            await self._subscribe([user_channel(user_id)])
            async with self._deps.store.read() as reader:
                memberships = await reader.list_memberships(user_id)
                workspaces = await reader.list_user_workspaces(user_id)
        except BaseException:
            conn.membership_changes = None
            await self.unregister(conn)  # no ghost socket holding the user's channel
            raise
        changes, conn.membership_changes = conn.membership_changes or {}, None
        memberships = [m for m in memberships if changes.get(m.conversation.id, 0) <= m.conversation.last_seq]
        channels = []
        for m in memberships:
            # A resuming socket's stream starts at its cursor, before any event can arrive: a live
            # event during the subscription below then waits behind the replay of what came
            # before it. (Starting at last_seq and rewinding after the subscription sent such an
            # event twice, the second time out of order: found by the soak test.)
            last_seq = m.conversation.last_seq
            conn.follow(m.conversation.id, min(cursors.get(m.conversation.id, last_seq), last_seq))
            self._by_conversation[m.conversation.id].add(conn)
            channels.append(conversation_channel(m.conversation.id))
        for w in workspaces:
            self._by_workspace[w.id].add(conn)
            channels.append(workspace_channel(w.id))
        await self._subscribe(channels)
        for m in memberships:
            stream = conn.streams.get(m.conversation.id)  # gone if the user left meanwhile
            if stream is not None and stream.last_seq < m.conversation.last_seq:
                conn.catch_up(m.conversation.id)  # the replay, unless a live event started it
        return [
            {
                "conversation": m.conversation.model_dump(mode="json"),
                "last_read_seq": m.last_read_seq,
            }
            for m in memberships
        ]

    async def unregister(self, conn: ClientConnection) -> None:
        metrics.CONNECTIONS.dec()
        user_id = conn.user.id
        self._by_user[user_id].discard(conn)
        gone: list[str] = []
        if not self._by_user[user_id]:
            del self._by_user[user_id]
            self._status.pop(user_id, None)
            self._membership_events.pop(user_id, None)
            gone.append(user_channel(user_id))
        for conversation_id in list(conn.streams):
            gone += self._drop(self._by_conversation, conversation_id, conn, conversation_channel)
        for workspace_id, conns in list(self._by_workspace.items()):
            if conn in conns:
                gone += self._drop(self._by_workspace, workspace_id, conn, workspace_channel)
        await self._unsubscribe(gone)

    @staticmethod
    def _drop(
        index: dict[int, set[ClientConnection]], key: int, conn: ClientConnection, channel: object
    ) -> list[str]:
        conns = index.get(key)
        if conns is None:
            return []
        conns.discard(conn)
        if conns:
            return []
        del index[key]
        return [channel(key)]  # type: ignore[operator]

    async def _subscribe(self, channels: list[str]) -> None:
        new = [c for c in channels if c not in self._channels]
        if not new:
            return
        self._channels.update(new)
        if self._subscription is None:
            self._subscription = self._deps.pubsub.subscription()
        await self._subscription.subscribe(*new)

    async def _unsubscribe(self, channels: list[str]) -> None:
        if channels and self._subscription is not None:
            self._channels.difference_update(channels)
            await self._subscription.unsubscribe(*channels)

    # -- dispatch ------------------------------------------------------------------------
    async def _pump(self) -> None:
        while True:
            if self._subscription is None:
                self._subscription = self._deps.pubsub.subscription()
            try:
                async for channel, payload in self._subscription.messages():
                    await self._dispatch(channel, payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pub/sub stream failed; resubscribing")
                await asyncio.sleep(0.5)

    async def _dispatch(self, channel: str, payload: bytes) -> None:
        try:
            event = orjson.loads(payload)
            kind, _, key = channel.partition(":")
            target = int(key)
        except (ValueError, orjson.JSONDecodeError):
            log.warning("ignoring malformed pub/sub message on %s", channel)
            return
        text = payload.decode()
        if kind == "conv" and event.get("seq") is not None:
            metrics.observe_age("delivery", datetime.fromisoformat(str(event["ts"])))
        if kind == "conv":
            self._deliver_conversation_event(target, event, text)
            leaver = _leaver(event)
            if leaver in self._by_user:
                # Also published on the leaver's own channel; this copy stops their sockets
                # should that one be lost (at-most-once). Applying it twice changes nothing.
                await self._membership_changed(leaver, event, text)
        elif kind == "user":
            if event.get("type") == EventType.READ_MARKER:
                for conn in list(self._by_user.get(target, ())):
                    conn.send_text(text)
            else:
                await self._membership_changed(target, event, text)
        elif kind == "ws":
            for conn in list(self._by_workspace.get(target, ())):
                conn.send_text(text)

    def _deliver_conversation_event(self, conversation_id: int, event: dict[str, object], text: str) -> None:
        conns = self._by_conversation.get(conversation_id)
        if not conns:
            return
        seq = event.get("seq")
        for conn in list(conns):
            if seq is None:  # ephemeral (typing): no order, no replay
                conn.send_text(text)
            else:
                conn.offer(conversation_id, int(str(seq)), text)

    async def _stop_following(self, user_id: int, conversation_id: int) -> None:
        gone: list[str] = []
        for conn in list(self._by_user.get(user_id, ())):
            conn.unfollow(conversation_id)
            gone += self._drop(self._by_conversation, conversation_id, conn, conversation_channel)
        await self._unsubscribe(gone)

    async def _membership_changed(self, user_id: int, event: dict[str, object], text: str) -> None:
        conversation_id = int(str(event["conversation_id"]))
        seq = int(str(event["seq"]))
        conns = list(self._by_user.get(user_id, ()))
        if conns:
            self._membership_events[user_id] += 1
        for conn in conns:
            if conn.membership_changes is not None:
                conn.membership_changes[conversation_id] = seq
        if event["type"] in (EventType.CONVERSATION_CREATED, EventType.MEMBER_JOINED):
            for conn in conns:
                conn.follow(conversation_id, seq - 1)
                self._by_conversation[conversation_id].add(conn)
                conn.offer(conversation_id, seq, text)
            await self._subscribe([conversation_channel(conversation_id)])
        elif event["type"] == EventType.MEMBER_LEFT:
            gone: list[str] = []
            for conn in conns:
                conn.leave(conversation_id, seq, text)  # tell the leaver, then stop
                gone += self._drop(self._by_conversation, conversation_id, conn, conversation_channel)
            await self._unsubscribe(gone)

    # -- gap filling -----------------------------------------------------------------------
    async def fill_gap(self, user: User, conversation_id: int, after_seq: int) -> Gap:
        """The stored events after ``after_seq`` (see ``ClientConnection`` for why)."""
        applied = self._membership_events[user.id]
        try:
            result = await replay(self._deps, user, conversation_id, after_seq)
        except (Forbidden, NotFound):
            # No longer a member, and its member.left never reached this node (pub/sub is
            # at-most-once): stop following the conversation on every socket of the user. Unless
            # a join or leave was applied meanwhile: the read may predate a rejoin, and the
            # fill's next attempt reads again.
            if self._membership_events[user.id] == applied:
                await self._stop_following(user.id, conversation_id)
            return Gap([], resync_to=None)
        except DomainError:
            return Gap([], resync_to=None)  # the store is unavailable: the fill tries again
        if result.resync:
            return Gap([], resync_to=result.last_seq)
        return Gap([(int(orjson.loads(raw)["seq"]), raw.decode()) for raw in result.events], resync_to=None)


def _leaver(event: dict[str, object]) -> int | None:
    if event.get("type") != EventType.MEMBER_LEFT:
        return None
    data = event.get("data")
    return int(str(data["user_id"])) if isinstance(data, dict) and "user_id" in data else None
