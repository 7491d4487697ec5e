"""Authorization, as a table of cases: every REST route and every WebSocket frame, tried by
someone who must not get through (IDOR checks).

The scene (built once per mode, shared by every row; no row that passes changes it):

    workspace A  (alice owner; bob, carol, dave members)
      #general   public   alice, bob        — carol joined, then left
      #secret    private  alice, dave
      DM         alice + bob
    workspace B  (mallory owner)
      #b-general public   mallory

Rules under test (parley/domain/permissions.py): another workspace's objects and private
conversations do not exist for outsiders (404); a public channel one is not in is visible but
not readable (403 ``not_in_channel``); only the author edits a message, only the author or a
workspace owner deletes it; search, resume and live events never reach a non-member. Each
denial row has a positive control elsewhere (``test_controls``), so a row cannot pass only
because the probe itself is broken.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.support.clients import ApiUser, WsClient
from tests.support.engines import engine_overrides
from tests.support.server import RunningServer, start_server, wait_until_flowing
from tests.support.wait import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Words that appear in exactly one conversation each, for search leakage checks.
GENERAL_WORD, SECRET_WORD, DM_WORD, B_WORD, LATE_WORD = "halibut", "xyzzy", "plugh", "plover", "quux"


@dataclass
class Scene:
    server: RunningServer
    users: dict[str, ApiUser]
    ids: dict[str, str] = field(default_factory=dict)

    def path(self, template: str) -> str:
        return template.format(**self.ids)


async def _build_scene(server: RunningServer) -> Scene:
    tag = uuid.uuid4().hex[:6]
    names = ("alice", "bob", "carol", "dave", "mallory")
    users = {n: await ApiUser.signup(server.url, f"{n}-{tag}") for n in names}
    alice, bob, carol, dave, mallory = (users[n] for n in names)
    scene = Scene(server, users, {f"{n}_id": u.id for n, u in users.items()})
    ids = scene.ids

    ws_a = await alice.post("/workspaces", {"name": f"A {tag}"}, expect=201)
    invite = await alice.post(f"/workspaces/{ws_a['id']}/invites", expect=201)
    for u in (bob, carol, dave):
        await u.post("/workspaces/join", {"code": invite["code"]}, expect=200)
    general = await alice.post(f"/workspaces/{ws_a['id']}/channels", {"name": "general"}, expect=201)
    for u in (bob, carol):
        await u.post(f"/conversations/{general['id']}/join", expect=200)
    secret = await alice.post(
        f"/workspaces/{ws_a['id']}/channels", {"name": "secret", "private": True}, expect=201
    )
    await alice.post(f"/conversations/{secret['id']}/members", {"user_id": dave.id}, expect=200)
    dm = await alice.post(f"/workspaces/{ws_a['id']}/dms", {"user_ids": [bob.id]}, expect=200)
    ws_b = await mallory.post("/workspaces", {"name": f"B {tag}"}, expect=201)
    b_general = await mallory.post(f"/workspaces/{ws_b['id']}/channels", {"name": "b-general"}, expect=201)
    ids.update(
        ws_a=ws_a["id"],
        ws_b=ws_b["id"],
        invite=invite["code"],
        general=general["id"],
        secret=secret["id"],
        dm=dm["id"],
        b_general=b_general["id"],
    )

    async def say(user: ApiUser, conversation: str, text: str) -> str:
        message = await user.post(f"/conversations/{ids[conversation]}/messages", {"text": text}, expect=201)
        return str(message["id"])

    ids["general_msg"] = await say(alice, "general", f"hello {GENERAL_WORD}")
    ids["secret_msg"] = await say(alice, "secret", f"plans {SECRET_WORD}")
    ids["dm_msg"] = await say(alice, "dm", f"psst {DM_WORD}")
    ids["b_msg"] = await say(mallory, "b_general", f"b only {B_WORD}")
    await alice.post(f"/messages/{ids['general_msg']}/reactions", {"emoji": "thumbsup"}, expect=204)
    await carol.post(f"/conversations/{ids['general']}/leave", expect=204)
    ids["late_msg"] = await say(alice, "general", f"after carol left {LATE_WORD}")

    # The index has caught up with every word (else the leakage rows would pass vacuously).
    for user, word in ((alice, SECRET_WORD), (alice, DM_WORD), (alice, LATE_WORD), (mallory, B_WORD)):
        await eventually(
            lambda u=user, w=word: u.get("/search", {"q": w}), lambda r: len(r["matches"]) == 1, 20
        )
    return scene


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["embedded", "engines"])
async def scene(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Scene]:
    data_dir: Path = tmp_path_factory.mktemp("authz") / "data"
    with contextlib.ExitStack() as stack:
        overrides = stack.enter_context(engine_overrides()) if request.param == "engines" else {}
        server = await start_server(data_dir, **overrides)
        try:
            if overrides:
                await wait_until_flowing(server)
            built = await _build_scene(server)
            yield built
            for user in built.users.values():
                await user.close()
        finally:
            await server.stop()
            if overrides:
                await _drop_search_index(server)


async def _drop_search_index(server: RunningServer) -> None:
    search = server.parley.search
    drop = getattr(search, "drop", None)
    if drop is not None:
        await search.start()
        try:
            await drop()
        finally:
            await search.close()


# -- REST: every route, someone who must not get through ------------------------------------
@dataclass(frozen=True)
class Rest:
    actor: str
    method: str
    path: str
    status: int
    code: str
    body: dict[str, Any] | None = None
    params: dict[str, str] | None = None


REST_CASES: dict[str, Rest] = {
    # another workspace's objects do not exist
    "outsider reads workspace A": Rest("mallory", "GET", "/workspaces/{ws_a}", 404, "workspace_not_found"),
    "outsider lists A's members": Rest(
        "mallory", "GET", "/workspaces/{ws_a}/members", 404, "workspace_not_found"
    ),
    "outsider adds a member to A": Rest(
        "mallory", "POST", "/workspaces/{ws_a}/members", 404, "workspace_not_found", {"username": "x"}
    ),
    "outsider creates an invite to A": Rest(
        "mallory", "POST", "/workspaces/{ws_a}/invites", 404, "workspace_not_found"
    ),
    "outsider reads A's presence": Rest(
        "mallory", "GET", "/workspaces/{ws_a}/presence", 404, "workspace_not_found"
    ),
    "outsider lists A's conversations": Rest(
        "mallory", "GET", "/workspaces/{ws_a}/conversations", 404, "workspace_not_found"
    ),
    "outsider creates a channel in A": Rest(
        "mallory", "POST", "/workspaces/{ws_a}/channels", 404, "workspace_not_found", {"name": "mine"}
    ),
    "outsider opens a DM in A": Rest(
        "mallory", "POST", "/workspaces/{ws_a}/dms", 404, "workspace_not_found", {"user_ids": ["{alice_id}"]}
    ),
    "outsider reads A's public channel": Rest(
        "mallory", "GET", "/conversations/{general}", 404, "channel_not_found"
    ),
    "outsider joins A's public channel": Rest(
        "mallory", "POST", "/conversations/{general}/join", 404, "channel_not_found"
    ),
    "outsider lists A's channel members": Rest(
        "mallory", "GET", "/conversations/{general}/members", 404, "channel_not_found"
    ),
    "outsider adds itself to A's channel": Rest(
        "mallory",
        "POST",
        "/conversations/{general}/members",
        404,
        "channel_not_found",
        {"user_id": "{mallory_id}"},
    ),
    "outsider reads A's channel history": Rest(
        "mallory", "GET", "/conversations/{general}/messages", 404, "channel_not_found"
    ),
    "outsider posts in A's channel": Rest(
        "mallory", "POST", "/conversations/{general}/messages", 404, "channel_not_found", {"text": "hi"}
    ),
    "outsider marks A's channel read": Rest(
        "mallory", "POST", "/conversations/{general}/read", 404, "channel_not_found", {"seq": 1}
    ),
    "outsider leaves A's channel": Rest(
        "mallory", "POST", "/conversations/{general}/leave", 404, "channel_not_found"
    ),
    "outsider reads A's message": Rest("mallory", "GET", "/messages/{general_msg}", 404, "channel_not_found"),
    "outsider edits A's message": Rest(
        "mallory", "PATCH", "/messages/{general_msg}", 404, "channel_not_found", {"text": "pwned"}
    ),
    "outsider deletes A's message": Rest(
        "mallory", "DELETE", "/messages/{general_msg}", 404, "channel_not_found"
    ),
    "outsider reads A's thread": Rest(
        "mallory", "GET", "/messages/{general_msg}/replies", 404, "channel_not_found"
    ),
    "outsider reacts to A's message": Rest(
        "mallory", "POST", "/messages/{general_msg}/reactions", 404, "channel_not_found", {"emoji": "eyes"}
    ),
    "outsider removes a reaction in A": Rest(
        "mallory", "DELETE", "/messages/{general_msg}/reactions/thumbsup", 404, "channel_not_found"
    ),
    "outsider looks up a user of A": Rest("mallory", "GET", "/users/{alice_id}", 404, "user_not_found"),
    "member looks up a user of B": Rest("alice", "GET", "/users/{mallory_id}", 404, "user_not_found"),
    "outsider searches workspace A": Rest(
        "mallory",
        "GET",
        "/search",
        404,
        "workspace_not_found",
        params={"q": GENERAL_WORD, "workspace_id": "{ws_a}"},
    ),
    "outsider searches A's channel": Rest(
        "mallory",
        "GET",
        "/search",
        404,
        "channel_not_found",
        params={"q": GENERAL_WORD, "conversation_id": "{general}"},
    ),
    "member opens a DM with a user of B": Rest(
        "alice", "POST", "/workspaces/{ws_a}/dms", 404, "user_not_found", {"user_ids": ["{mallory_id}"]}
    ),
    "member adds a user of B to a channel": Rest(
        "alice",
        "POST",
        "/conversations/{general}/members",
        404,
        "user_not_found",
        {"user_id": "{mallory_id}"},
    ),
    "member of B replies to A's message as a thread root": Rest(
        "mallory",
        "POST",
        "/conversations/{b_general}/messages",
        404,
        "thread_not_found",
        {"text": "hi", "thread_root_id": "{general_msg}"},
    ),
    # private channels do not exist for non-members
    "non-member reads a private channel": Rest(
        "bob", "GET", "/conversations/{secret}", 404, "channel_not_found"
    ),
    "non-member joins a private channel": Rest(
        "bob", "POST", "/conversations/{secret}/join", 404, "channel_not_found"
    ),
    "non-member lists private members": Rest(
        "bob", "GET", "/conversations/{secret}/members", 404, "channel_not_found"
    ),
    "non-member adds itself to a private channel": Rest(
        "bob", "POST", "/conversations/{secret}/members", 404, "channel_not_found", {"user_id": "{bob_id}"}
    ),
    "non-member reads private history": Rest(
        "bob", "GET", "/conversations/{secret}/messages", 404, "channel_not_found"
    ),
    "non-member posts in a private channel": Rest(
        "bob", "POST", "/conversations/{secret}/messages", 404, "channel_not_found", {"text": "hi"}
    ),
    "non-member marks a private channel read": Rest(
        "bob", "POST", "/conversations/{secret}/read", 404, "channel_not_found", {"seq": 1}
    ),
    "non-member leaves a private channel": Rest(
        "bob", "POST", "/conversations/{secret}/leave", 404, "channel_not_found"
    ),
    "non-member reads a private message": Rest(
        "bob", "GET", "/messages/{secret_msg}", 404, "channel_not_found"
    ),
    "non-member edits a private message": Rest(
        "bob", "PATCH", "/messages/{secret_msg}", 404, "channel_not_found", {"text": "x"}
    ),
    "non-member deletes a private message": Rest(
        "bob", "DELETE", "/messages/{secret_msg}", 404, "channel_not_found"
    ),
    "non-member reads a private thread": Rest(
        "bob", "GET", "/messages/{secret_msg}/replies", 404, "channel_not_found"
    ),
    "non-member reacts in a private channel": Rest(
        "bob", "POST", "/messages/{secret_msg}/reactions", 404, "channel_not_found", {"emoji": "eyes"}
    ),
    "non-member searches a private channel": Rest(
        "bob",
        "GET",
        "/search",
        404,
        "channel_not_found",
        params={"q": SECRET_WORD, "conversation_id": "{secret}"},
    ),
    "private message as a thread root elsewhere": Rest(
        "alice",
        "POST",
        "/conversations/{general}/messages",
        404,
        "thread_not_found",
        {"text": "hi", "thread_root_id": "{secret_msg}"},
    ),
    "third party reads a DM": Rest("carol", "GET", "/conversations/{dm}", 404, "channel_not_found"),
    "third party joins a DM": Rest("carol", "POST", "/conversations/{dm}/join", 404, "channel_not_found"),
    "third party reads DM history": Rest(
        "carol", "GET", "/conversations/{dm}/messages", 404, "channel_not_found"
    ),
    "third party posts in a DM": Rest(
        "carol", "POST", "/conversations/{dm}/messages", 404, "channel_not_found", {"text": "hi"}
    ),
    "third party reads a DM message": Rest("carol", "GET", "/messages/{dm_msg}", 404, "channel_not_found"),
    "DM member adds someone to the DM": Rest(
        "alice", "POST", "/conversations/{dm}/members", 403, "cant_invite", {"user_id": "{carol_id}"}
    ),
    # someone else's message
    "member edits someone else's message": Rest(
        "bob", "PATCH", "/messages/{general_msg}", 403, "cant_update_message", {"text": "mine now"}
    ),
    "member deletes someone else's message": Rest(
        "bob", "DELETE", "/messages/{general_msg}", 403, "cant_delete_message"
    ),
    "member removes someone else's reaction": Rest(
        "bob", "DELETE", "/messages/{general_msg}/reactions/thumbsup", 404, "no_reaction"
    ),
    "member adds a workspace member directly": Rest(
        "bob", "POST", "/workspaces/{ws_a}/members", 403, "not_owner", {"username": "whoever"}
    ),
    # a conversation one has left
    "leaver reads history": Rest("carol", "GET", "/conversations/{general}/messages", 403, "not_in_channel"),
    "leaver posts": Rest(
        "carol", "POST", "/conversations/{general}/messages", 403, "not_in_channel", {"text": "hi"}
    ),
    "leaver marks read": Rest(
        "carol", "POST", "/conversations/{general}/read", 403, "not_in_channel", {"seq": 1}
    ),
    "leaver reads a message": Rest("carol", "GET", "/messages/{general_msg}", 403, "not_in_channel"),
    "leaver reads a thread": Rest("carol", "GET", "/messages/{general_msg}/replies", 403, "not_in_channel"),
    "leaver reacts": Rest(
        "carol", "POST", "/messages/{general_msg}/reactions", 403, "not_in_channel", {"emoji": "eyes"}
    ),
    "leaver invites someone": Rest(
        "carol", "POST", "/conversations/{general}/members", 403, "not_in_channel", {"user_id": "{dave_id}"}
    ),
    "leaver searches the channel": Rest(
        "carol",
        "GET",
        "/search",
        403,
        "not_in_channel",
        params={"q": LATE_WORD, "conversation_id": "{general}"},
    ),
    # guessing
    "anyone joins with a guessed invite code": Rest(
        "mallory", "POST", "/workspaces/join", 404, "invite_not_found", {"code": "guessed-code-123"}
    ),
}


def _fill(value: Any, scene: Scene) -> Any:
    if isinstance(value, str):
        return scene.path(value)
    if isinstance(value, list):
        return [_fill(v, scene) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, scene) for k, v in value.items()}
    return value


@pytest.mark.parametrize("case", list(REST_CASES.values()), ids=list(REST_CASES))
async def test_rest_route_refuses(scene: Scene, case: Rest) -> None:
    user = scene.users[case.actor]
    r = await user.http.request(
        case.method,
        f"/api/v1{scene.path(case.path)}",
        json=_fill(case.body, scene),
        params=_fill(case.params, scene),
    )
    assert (r.status_code, r.json()["error"]["code"]) == (case.status, case.code), r.text


# -- search: no leakage -----------------------------------------------------------------------
SEARCH_CASES: dict[str, tuple[str, str, dict[str, str]]] = {
    "non-member finds nothing of a private channel": ("bob", SECRET_WORD, {}),
    "non-member finds nothing of a private channel within the workspace": (
        "bob",
        SECRET_WORD,
        {"workspace_id": "{ws_a}"},
    ),
    "third party finds nothing of a DM": ("carol", DM_WORD, {}),
    "leaver finds nothing posted after leaving": ("carol", LATE_WORD, {}),
    "leaver finds nothing posted before leaving": ("carol", GENERAL_WORD, {}),
    "outsider finds nothing of workspace A": ("mallory", GENERAL_WORD, {}),
    "outsider finds nothing private of A": ("mallory", SECRET_WORD, {}),
    "outsider finds nothing by filtering on A's author": ("mallory", DM_WORD, {"from_user_id": "{alice_id}"}),
    "member of A finds nothing of workspace B": ("alice", B_WORD, {}),
}


@pytest.mark.parametrize("case", list(SEARCH_CASES.values()), ids=list(SEARCH_CASES))
async def test_search_does_not_leak(scene: Scene, case: tuple[str, str, dict[str, str]]) -> None:
    actor, word, extra = case
    result = await scene.users[actor].get("/search", {"q": word, **_fill(extra, scene)})
    assert result["matches"] == [], result
    assert word not in str(result)


# -- WebSocket frames ---------------------------------------------------------------------------
WS_CASES: dict[str, tuple[str, dict[str, Any], str]] = {
    "outsider sends to A's channel": (
        "mallory",
        {"type": "send", "conversation_id": "{general}", "text": "hi"},
        "channel_not_found",
    ),
    "non-member sends to a private channel": (
        "bob",
        {"type": "send", "conversation_id": "{secret}", "text": "hi"},
        "channel_not_found",
    ),
    "third party sends to a DM": (
        "carol",
        {"type": "send", "conversation_id": "{dm}", "text": "hi"},
        "channel_not_found",
    ),
    "leaver sends": (
        "carol",
        {"type": "send", "conversation_id": "{general}", "text": "hi"},
        "not_in_channel",
    ),
    "thread root from a private channel": (
        "bob",
        {"type": "send", "conversation_id": "{general}", "text": "hi", "thread_root_id": "{secret_msg}"},
        "thread_not_found",
    ),
    "outsider types in A's channel": (
        "mallory",
        {"type": "typing", "conversation_id": "{general}"},
        "channel_not_found",
    ),
    "non-member types in a private channel": (
        "bob",
        {"type": "typing", "conversation_id": "{secret}"},
        "channel_not_found",
    ),
    "leaver types": ("carol", {"type": "typing", "conversation_id": "{general}"}, "not_in_channel"),
    "outsider marks A's channel read": (
        "mallory",
        {"type": "mark_read", "conversation_id": "{general}", "seq": 1},
        "channel_not_found",
    ),
    "non-member marks a private channel read": (
        "bob",
        {"type": "mark_read", "conversation_id": "{secret}", "seq": 1},
        "channel_not_found",
    ),
    "leaver marks read": (
        "carol",
        {"type": "mark_read", "conversation_id": "{general}", "seq": 1},
        "not_in_channel",
    ),
}


@pytest.mark.parametrize("case", list(WS_CASES.values()), ids=list(WS_CASES))
async def test_ws_frame_refused(scene: Scene, case: tuple[str, dict[str, Any], str]) -> None:
    actor, frame, code = case
    ws = await WsClient.connect(scene.server.ws_url, scene.users[actor].token)
    try:
        await ws.wait_for(lambda f: f["type"] == "hello")
        await ws.send({**_fill(frame, scene), "id": "probe"})
        error = await ws.wait_for(lambda f: f["type"] == "error" and f.get("id") == "probe")
        assert error["code"] == code, error
        assert ws.closed is None, "a refused frame is not a reason to drop the socket"
    finally:
        await ws.close()


# -- events never reach outsiders -----------------------------------------------------------------
@dataclass(frozen=True)
class Silence:
    """``outsider`` hears nothing of ``conversation`` while ``control`` (a member) hears the
    event ``trigger`` causes; ``resume`` makes the outsider ask for the past as well."""

    outsider: str
    conversation: str
    trigger: str  # "message" | "typing" | "presence" | "none"
    control: str
    resume: str = ""  # "" | "frame" | "auth"


SILENCE_CASES: dict[str, Silence] = {
    "leaver resumes the channel it left": Silence("carol", "general", "none", "bob", resume="frame"),
    "leaver resumes via the auth frame's cursors": Silence("carol", "general", "none", "bob", resume="auth"),
    "non-member resumes a private channel": Silence("bob", "secret", "none", "dave", resume="frame"),
    "non-member resumes a private channel via auth cursors": Silence(
        "bob", "secret", "none", "dave", resume="auth"
    ),
    "third party resumes a DM": Silence("carol", "dm", "none", "bob", resume="frame"),
    "outsider resumes A's channel": Silence("mallory", "general", "none", "bob", resume="frame"),
    "leaver hears no new message": Silence("carol", "general", "message", "bob"),
    "non-member hears no private message": Silence("bob", "secret", "message", "dave"),
    "outsider hears no message of A": Silence("mallory", "general", "message", "bob"),
    "non-member hears no typing in a private channel": Silence("bob", "secret", "typing", "dave"),
    "leaver hears no typing": Silence("carol", "general", "typing", "bob"),
    "outsider hears no presence of workspace A": Silence("mallory", "ws_a", "presence", "bob"),
}


def _about(scene: Scene, case: Silence) -> Callable[[dict[str, Any]], bool]:
    """Frames that would be a leak: anything about the conversation (or A's members' presence)."""
    target = scene.ids[case.conversation]
    alice = scene.ids["alice_id"]

    def leaked(frame: dict[str, Any]) -> bool:
        if case.trigger == "presence":
            return frame.get("type") == "presence" and frame.get("data", {}).get("user_id") == alice
        if frame.get("type") == "hello":
            return any(c["conversation"]["id"] == target for c in frame.get("conversations", []))
        return frame.get("conversation_id") == target

    return leaked


@pytest.mark.parametrize("case", list(SILENCE_CASES.values()), ids=list(SILENCE_CASES))
async def test_events_do_not_reach_outsiders(scene: Scene, case: Silence) -> None:
    users, ids = scene.users, scene.ids
    target = ids[case.conversation]
    control = await WsClient.connect(scene.server.ws_url, users[case.control].token)
    if case.resume == "auth":
        outsider = await WsClient.connect(scene.server.ws_url)
        await outsider.send({"type": "auth", "token": users[case.outsider].token, "cursors": {target: 0}})
    else:
        outsider = await WsClient.connect(scene.server.ws_url, users[case.outsider].token)
    clients = [control, outsider]
    try:
        for client in clients:
            await client.wait_for(lambda f: f["type"] == "hello")
        if case.resume == "frame":
            await outsider.send({"type": "resume", "id": "r", "cursors": {target: 0}})
            await outsider.wait_for(lambda f: f.get("id") == "r")
        alice = users["alice"]
        if case.trigger == "message":
            text = f"live {uuid.uuid4().hex[:6]}"
            await alice.post(f"/conversations/{target}/messages", {"text": text}, expect=201)
            await control.wait_for(
                lambda f: f.get("type") == "message.created" and f["data"]["message"]["text"] == text
            )
        elif case.trigger in ("typing", "presence"):
            speaker = await WsClient.connect(scene.server.ws_url, alice.token)
            clients.append(speaker)
            await speaker.wait_for(lambda f: f["type"] == "hello")
            frame = (
                {"type": "typing", "conversation_id": target}
                if case.trigger == "typing"
                else {
                    "type": "presence",
                    "status": "away",
                }
            )
            await speaker.send(frame)
            await control.wait_for(
                lambda f: (
                    f.get("type") == case.trigger and f.get("data", {}).get("user_id") == ids["alice_id"]
                )
            )
        else:
            # Control: a member resuming from 0 does get the conversation's past.
            await control.send({"type": "resume", "id": "r", "cursors": {target: 0}})
            await control.wait_for(
                lambda f: f.get("type") == "message.created" and f.get("conversation_id") == target
            )
        await asyncio.sleep(0.3)  # what would leak has had time to arrive
        leaks = [f for f in outsider.frames if _about(scene, case)(f)]
        assert leaks == [], leaks
        assert outsider.closed is None
    finally:
        for client in clients:
            await client.close()


# -- positive controls: the same probes do get through for those allowed ----------------------
async def test_controls(scene: Scene) -> None:
    """Members reach what outsiders cannot, with the same requests as the rows above."""
    users, ids = scene.users, scene.ids
    alice, bob, carol, dave = (users[n] for n in ("alice", "bob", "carol", "dave"))
    await dave.get(f"/conversations/{ids['secret']}/messages")
    await bob.get(f"/conversations/{ids['dm']}/messages")
    await carol.get(f"/conversations/{ids['general']}")  # a public channel stays visible after leaving
    await carol.get(f"/users/{ids['alice_id']}")
    assert (await dave.get("/search", {"q": SECRET_WORD}))["matches"]
    assert (await bob.get("/search", {"q": LATE_WORD}))["matches"]
    assert (await alice.get("/search", {"q": GENERAL_WORD, "workspace_id": ids["ws_a"]}))["matches"]
    presence = await bob.get(f"/workspaces/{ids['ws_a']}/presence")
    assert ids["alice_id"] in presence
    hello_bob = await _hello(scene, "bob")
    listed = {c["conversation"]["id"] for c in hello_bob["conversations"]}
    assert {ids["general"], ids["dm"]} <= listed and ids["secret"] not in listed
    hello_mallory = await _hello(scene, "mallory")
    assert {c["conversation"]["id"] for c in hello_mallory["conversations"]} == {ids["b_general"]}


async def _hello(scene: Scene, name: str) -> dict[str, Any]:
    ws = await WsClient.connect(scene.server.ws_url, scene.users[name].token)
    try:
        return await ws.wait_for(lambda f: f["type"] == "hello")
    finally:
        await ws.close()
