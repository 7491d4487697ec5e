"""``python -m loadtests.seed``: create the users, workspaces, channels, memberships and DMs a
load test needs, over the public REST API, and write the manifest Locust reads.

Idempotent: every step first looks at what the target already has (a user who can log in, a
workspace with the slug, a channel with the name, a member already in) and only creates what is
missing, so re-running it against a seeded target costs one login per user and a few listings.
Fast: requests run concurrently (``--concurrency``), phase after phase (users, workspaces,
workspace members, channels, channel members, DMs), since each phase needs the ids of the last.

The plan (who is in which conversation) is a pure function of the sizes and the profile's
random seed: the same arguments give the same memberships on any target.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

from loadtests.manifest import ConversationEntry, ConversationKind, Manifest, UserEntry, WorkspaceEntry
from loadtests.profile import (
    PASSWORD,
    Population,
    load_profile,
    manifest_path,
    normalized_target,
    profile_names,
    username,
)

API = "/api/v1"
T = TypeVar("T")


class SeedError(RuntimeError):
    pass


# ---------------------------------------------------------------- the plan (pure)


@dataclass(frozen=True)
class PlannedConversation:
    workspace: int
    kind: ConversationKind
    name: str | None
    members: list[int]  # user indexes; members[0] creates it (channels) or opens it (DMs)


@dataclass(frozen=True)
class Plan:
    users: int
    workspace_members: list[list[int]]  # workspace number → user indexes; [0] is the owner
    conversations: list[PlannedConversation]

    def workspace_of(self, user_index: int) -> int:
        return user_index % len(self.workspace_members)


def make_plan(users: int, workspaces: int, channels: int, population: Population) -> Plan:
    """Users go round-robin into workspaces. In each workspace: the profile's large channels
    (a share of its members each), then small channels (a few random members each), then DMs
    (each user with ``dms_per_user`` random others of the same workspace)."""
    if workspaces < 1 or users < 2 * workspaces:
        raise SeedError("need at least one workspace and two users per workspace")
    if channels < 0:
        raise SeedError("channels must be >= 0")
    rng = random.Random(population.random_seed)
    members = [[i for i in range(users) if i % workspaces == w] for w in range(workspaces)]
    planned: list[PlannedConversation] = []
    for w, people in enumerate(members):
        large = population.large_channels[:channels]
        for k, share in enumerate(large):
            size = max(2, math.ceil(share * len(people)))
            chosen = people if size >= len(people) else rng.sample(people, size)
            planned.append(PlannedConversation(w, "large", f"big-{k}", sorted(chosen)))
        low, high = population.small_channel_members
        for k in range(channels - len(large)):
            size = min(len(people), rng.randint(low, high))
            planned.append(PlannedConversation(w, "small", f"room-{k}", rng.sample(people, size)))
        pairs: set[tuple[int, int]] = set()
        for person in people:
            others = [p for p in people if p != person]
            for other in rng.sample(others, min(population.dms_per_user, len(others))):
                pairs.add((min(person, other), max(person, other)))
        planned.extend(PlannedConversation(w, "dm", None, [a, b]) for a, b in sorted(pairs))
    return Plan(users, members, planned)


# ---------------------------------------------------------------- talking to the target


@dataclass
class Tally:
    created: dict[str, int] = field(default_factory=dict)
    existing: dict[str, int] = field(default_factory=dict)

    def count(self, what: str, created: bool) -> None:
        bucket = self.created if created else self.existing
        bucket[what] = bucket.get(what, 0) + 1

    def lines(self) -> list[str]:
        kinds = sorted(set(self.created) | set(self.existing))
        return [
            f"  {kind:<22} created {self.created.get(kind, 0):>6}   found {self.existing.get(kind, 0):>6}"
            for kind in kinds
        ]

    def found(self, what: str, n: int) -> None:
        self.existing[what] = self.existing.get(what, 0) + n


class Api:
    """A thin REST client: one shared connection pool, bounded concurrency, clear failures."""

    def __init__(self, target: str, concurrency: int) -> None:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self.http = httpx.AsyncClient(base_url=target, timeout=30.0, limits=limits)
        self.gate = asyncio.Semaphore(concurrency)

    async def close(self) -> None:
        await self.http.aclose()

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        ok: Iterable[int] = (200, 201, 204),
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.gate:
            response = await self.http.request(method, API + path, json=body, headers=headers)
        if response.status_code not in set(ok):
            raise SeedError(f"{method} {path} → {response.status_code}: {response.text[:300]}")
        return response


async def gather_all(items: Iterable[T], work: Callable[[T], Awaitable[Any]]) -> list[Any]:
    """Start all at once; ``Api.gate`` bounds how many are in flight."""
    return await asyncio.gather(*(work(item) for item in items))


@dataclass
class Session:
    token: str
    id: str


async def log_in_or_sign_up(api: Api, index: int, tally: Tally) -> Session:
    name = username(index)
    response = await api.call(
        "POST", "/auth/login", body={"username": name, "password": PASSWORD}, ok=(200, 401)
    )
    if response.status_code == 401:
        response = await api.call(
            "POST", "/auth/signup", body={"username": name, "password": PASSWORD}, ok=(201, 409)
        )
        if response.status_code == 409:  # taken: by another seed run right now, or a real user
            response = await api.call("POST", "/auth/login", body={"username": name, "password": PASSWORD})
        tally.count("users", created=response.status_code == 201)
    else:
        tally.count("users", created=False)
    body = response.json()
    return Session(body["token"], body["user"]["id"])


async def ensure_workspace(api: Api, w: int, owner: Session, tally: Tally) -> str:
    slug = f"load-ws-{w}"
    listed = (await api.call("GET", "/workspaces", token=owner.token)).json()
    for workspace in listed:
        if workspace["slug"] == slug:
            tally.count("workspaces", created=False)
            return str(workspace["id"])
    response = await api.call(
        "POST", "/workspaces", token=owner.token, body={"name": f"Load test {w}", "slug": slug}, ok=(201, 409)
    )
    if response.status_code == 409:
        raise SeedError(
            f"workspace slug {slug!r} belongs to someone else on this target; seed a fresh target"
        )
    tally.count("workspaces", created=True)
    return str(response.json()["id"])


async def ensure_workspace_members(
    api: Api, workspace_id: str, owner: Session, people: list[int], tally: Tally
) -> None:
    listed = (await api.call("GET", f"/workspaces/{workspace_id}/members", token=owner.token)).json()
    present = {m["user"]["username"] for m in listed}
    missing = [i for i in people if username(i) not in present]
    tally.existing["workspace members"] = (
        tally.existing.get("workspace members", 0) + len(people) - len(missing)
    )

    async def add(index: int) -> None:
        await api.call(
            "POST",
            f"/workspaces/{workspace_id}/members",
            token=owner.token,
            body={"username": username(index)},
        )
        tally.count("workspace members", created=True)

    await gather_all(missing, add)


async def existing_channels(api: Api, workspace_id: str, viewer: Session) -> dict[str, str]:
    listed = (await api.call("GET", f"/workspaces/{workspace_id}/conversations", token=viewer.token)).json()
    return {
        str(v["conversation"]["name"]): str(v["conversation"]["id"])
        for v in listed
        if v["conversation"]["name"] is not None
    }


async def ensure_channel(
    api: Api,
    workspace_id: str,
    planned: PlannedConversation,
    sessions: dict[int, Session],
    known: dict[str, str],
    tally: Tally,
) -> str:
    assert planned.name is not None
    if planned.name in known:
        tally.count("channels", created=False)
        return known[planned.name]
    creator = sessions[planned.members[0]]
    response = await api.call(
        "POST",
        f"/workspaces/{workspace_id}/channels",
        token=creator.token,
        body={"name": planned.name, "topic": f"load test: {planned.kind} channel"},
        ok=(201, 409),
    )
    if response.status_code == 409:  # created meanwhile by a concurrent seed
        channel_id = (await existing_channels(api, workspace_id, creator)).get(planned.name)
        if channel_id is None:
            raise SeedError(f"channel {planned.name!r} is taken but not visible (a private channel?)")
        tally.count("channels", created=False)
        return channel_id
    tally.count("channels", created=True)
    return str(response.json()["id"])


async def ensure_channel_members(
    api: Api, channel_id: str, planned: PlannedConversation, sessions: dict[int, Session], tally: Tally
) -> None:
    creator = sessions[planned.members[0]]
    listed = (await api.call("GET", f"/conversations/{channel_id}/members", token=creator.token)).json()
    present = {str(u["id"]) for u in listed}
    missing = [i for i in planned.members if sessions[i].id not in present]
    tally.existing["channel members"] = (
        tally.existing.get("channel members", 0) + len(planned.members) - len(missing)
    )

    async def add(index: int) -> None:
        await api.call(
            "POST",
            f"/conversations/{channel_id}/members",
            token=creator.token,
            body={"user_id": sessions[index].id},
        )
        tally.count("channel members", created=True)

    await gather_all(missing, add)


async def ensure_dm(
    api: Api, workspace_id: str, planned: PlannedConversation, sessions: dict[int, Session]
) -> str:
    # Opening a DM is idempotent on the server: the same pair gets the same conversation.
    opener, other = (sessions[i] for i in planned.members)
    response = await api.call(
        "POST", f"/workspaces/{workspace_id}/dms", token=opener.token, body={"user_ids": [other.id]}
    )
    return str(response.json()["id"])


# ---------------------------------------------------------------- the whole seed


async def seed(
    target: str, users: int, workspaces: int, channels: int, profile_name: str, concurrency: int = 16
) -> tuple[Manifest, Tally]:
    profile = load_profile(profile_name)
    plan = make_plan(users, workspaces, channels, profile.population)
    tally = Tally()
    api = Api(target, concurrency)
    try:
        sessions = dict(
            zip(
                range(users),
                await gather_all(range(users), lambda i: log_in_or_sign_up(api, i, tally)),
                strict=True,
            )
        )
        owners = [people[0] for people in plan.workspace_members]
        workspace_ids: list[str] = await gather_all(
            range(workspaces), lambda w: ensure_workspace(api, w, sessions[owners[w]], tally)
        )
        await gather_all(
            range(workspaces),
            lambda w: ensure_workspace_members(
                api, workspace_ids[w], sessions[owners[w]], plan.workspace_members[w], tally
            ),
        )
        known = await gather_all(
            range(workspaces), lambda w: existing_channels(api, workspace_ids[w], sessions[owners[w]])
        )

        async def ensure(planned: PlannedConversation) -> ConversationEntry:
            workspace_id = workspace_ids[planned.workspace]
            if planned.kind == "dm":
                conversation_id = await ensure_dm(api, workspace_id, planned, sessions)
                # The server answers a new and an existing DM alike, so they are counted together.
                tally.count("dms (opened or found)", created=True)
            else:
                conversation_id = await ensure_channel(
                    api, workspace_id, planned, sessions, known[planned.workspace], tally
                )
                await ensure_channel_members(api, conversation_id, planned, sessions, tally)
            return ConversationEntry(
                id=conversation_id,
                workspace_id=workspace_id,
                kind=planned.kind,
                name=planned.name,
                members=sorted(planned.members),
            )

        conversations: list[ConversationEntry] = await gather_all(plan.conversations, ensure)
    finally:
        await api.close()
    manifest = Manifest(
        target=normalized_target(target),
        profile=profile.name,
        created_at=datetime.now(UTC),
        users=[
            UserEntry(
                index=i, username=username(i), id=s.id, workspace_id=workspace_ids[plan.workspace_of(i)]
            )
            for i, s in sessions.items()
        ],
        workspaces=[
            WorkspaceEntry(id=workspace_ids[w], slug=f"load-ws-{w}", owner=owners[w])
            for w in range(workspaces)
        ],
        conversations=conversations,
    )
    return manifest, tally


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.seed",
        description=(
            "Create load-test users (load-0 … load-N-1, one fixed password), workspaces, large and small "
            "channels and DMs on a Parley target, idempotently, and write the manifest Locust reads "
            "(loadtests/.seed/<hash of the target>.json)."
        ),
    )
    parser.add_argument("--target", required=True, help="base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--users", type=int, default=50, help="number of users (default 50)")
    parser.add_argument(
        "--workspaces", type=int, default=1, help="workspaces; users go round-robin (default 1)"
    )
    parser.add_argument(
        "--channels",
        type=int,
        default=20,
        help="channels per workspace: the profile's large ones, then small (default 20)",
    )
    parser.add_argument(
        "--profile", default="default", help=f"profile name ({', '.join(profile_names())}) or a JSON path"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    parser.add_argument("--manifest", type=Path, help="where to write the manifest (default: by target)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        manifest, tally = asyncio.run(
            seed(args.target, args.users, args.workspaces, args.channels, args.profile, args.concurrency)
        )
    except (SeedError, httpx.HTTPError, FileNotFoundError, ValueError) as exc:
        print(f"seed failed: {exc}", file=sys.stderr)
        return 1
    path = args.manifest or manifest_path(args.target)
    manifest.save(path)
    kinds = {k: sum(1 for c in manifest.conversations if c.kind == k) for k in ("large", "small", "dm")}
    print(
        f"seeded {args.target} in {time.perf_counter() - started:.1f} s: {len(manifest.users)} users, "
        f"{len(manifest.workspaces)} workspaces, {kinds['large']} large + {kinds['small']} small channels, "
        f"{kinds['dm']} DMs (profile {manifest.profile})"
    )
    print("\n".join(tally.lines()))
    print(f"manifest: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
