"""Sends that arrive together are written in one batch (group commit): each still gets its own
answer. Concurrent requests here land in the same batch, so a rejected send, a retry and a
reused ``client_msg_id`` must not affect the other sends of that batch."""

from __future__ import annotations

import asyncio

import httpx

from bench import hops
from tests.support.server import RunningServer
from tests.support.world import make_world


async def test_concurrent_retries_store_each_message_once(server: RunningServer) -> None:
    world = await make_world(server.url)
    alice, bob = world.users
    path = f"/api/v1/conversations/{world.channel_id}/messages"
    # Every client_msg_id is sent three times at once (a client retrying over flaky links).
    requests = [
        alice.http.post(path, json={"text": f"m{n}", "client_msg_id": f"once-{n}"})
        for n in range(20)
        for _ in range(3)
    ]
    responses = await asyncio.gather(*requests)

    by_cmid: dict[str, list[tuple[int, str]]] = {}
    for r in responses:
        assert r.status_code in (200, 201), r.text
        body = r.json()
        by_cmid.setdefault(body["client_msg_id"], []).append((r.status_code, body["id"]))
    assert len(by_cmid) == 20
    for answers in by_cmid.values():
        assert sorted(code for code, _ in answers) == [200, 200, 201], "one creation, two retries"
        assert len({message_id for _, message_id in answers}) == 1, "retries return the original"
    history = await bob.get(f"/conversations/{world.channel_id}/messages", params={"limit": 100})
    texts = [m["text"] for m in history["messages"]]
    assert sorted(texts) == sorted(f"m{n}" for n in range(20))
    seqs = sorted(m["seq"] for m in history["messages"])
    assert len(set(seqs)) == 20 and seqs == list(range(seqs[0], seqs[0] + 20)), "gap-free seqs"
    await world.close()


async def test_a_rejected_send_does_not_fail_the_others_in_its_batch(server: RunningServer) -> None:
    world = await make_world(server.url)
    alice, bob = world.users
    private = await alice.post(
        f"/workspaces/{world.workspace_id}/channels", {"name": "secret", "private": True}, expect=201
    )
    good = [
        alice.http.post(f"/api/v1/conversations/{world.channel_id}/messages", json={"text": f"ok {n}"})
        for n in range(10)
    ]
    bad = [
        bob.http.post(f"/api/v1/conversations/{private['id']}/messages", json={"text": f"no {n}"})
        for n in range(10)
    ]
    missing_thread = alice.http.post(
        f"/api/v1/conversations/{world.channel_id}/messages",
        json={"text": "reply", "thread_root_id": "12345"},
    )
    responses = await asyncio.gather(*good, *bad, missing_thread)

    assert [r.status_code for r in responses[:10]] == [201] * 10
    assert [r.status_code for r in responses[10:20]] == [404] * 10
    assert all(r.json()["error"]["code"] == "channel_not_found" for r in responses[10:20])
    assert responses[20].status_code == 404 and responses[20].json()["error"]["code"] == "thread_not_found"
    history = await alice.get(f"/conversations/{world.channel_id}/messages", params={"limit": 100})
    assert sorted(m["text"] for m in history["messages"]) == sorted(f"ok {n}" for n in range(10))
    secret = await alice.get(f"/conversations/{private['id']}/messages")
    assert secret["messages"] == []
    await world.close()


async def test_one_client_msg_id_sent_to_two_conversations_at_once_is_stored_once(
    server: RunningServer,
) -> None:
    world = await make_world(server.url)
    alice = world.users[0]
    other = await alice.post(f"/workspaces/{world.workspace_id}/channels", {"name": "other"}, expect=201)
    responses = await asyncio.gather(
        *(
            alice.http.post(
                f"/api/v1/conversations/{conversation_id}/messages",
                json={"text": "where?", "client_msg_id": "one-place"},
            )
            for conversation_id in (world.channel_id, other["id"])
        )
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [201, 409]
    conflict = next(r for r in responses if r.status_code == 409)
    assert conflict.json()["error"]["code"] == "duplicate_client_msg_id"
    stored = [
        m
        for conversation_id in (world.channel_id, other["id"])
        for m in (await alice.get(f"/conversations/{conversation_id}/messages"))["messages"]
    ]
    assert [m["text"] for m in stored] == ["where?"]
    await world.close()


async def test_retries_of_stored_sends_batched_with_new_sends_get_their_originals(
    server: RunningServer,
) -> None:
    """A batch is first written without looking up retries: a retry of a stored send makes its
    insert hit the unique key, and the batch is written again. Nothing of the failed attempt
    shows: no seq is skipped, each new send is stored once."""
    world = await make_world(server.url)
    alice, bob = world.users
    path = f"/api/v1/conversations/{world.channel_id}/messages"
    originals: dict[str, str] = {}
    for n in range(5):
        r = await alice.http.post(path, json={"text": f"first {n}", "client_msg_id": f"stored-{n}"})
        assert r.status_code == 201, r.text
        originals[f"stored-{n}"] = r.json()["id"]
    requests = []
    for n in range(10):  # interleaved: new sends and retries in the same batches
        requests.append(alice.http.post(path, json={"text": f"new {n}", "client_msg_id": f"new-{n}"}))
        if n < 5:
            retry = {"text": f"first {n}", "client_msg_id": f"stored-{n}"}
            requests.append(alice.http.post(path, json=retry))
    responses = await asyncio.gather(*requests)

    answers = {r.json()["client_msg_id"]: (r.status_code, r.json()["id"]) for r in responses}
    for cmid, message_id in originals.items():
        assert answers[cmid] == (200, message_id), "a retry gets its original back"
    assert sorted(code for cmid, (code, _) in answers.items() if cmid.startswith("new-")) == [201] * 10
    history = await bob.get(f"/conversations/{world.channel_id}/messages", params={"limit": 100})
    texts = sorted(m["text"] for m in history["messages"])
    assert texts == sorted([f"first {n}" for n in range(5)] + [f"new {n}" for n in range(10)])
    seqs = sorted(m["seq"] for m in history["messages"])
    assert seqs == list(range(seqs[0], seqs[0] + 15)), "gap-free seqs"
    await world.close()


async def test_every_batch_reports_where_its_time_went(server: RunningServer) -> None:
    """The server's /metrics split each group-commit batch into its phases (BatchTiming), as the
    benchmark harness reads them (bench/hops.py): one observation per phase per batch."""
    world = await make_world(server.url)
    alice = world.users[0]
    path = f"/api/v1/conversations/{world.channel_id}/messages"
    async with httpx.AsyncClient(timeout=10) as http:
        before = hops.parse((await http.get(f"{server.url}/metrics")).text)
        responses = await asyncio.gather(*(alice.http.post(path, json={"text": f"t{n}"}) for n in range(30)))
        after = hops.parse((await http.get(f"{server.url}/metrics")).text)
    assert all(r.status_code == 201 for r in responses)
    batches = after.write_totals["batches"] - before.write_totals.get("batches", 0.0)
    assert 1 <= batches <= 30
    counts = {
        phase: points[-1][1] - dict(before.batch_phases.get(phase, [])).get(float("inf"), 0.0)
        for phase, points in after.batch_phases.items()
    }
    assert counts == dict.fromkeys(["handoff", "check", "seqs", "rows", "commit"], batches)
    p99 = hops.batch_phase_ms(before, after, 0.99)
    assert p99.keys() == counts.keys() and all(ms >= 0 for ms in p99.values())
    await world.close()
