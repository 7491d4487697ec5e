"""Workspaces, invites, channels, DMs, membership, and who can see what."""

from __future__ import annotations

from tests.support.clients import ApiUser
from tests.support.server import RunningServer
from tests.support.world import make_world


async def test_invite_code_lets_a_user_join_a_workspace(server: RunningServer) -> None:
    owner, guest = await ApiUser.signup(server.url), await ApiUser.signup(server.url)
    ws = await owner.post("/workspaces", {"name": "Acme Inc"}, expect=201)
    assert ws["slug"] == "acme-inc"
    await guest.get(f"/workspaces/{ws['id']}", expect=404)
    invite = await owner.post(f"/workspaces/{ws['id']}/invites", expect=201)
    await guest.post("/workspaces/join", {"code": invite["code"]}, expect=200)
    members = await guest.get(f"/workspaces/{ws['id']}/members")
    assert {m["user"]["username"] for m in members} == {owner.username, guest.username}
    assert {m["role"] for m in members} == {"owner", "member"}
    await guest.post("/workspaces/join", {"code": "bogus"}, expect=404)


async def test_channel_names_are_unique_per_workspace(server: RunningServer) -> None:
    world = await make_world(server.url)
    owner = world.users[0]
    r = await owner.post(f"/workspaces/{world.workspace_id}/channels", {"name": "general"}, expect=409)
    assert r["error"]["code"] == "name_taken"
    await owner.post(f"/workspaces/{world.workspace_id}/channels", {"name": "Bad Name"}, expect=422)
    await world.close()


async def test_public_channel_is_listed_and_joinable_private_is_invisible(server: RunningServer) -> None:
    world = await make_world(server.url, 2)
    owner, other = world.users
    private = await owner.post(
        f"/workspaces/{world.workspace_id}/channels", {"name": "secret", "private": True}, expect=201
    )
    public = await owner.post(f"/workspaces/{world.workspace_id}/channels", {"name": "random"}, expect=201)
    listed = await other.get(f"/workspaces/{world.workspace_id}/conversations")
    names = {c["conversation"]["name"]: c["is_member"] for c in listed}
    assert names.get("random") is False and "secret" not in names
    await other.get(f"/conversations/{private['id']}", expect=404)
    await other.post(f"/conversations/{private['id']}/join", expect=404)
    await other.post(f"/conversations/{public['id']}/join", expect=200)
    members = await owner.get(f"/conversations/{public['id']}/members")
    assert {m["username"] for m in members} == {owner.username, other.username}
    r = await other.http.post(f"/api/v1/conversations/{public['id']}/leave")
    assert r.status_code == 204
    await other.get(f"/conversations/{public['id']}/messages", expect=403)
    await world.close()


async def test_dm_is_opened_once_per_pair_and_group_dm_per_set(server: RunningServer) -> None:
    world = await make_world(server.url, 3)
    a, b, c = world.users
    dm1 = await a.post(f"/workspaces/{world.workspace_id}/dms", {"user_ids": [b.id]}, expect=200)
    dm2 = await b.post(f"/workspaces/{world.workspace_id}/dms", {"user_ids": [a.id]}, expect=200)
    group = await a.post(f"/workspaces/{world.workspace_id}/dms", {"user_ids": [b.id, c.id]}, expect=200)
    assert dm1["id"] == dm2["id"] and dm1["kind"] == "dm"
    assert group["kind"] == "group_dm" and group["id"] != dm1["id"]
    await c.get(f"/conversations/{dm1['id']}/messages", expect=404)
    await a.post(f"/conversations/{dm1['id']}/leave", expect=403)
    await world.close()


async def test_another_workspace_is_invisible(server: RunningServer) -> None:
    world = await make_world(server.url, 2)
    stranger = await ApiUser.signup(server.url)
    await stranger.get(f"/workspaces/{world.workspace_id}", expect=404)
    await stranger.get(f"/workspaces/{world.workspace_id}/conversations", expect=404)
    await stranger.get(f"/conversations/{world.channel_id}", expect=404)
    await stranger.post(f"/conversations/{world.channel_id}/join", expect=404)
    await stranger.post(f"/workspaces/{world.workspace_id}/channels", {"name": "mine"}, expect=404)
    await world.close()


async def test_users_are_visible_only_to_people_sharing_a_workspace(server: RunningServer) -> None:
    world = await make_world(server.url, 2)
    alice, bob = world.users
    stranger = await ApiUser.signup(server.url)
    assert (await alice.get(f"/users/{bob.id}"))["username"] == bob.username
    await stranger.get(f"/users/{bob.id}", expect=404)
    await alice.get("/users/12345", expect=404)
    await world.close()
    await stranger.close()


async def test_dm_listing_names_its_members_and_presence_lists_the_workspace(server: RunningServer) -> None:
    world = await make_world(server.url, 2)
    alice, bob = world.users
    dm = await alice.post(f"/workspaces/{world.workspace_id}/dms", {"user_ids": [bob.id]}, expect=200)
    listed = await bob.get(f"/workspaces/{world.workspace_id}/conversations")
    entry = next(c for c in listed if c["conversation"]["id"] == dm["id"])
    assert sorted(entry["member_ids"]) == sorted([alice.id, bob.id])
    channel = next(c for c in listed if c["conversation"]["id"] == world.channel_id)
    assert channel["member_ids"] is None
    presence = await alice.get(f"/workspaces/{world.workspace_id}/presence")
    assert presence == {alice.id: "offline", bob.id: "offline"}
    stranger = await ApiUser.signup(server.url)
    await stranger.get(f"/workspaces/{world.workspace_id}/presence", expect=404)
    await world.close()
    await stranger.close()


async def test_reopening_a_group_dm_someone_left_brings_them_back(server: RunningServer) -> None:
    world = await make_world(server.url, 3)
    alice, bob, carol = world.users
    ws = world.workspace_id
    group = await alice.post(f"/workspaces/{ws}/dms", {"user_ids": [bob.id, carol.id]}, expect=200)
    await carol.post(f"/conversations/{group['id']}/leave", expect=204)
    await alice.post(f"/conversations/{group['id']}/messages", {"text": "after carol left"}, expect=201)

    # Opened again by someone still in it: the same conversation, with exactly these members.
    again = await alice.post(f"/workspaces/{ws}/dms", {"user_ids": [bob.id, carol.id]}, expect=200)
    assert again["id"] == group["id"]
    view = await alice.get(f"/conversations/{again['id']}")
    assert sorted(view["member_ids"]) == sorted([alice.id, bob.id, carol.id])
    await alice.post(f"/conversations/{group['id']}/messages", {"text": "carol is back"}, expect=201)
    history = await carol.get(f"/conversations/{group['id']}/messages")
    assert "carol is back" in [m["text"] for m in history["messages"]]
    await world.close()


async def test_reopening_a_group_dm_one_left_hands_back_a_conversation_one_can_use(
    server: RunningServer,
) -> None:
    world = await make_world(server.url, 3)
    alice, bob, carol = world.users
    ws = world.workspace_id
    group = await alice.post(f"/workspaces/{ws}/dms", {"user_ids": [bob.id, carol.id]}, expect=200)
    await carol.post(f"/conversations/{group['id']}/leave", expect=204)

    # Opened again by the one who left: she is back in it (it used to be handed back to her
    # without her, and every later call on it was a 404).
    again = await carol.post(f"/workspaces/{ws}/dms", {"user_ids": [alice.id, bob.id]}, expect=200)
    assert again["id"] == group["id"]
    await carol.post(f"/conversations/{group['id']}/messages", {"text": "I am back"}, expect=201)
    history = await alice.get(f"/conversations/{group['id']}/messages")
    assert [m["text"] for m in history["messages"]][-1:] == ["I am back"]
    await world.close()
