"""Edge protection for the REST API: a per-client-address rate limit and an explicit CORS policy.

The rate limit is a token bucket per client address, kept by the ``RateLimiter`` port, so with
Redis every api node draws from the same bucket (in the embedded mode: one process, one bucket).
It covers ``/api/`` only: health checks, metrics scrapes and the WebSocket upgrade are never
throttled here (sockets have their own limits). A throttled request is answered before any route
runs: ``429`` with ``Retry-After`` and the usual JSON error body.

The client address is the ASGI ``client``: behind nginx that is the real client only because
uvicorn rewrites it from ``X-Forwarded-For`` for trusted proxies (``--forwarded-allow-ips``,
127.0.0.1 by default). This module never parses forwarding headers itself: a client could forge
them to get a fresh bucket per request.
"""

from __future__ import annotations

import math

import orjson
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from parley.ports.cache import RateLimiter
from parley.runtime.http import error_body
from parley.settings import Settings

LIMITED_PREFIX = "/api/v1/"  # Parley's REST API (the Slack facade has its own error format)


def retry_after_header(wait_seconds: float) -> str:
    """Whole seconds, rounded up and at least 1: waiting that long always finds a token."""
    return str(max(1, math.ceil(wait_seconds)))


class IpRateLimitMiddleware:
    """Pure ASGI middleware (no request body buffering, WebSocket scopes pass straight through)."""

    def __init__(self, app: ASGIApp, *, rate_per_second: float, burst: int) -> None:
        self.app = app
        self.rate_per_second = rate_per_second
        self.burst = burst

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(LIMITED_PREFIX):
            await self.app(scope, receive, send)
            return
        limiter = self._limiter(scope)
        if limiter is not None:
            client = scope.get("client")
            address = client[0] if client else "unknown"
            wait = await limiter.acquire(f"ip:{address}", self.rate_per_second, self.burst)
            if wait > 0:
                await _reject(send, wait)
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _limiter(scope: Scope) -> RateLimiter | None:
        # The ports exist once the lifespan has started them; before that nothing is served anyway.
        deps = getattr(scope["app"].state, "deps", None) if "app" in scope else None
        return deps.rate_limiter if deps is not None else None


async def _reject(send: Send, wait: float) -> None:
    body = orjson.dumps(
        error_body(
            "rate_limited",
            "too many requests from this address; slow down",
            retry_after=round(wait, 3),
        )
    )
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", retry_after_header(wait).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def install_edge_limits(app: FastAPI, settings: Settings) -> None:
    """Add the per-address rate limit, then CORS around it (outermost, so a 429 still carries
    the CORS headers a browser needs to read it, and preflights cost no token)."""
    if settings.ip_rate_limit_per_second > 0:
        app.add_middleware(
            IpRateLimitMiddleware,
            rate_per_second=settings.ip_rate_limit_per_second,
            burst=settings.ip_rate_limit_burst,
        )
    if settings.cors_origins:
        # Bearer tokens, not cookies: no credentials mode, so a listed origin still cannot ride
        # on a user's session; only the listed origins may read responses at all.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["Retry-After", "X-Request-ID"],
            allow_credentials=False,
            max_age=600,
        )
