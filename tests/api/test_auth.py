"""Sign-up, login, tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import jwt

from parley.domain.auth import Passwords
from parley.settings import DEV_SECRET
from tests.support.clients import ApiUser
from tests.support.server import RunningServer


async def test_signup_then_login_returns_a_token_that_authenticates(server: RunningServer) -> None:
    user = await ApiUser.signup(server.url, "dora")
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.post("/api/v1/auth/login", json={"username": "DORA", "password": "correct horse"})
        assert r.status_code == 200
        me = await http.get("/api/v1/users/me", headers={"Authorization": f"Bearer {r.json()['token']}"})
    assert me.json()["id"] == user.id
    await user.close()


async def test_wrong_password_and_unknown_user_get_the_same_401(server: RunningServer) -> None:
    await ApiUser.signup(server.url, "erin")
    async with httpx.AsyncClient(base_url=server.url) as http:
        wrong = await http.post("/api/v1/auth/login", json={"username": "erin", "password": "nope nope"})
        unknown = await http.post("/api/v1/auth/login", json={"username": "nobody", "password": "nope nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


async def test_username_is_unique_and_validated(server: RunningServer) -> None:
    await ApiUser.signup(server.url, "frank")
    async with httpx.AsyncClient(base_url=server.url) as http:
        dup = await http.post("/api/v1/auth/signup", json={"username": "frank", "password": "password1"})
        bad = await http.post("/api/v1/auth/signup", json={"username": "no spaces!", "password": "password1"})
        short = await http.post("/api/v1/auth/signup", json={"username": "gina", "password": "short"})
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "username_taken"
    assert bad.status_code == 422 and short.status_code == 422


async def test_forged_expired_and_revoked_tokens_are_refused(server: RunningServer) -> None:
    user = await ApiUser.signup(server.url)
    forged = jwt.encode(
        {"sub": user.id, "jti": "x", "exp": datetime.now(UTC) + timedelta(hours=1)}, "other-secret-" * 4
    )
    expired = jwt.encode(
        {"sub": user.id, "jti": "y", "exp": datetime.now(UTC) - timedelta(seconds=1)}, DEV_SECRET
    )
    async with httpx.AsyncClient(base_url=server.url) as http:
        for token in (forged, expired, "not-a-jwt"):
            r = await http.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401, token
        assert (await http.get("/api/v1/users/me")).status_code == 401
    assert (await user.http.post("/api/v1/auth/logout")).status_code == 204
    assert (await user.http.get("/api/v1/users/me")).status_code == 401
    await user.close()


def test_a_password_hashed_at_another_cost_still_verifies_and_a_wrong_one_never_does() -> None:
    # The cost lives in the hash: raising PARLEY_PASSWORD_HASH_* must not lock anyone out.
    cheap, dearer = Passwords(time_cost=1, memory_kib=64), Passwords(time_cost=2, memory_kib=256)
    old_hash = cheap.hash("correct horse")
    assert "m=64,t=1" in old_hash and "m=256,t=2" in dearer.hash("x")
    assert dearer.verify(old_hash, "correct horse")
    assert not dearer.verify(old_hash, "wrong horse")
    assert not dearer.verify(None, "correct horse"), "an unknown user never verifies"
    assert not dearer.verify("not-a-hash", "correct horse")
