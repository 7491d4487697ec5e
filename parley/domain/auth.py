"""Passwords (argon2id) and access tokens (HS256 JWT with expiry and a revocable ``jti``)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from parley.domain.errors import Unauthenticated


class Passwords:
    """argon2id at the cost the settings give. A hash carries its own parameters, so hashes made
    at another cost still verify: raising the cost later applies to new passwords only."""

    def __init__(self, time_cost: int, memory_kib: int) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)
        # Verifying against a dummy hash (same cost) when the user does not exist keeps login
        # timing uniform: a miss costs what a hit costs.
        self._dummy_hash = self._hasher.hash("parley-timing-equalizer")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        try:
            return (
                self._hasher.verify(password_hash or self._dummy_hash, password) and password_hash is not None
            )
        except (VerificationError, InvalidHashError):
            return False


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: int
    jti: str
    expires_at: datetime


def issue_token(user_id: int, secret: str, ttl_seconds: int) -> tuple[str, TokenClaims]:
    now = datetime.now(UTC)
    claims = TokenClaims(
        user_id=user_id, jti=secrets.token_hex(16), expires_at=now + timedelta(seconds=ttl_seconds)
    )
    token = jwt.encode(
        {"sub": str(user_id), "jti": claims.jti, "iat": now, "exp": claims.expires_at},
        secret,
        algorithm="HS256",
    )
    return token, claims


def decode_token(token: str, secret: str) -> TokenClaims:
    try:
        payload = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["sub", "exp", "jti"]})
        return TokenClaims(
            user_id=int(payload["sub"]),
            jti=str(payload["jti"]),
            expires_at=datetime.fromtimestamp(payload["exp"], UTC),
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("token expired", code="token_expired") from exc
    except (jwt.InvalidTokenError, ValueError) as exc:
        raise Unauthenticated("invalid token", code="invalid_token") from exc
