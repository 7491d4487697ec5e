"""Every event a real run emits matches its declared payload schema."""

from __future__ import annotations

from datetime import UTC, datetime

from parley.domain.events import PAYLOAD_SCHEMAS, Event, EventType
from tests.support.clients import WsClient
from tests.support.server import RunningServer
from tests.support.world import make_world


async def test_events_on_the_wire_match_their_schemas(server: RunningServer) -> None:
    world = await make_world(server.url)
    alice, bob = world.users
    b = await WsClient.connect(server.ws_url, bob.token)
    await b.wait_for(lambda f: f["type"] == "hello")
    a = await WsClient.connect(server.ws_url, alice.token)
    await a.send({"type": "typing", "conversation_id": world.channel_id})
    msg = await alice.post(f"/conversations/{world.channel_id}/messages", {"text": "x"}, expect=201)
    await alice.http.patch(f"/api/v1/messages/{msg['id']}", json={"text": "y"})
    await bob.post(f"/messages/{msg['id']}/reactions", {"emoji": "eyes"}, expect=204)
    await bob.http.delete(f"/api/v1/messages/{msg['id']}/reactions/eyes")
    await alice.http.delete(f"/api/v1/messages/{msg['id']}")
    other = await alice.post(f"/workspaces/{world.workspace_id}/channels", {"name": "more"}, expect=201)
    await bob.post(f"/conversations/{other['id']}/join", expect=200)
    await bob.post(f"/conversations/{other['id']}/leave", expect=204)
    await alice.post(f"/workspaces/{world.workspace_id}/dms", {"user_ids": [bob.id]}, expect=200)
    await b.wait_for(lambda f: f["type"] == "conversation.created")
    await b.wait_for(lambda f: f["type"] == "member.left")
    seen = set()
    for frame in b.frames:
        if frame["type"] in {t.value for t in EventType}:
            event = Event.model_validate(frame)
            PAYLOAD_SCHEMAS[event.type].model_validate(event.data)
            seen.add(event.type)
    assert seen >= {
        EventType.MESSAGE_CREATED,
        EventType.MESSAGE_EDITED,
        EventType.MESSAGE_DELETED,
        EventType.REACTION_ADDED,
        EventType.REACTION_REMOVED,
        EventType.MEMBER_JOINED,
        EventType.MEMBER_LEFT,
        EventType.TYPING,
        EventType.PRESENCE,
        EventType.CONVERSATION_CREATED,
    }
    await a.close()
    await b.close()
    await world.close()


def test_an_event_travels_as_the_bytes_it_arrived_in_and_a_changed_copy_anew() -> None:
    """Consumers forward an envelope without serializing it again (the promise of
    parley/domain/events.py), and a changed copy never carries its original's bytes."""
    original = Event(
        type=EventType.MESSAGE_CREATED,
        event_id=1,
        workspace_id=2,
        conversation_id=3,
        seq=4,
        ts=datetime(2026, 11, 25, tzinfo=UTC),
        data={"message": {"id": "5", "text": "héllo <b>"}},
    )
    raw = original.to_bytes()
    decoded = Event.from_bytes(raw)
    assert decoded == original
    assert decoded.to_bytes() is raw
    assert Event.from_bytes(bytes(raw)) == original  # equal bytes from another source
    changed = decoded.model_copy(update={"seq": 9})
    assert Event.from_bytes(changed.to_bytes()).seq == 9
    assert Event.from_bytes(raw).seq == 4
