"""FanoutConsumer: conversation events → pub/sub channels read by realtime nodes.

Consumes ``parley.conversation-events.v1`` (group ``fanout``); produces on ``conv:<id>`` every
event, and on ``user:<id>`` the events that change who is in a conversation, so the realtime
nodes holding that user's sockets subscribe (or unsubscribe) to the conversation.
Idempotent: a replayed event carries the same ``seq``, which realtime nodes drop as a duplicate.
"""

from __future__ import annotations

from collections.abc import Sequence

from parley.domain.events import Event, EventType
from parley.ports.pubsub import PubSub, conversation_channel, user_channel


class FanoutConsumer:
    group = "fanout"
    linger = 0.0  # on the path from send to screen

    def __init__(self, pubsub: PubSub) -> None:
        self._pubsub = pubsub

    async def check_engine(self) -> None:
        await self._pubsub.ping()

    async def handle_batch(self, events: Sequence[Event]) -> None:
        items: list[tuple[str, bytes]] = []
        for event in events:
            if event.conversation_id is None:
                continue
            payload = event.to_bytes()
            for user_id in _membership_targets(event):
                items.append((user_channel(user_id), payload))
            items.append((conversation_channel(event.conversation_id), payload))
        if items:
            await self._pubsub.publish_many(items)


def _membership_targets(event: Event) -> list[int]:
    if event.type is EventType.CONVERSATION_CREATED:
        return [int(u) for u in event.data.get("member_ids", [])]
    if event.type in (EventType.MEMBER_JOINED, EventType.MEMBER_LEFT):
        return [int(event.data["user_id"])]
    return []
