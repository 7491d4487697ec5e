"""Abuse limits and secrets, as a client (or an operator) meets them.

Every limit is a setting (docs/security.md lists them with defaults). Tests that need a limit
low enough to hit pass it to ``start_server``; the defaults stay generous enough that the rest of
the suite never meets them (``test_default_limits_let_a_busy_client_through``).

Each server here runs in both modes; on real engines the buckets live in Redis and are shared
by every test, so each test speaks from its own client address (``X-Forwarded-For``, which
uvicorn honours from a trusted proxy on 127.0.0.1 — the path nginx takes in production).

Covered elsewhere, not repeated here: the per-user socket limit (close 1013,
``tests/realtime/test_bad_frames.py::test_too_many_sockets_per_user_are_refused``), frame size
and binary frames (1009 / 1008, same file), the message size at exactly the limit and one over
(``tests/api/test_bad_input.py``), token expiry, forgery and revocation by logout
(``tests/api/test_auth.py::test_forged_expired_and_revoked_tokens_are_refused``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from parley.runtime.logging import ConsoleFormatter, JsonFormatter
from parley.settings import DEV_SECRET, Settings
from tests.support.clients import ApiUser, WsClient
from tests.support.engines import engine_overrides
from tests.support.process import REPO
from tests.support.server import RunningServer, start_server, wait_until_flowing
from tests.support.world import make_world

MODES = pytest.mark.parametrize("mode", ["embedded", "engines"])


@contextlib.asynccontextmanager
async def serve(tmp_path: Path, mode: str, **settings: Any) -> AsyncIterator[RunningServer]:
    with contextlib.ExitStack() as stack:
        overrides = stack.enter_context(engine_overrides()) if mode == "engines" else {}
        server = await start_server(tmp_path / "data", **overrides, **settings)
        try:
            if overrides:
                await wait_until_flowing(server)
            yield server
        finally:
            await server.stop()


def address() -> str:
    """A client address of this test's own (IPv6 documentation prefix)."""
    return f"2001:db8::{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}"


def retry_after(response: httpx.Response) -> int:
    value = int(response.headers["Retry-After"])
    assert value >= 1
    return value


# -- per-user send rate -----------------------------------------------------------------------
@MODES
async def test_sending_too_fast_over_rest_is_429_with_retry_after(tmp_path: Path, mode: str) -> None:
    async with serve(tmp_path, mode, rate_limit_per_second=2, rate_limit_burst=3) as server:
        world = await make_world(server.url)
        alice = world.users[0]
        path = f"/api/v1/conversations/{world.channel_id}/messages"
        statuses = [(await alice.http.post(path, json={"text": f"m{i}"})).status_code for i in range(3)]
        assert statuses == [201, 201, 201], "the burst goes through"
        refused = await alice.http.post(path, json={"text": "one too many"})
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        await asyncio.sleep(retry_after(refused))
        assert (await alice.http.post(path, json={"text": "after waiting"})).status_code == 201
        texts = [
            m["text"] for m in (await alice.get(f"/conversations/{world.channel_id}/messages"))["messages"]
        ]
        assert "one too many" not in texts and "after waiting" in texts
        await world.close()


@MODES
async def test_a_burst_over_the_rate_limit_writes_exactly_what_was_admitted(
    tmp_path: Path, mode: str
) -> None:
    """Concurrent sends past the burst, admitted and refused ones in the same batches: each
    refused one is a 429 and nothing of it is stored; each admitted one is stored once."""
    async with serve(tmp_path, mode, rate_limit_per_second=0.01, rate_limit_burst=4) as running:
        world = await make_world(running.url)
        alice = world.users[0]
        path = f"/api/v1/conversations/{world.channel_id}/messages"
        responses = await asyncio.gather(*(alice.http.post(path, json={"text": f"m{n}"}) for n in range(12)))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] * 4 + [429] * 8
        created = sorted(r.json()["text"] for r in responses if r.status_code == 201)
        history = await alice.get(f"/conversations/{world.channel_id}/messages")
        assert sorted(m["text"] for m in history["messages"]) == created
        await world.close()


@MODES
async def test_sending_too_fast_over_websocket_gets_an_error_frame_with_retry_after(
    tmp_path: Path, mode: str
) -> None:
    async with serve(tmp_path, mode, rate_limit_per_second=2, rate_limit_burst=3) as server:
        world = await make_world(server.url)
        ws = await WsClient.connect(server.ws_url, world.users[0].token)
        await ws.wait_for(lambda f: f["type"] == "hello")
        for i in range(4):
            await ws.send({"type": "send", "id": i, "conversation_id": world.channel_id, "text": f"w{i}"})
        acks = [
            await ws.wait_for(lambda f, i=i: f.get("id") == i and f["type"] in ("ack", "error"))
            for i in range(4)
        ]
        assert [a["type"] for a in acks] == ["ack", "ack", "ack", "error"]
        assert acks[3]["code"] == "rate_limited" and acks[3]["retry_after"] > 0
        await asyncio.sleep(acks[3]["retry_after"])
        await ws.send({"type": "send", "id": "later", "conversation_id": world.channel_id, "text": "later"})
        assert (await ws.wait_for(lambda f: f.get("id") == "later"))["type"] == "ack"
        assert ws.closed is None, "a rate-limited client keeps its socket"
        await ws.close()
        await world.close()


# -- per-address REST rate ----------------------------------------------------------------------
@MODES
async def test_too_many_requests_from_one_address_are_429_before_any_route_runs(
    tmp_path: Path, mode: str
) -> None:
    async with serve(tmp_path, mode, ip_rate_limit_per_second=1, ip_rate_limit_burst=5) as server:
        me, other = address(), address()
        async with httpx.AsyncClient(base_url=server.url, headers={"X-Forwarded-For": me}) as http:
            statuses = [(await http.get("/api/v1/users/me")).status_code for _ in range(7)]
            assert statuses[:5] == [401] * 5, "the burst reaches the routes (401: no token)"
            assert 429 in statuses[5:]
            refused = await http.get("/api/v1/workspaces")
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "rate_limited"
            assert refused.headers["content-type"] == "application/json"
            wait = retry_after(refused)
            # Not limited: health checks, and other addresses.
            assert all([(await http.get("/healthz")).status_code == 200 for _ in range(20)])
            other_status = (
                await http.get("/api/v1/users/me", headers={"X-Forwarded-For": other})
            ).status_code
            assert other_status == 401
            await asyncio.sleep(wait)
            assert (await http.get("/api/v1/users/me")).status_code == 401, "served again after Retry-After"


async def test_default_limits_let_a_busy_client_through(tmp_path: Path) -> None:
    """The defaults are for abuse, not for users (or for this test suite): 300 requests back to
    back from one address all reach the routes."""
    defaults = Settings()
    assert defaults.ip_rate_limit_per_second >= 100 and defaults.ip_rate_limit_burst >= 400
    async with serve(tmp_path, "embedded") as server:
        user = await ApiUser.signup(server.url)
        statuses = await asyncio.gather(*(user.http.get("/api/v1/users/me") for _ in range(300)))
        assert {r.status_code for r in statuses} == {200}
        await user.close()


# -- login throttling --------------------------------------------------------------------------
@MODES
async def test_failed_logins_are_throttled_per_username_and_address(tmp_path: Path, mode: str) -> None:
    async with serve(tmp_path, mode, login_attempts_per_minute=3) as server:
        guesser, owner = address(), address()
        username, password = f"victim-{uuid.uuid4().hex[:6]}", "the right password"
        async with httpx.AsyncClient(base_url=server.url) as http:
            r = await http.post(
                "/api/v1/auth/signup",
                json={"username": username, "password": password},
                headers={"X-Forwarded-For": owner},
            )
            assert r.status_code == 201

            async def login(pw: str, source: str, name: str = username) -> httpx.Response:
                return await http.post(
                    "/api/v1/auth/login",
                    json={"username": name, "password": pw},
                    headers={"X-Forwarded-For": source},
                )

            statuses = [(await login(f"guess {i}", guesser)).status_code for i in range(3)]
            assert statuses == [401, 401, 401]
            throttled = await login("guess 4", guesser)
            assert throttled.status_code == 429 and throttled.json()["error"]["code"] == "rate_limited"
            assert retry_after(throttled) >= 10, "3 per minute: the next attempt is ~20 s away"
            # While throttled even the right password is refused: a guesser learns nothing.
            assert (await login(password, guesser)).status_code == 429
            # The owner, from their own address, is not locked out by someone else's guessing.
            assert (await login(password, owner)).status_code == 200
            # Other usernames from the guesser's address have their own budget.
            assert (await login("whatever1", guesser, name="someone-else")).status_code == 401


# -- limits are settings, and the client is told them -------------------------------------------
async def test_message_and_frame_limits_follow_the_settings(tmp_path: Path) -> None:
    async with serve(tmp_path, "embedded", max_message_chars=10, max_frame_bytes=2048) as server:
        world = await make_world(server.url)
        alice = world.users[0]
        path = f"/conversations/{world.channel_id}/messages"
        assert (await alice.post(path, {"text": "x" * 10}, expect=201))["text"] == "x" * 10
        too_long = await alice.post(path, {"text": "x" * 11}, expect=422)
        assert too_long["error"]["code"] == "msg_too_long"
        ws = await WsClient.connect(server.ws_url, alice.token)
        hello = await ws.wait_for(lambda f: f["type"] == "hello")
        assert hello["limits"]["max_message_chars"] == 10 and hello["limits"]["max_frame_bytes"] == 2048
        await ws.send({"type": "send", "conversation_id": world.channel_id, "text": "y" * 3000})
        assert (await ws.wait_closed())[0] == 1009
        await world.close()


# -- CORS: explicit -------------------------------------------------------------------------------
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type",
}


async def test_no_cross_origin_access_unless_configured(tmp_path: Path) -> None:
    async with serve(tmp_path, "embedded") as server, httpx.AsyncClient(base_url=server.url) as http:
        origin = {"Origin": "https://chat.example"}
        preflight = await http.options("/api/v1/auth/login", headers={**origin, **PREFLIGHT})
        simple = await http.get("/api/v1/users/me", headers=origin)
        for r in (preflight, simple):
            assert "access-control-allow-origin" not in r.headers


async def test_only_listed_origins_may_call_the_api_cross_origin(tmp_path: Path) -> None:
    allowed, evil = "https://chat.example", "https://evil.example"
    settings = {"cors_origins": [allowed], "ip_rate_limit_per_second": 1, "ip_rate_limit_burst": 2}
    async with (
        serve(tmp_path, "embedded", **settings) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        ok = await http.options("/api/v1/auth/login", headers={"Origin": allowed, **PREFLIGHT})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == allowed
        assert "authorization" in ok.headers["access-control-allow-headers"].lower()
        assert "access-control-allow-credentials" not in ok.headers, "bearer tokens, never cookies"
        bad = await http.options("/api/v1/auth/login", headers={"Origin": evil, **PREFLIGHT})
        assert bad.status_code == 400 and "access-control-allow-origin" not in bad.headers
        assert (
            "access-control-allow-origin"
            not in (await http.get("/api/v1/users/me", headers={"Origin": evil})).headers
        )
        # A throttled answer still carries CORS headers, so the page can read Retry-After.
        responses = [await http.get("/api/v1/users/me", headers={"Origin": allowed}) for _ in range(4)]
        throttled = [r for r in responses if r.status_code == 429]
        assert throttled, [r.status_code for r in responses]
        assert throttled[0].headers["access-control-allow-origin"] == allowed
        assert "retry-after" in throttled[0].headers["access-control-expose-headers"].lower()


# -- secrets ------------------------------------------------------------------------------------
@pytest.fixture
def shipped_password_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo the suite's cheap argon2 cost (tests/conftest.py): these tests are about the shipped one."""
    monkeypatch.delenv("PARLEY_PASSWORD_HASH_TIME_COST", raising=False)
    monkeypatch.delenv("PARLEY_PASSWORD_HASH_MEMORY_KIB", raising=False)


@pytest.mark.usefixtures("shipped_password_cost")
def test_settings_refuse_the_default_or_a_short_secret_in_prod() -> None:
    with pytest.raises(ValidationError, match="PARLEY_SECRET_KEY"):
        Settings(env="prod")
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(env="prod", secret_key="short")
    assert Settings(env="prod", secret_key="s" * 40).secret_key == "s" * 40
    assert Settings().secret_key == DEV_SECRET, "the embedded dev mode keeps working with no settings"


@pytest.mark.usefixtures("shipped_password_cost")
def test_prod_refuses_a_password_hash_cheaper_than_owasps_minimum() -> None:
    strong = "s" * 40
    with pytest.raises(ValidationError, match="password hash cost"):
        Settings(env="prod", secret_key=strong, password_hash_time_cost=1)
    with pytest.raises(ValidationError, match="password hash cost"):
        Settings(env="prod", secret_key=strong, password_hash_memory_kib=1024)
    shipped = Settings(env="prod", secret_key=strong)
    assert (shipped.password_hash_time_cost, shipped.password_hash_memory_kib) == (3, 65536), "argon2-cffi's"
    assert Settings(env="prod", secret_key=strong, password_hash_time_cost=2, password_hash_memory_kib=19456)


def test_the_service_refuses_to_start_in_prod_with_the_default_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env.update(PARLEY_ENV="prod", PARLEY_DATA_DIR=str(tmp_path), PARLEY_PORT="0")
    done = subprocess.run(
        [sys.executable, "-m", "services.allinone"],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=60,
        text=True,
    )
    assert done.returncode != 0
    assert "PARLEY_SECRET_KEY must be set" in done.stderr + done.stdout


async def test_passwords_and_tokens_never_reach_the_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    password = f"Pw-{uuid.uuid4().hex}-do-not-log"
    caplog.set_level(logging.DEBUG)
    async with serve(tmp_path, "embedded") as server, httpx.AsyncClient(base_url=server.url) as http:
        username = f"logcheck-{uuid.uuid4().hex[:6]}"
        signup = await http.post("/api/v1/auth/signup", json={"username": username, "password": password})
        token = signup.json()["token"]
        await http.post("/api/v1/auth/login", json={"username": username, "password": password})
        await http.post("/api/v1/auth/login", json={"username": username, "password": password + "x"})
        too_long = await http.post(
            "/api/v1/auth/signup", json={"username": "x" + username, "password": password * 9}
        )
        assert too_long.status_code == 422 and password not in too_long.text, "errors do not echo the input"
        await http.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        await http.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
        ws = await WsClient.connect(server.ws_url, token)  # revoked: refused, but the URL held the token
        await ws.wait_closed()
    records = caplog.records
    assert records, "logging was captured"
    raw = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in records)
    assert password not in raw, "a password was logged"
    for formatter in (JsonFormatter("test"), ConsoleFormatter("%(message)s")):
        shown = "\n".join(formatter.format(r) for r in records)
        assert password not in shown
        assert token not in shown, f"a token reached the log output via {type(formatter).__name__}"
