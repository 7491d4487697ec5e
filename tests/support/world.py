"""A small world for tests: users in a workspace with a shared channel."""

from __future__ import annotations

from dataclasses import dataclass

from tests.support.clients import ApiUser


@dataclass
class World:
    workspace_id: str
    channel_id: str
    users: list[ApiUser]

    async def close(self) -> None:
        for u in self.users:
            await u.close()


async def make_world(base_url: str, n_users: int = 2, *, private: bool = False) -> World:
    users = [await ApiUser.signup(base_url) for _ in range(n_users)]
    owner = users[0]
    ws = await owner.post("/workspaces", {"name": f"ws {owner.username}"}, expect=201)
    invite = await owner.post(f"/workspaces/{ws['id']}/invites", expect=201)
    for u in users[1:]:
        await u.post("/workspaces/join", {"code": invite["code"]}, expect=200)
    channel = await owner.post(
        f"/workspaces/{ws['id']}/channels", {"name": "general", "private": private}, expect=201
    )
    for u in users[1:]:
        if private:
            await owner.post(f"/conversations/{channel['id']}/members", {"user_id": u.id}, expect=200)
        else:
            await u.post(f"/conversations/{channel['id']}/join", expect=200)
    return World(ws["id"], channel["id"], users)
