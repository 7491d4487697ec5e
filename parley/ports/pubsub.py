"""The pub/sub port: live fan-out from the fanout consumer to realtime nodes.

Guarantee: at-most-once, ordered per channel for a single publisher, to the subscribers present
at publish time. Nothing relies on it for durability: realtime nodes check each event's ``seq``
and fill gaps from the store, so a dropped pub/sub message is late, never lost.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol


class Subscription(Protocol):
    async def subscribe(self, *channels: str) -> None: ...

    async def unsubscribe(self, *channels: str) -> None: ...

    def messages(self) -> AsyncIterator[tuple[str, bytes]]:
        """(channel, payload) pairs as they arrive, until ``close``."""
        ...

    async def close(self) -> None: ...


class PubSub(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None: ...

    async def publish(self, channel: str, payload: bytes) -> None: ...

    async def publish_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Publish several messages, in order (one round trip where the engine allows)."""
        ...

    def subscription(self) -> Subscription: ...


def conversation_channel(conversation_id: int) -> str:
    return f"conv:{conversation_id}"


def user_channel(user_id: int) -> str:
    return f"user:{user_id}"


def workspace_channel(workspace_id: int) -> str:
    return f"ws:{workspace_id}"


RELAY_WAKEUP_CHANNEL = "relay:wakeup"
