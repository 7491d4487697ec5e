"""The ``/ws`` endpoint: authenticate, say hello, then read frames until the socket closes.

Frames go through the same domain actions as the REST API; domain errors become error frames
on this socket (the connection stays open); protocol violations close it (1008 / 1009).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from parley.domain.actions import ephemeral, messages
from parley.domain.actions.accounts import authenticate
from parley.domain.deps import Deps
from parley.domain.errors import DomainError, RateLimited, Unauthenticated
from parley.domain.models import User
from parley.runtime import metrics
from parley.tracing import new_request_id, request_id_var
from services.realtime.connection import (
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN,
    ClientConnection,
)
from services.realtime.hub import RealtimeHub
from services.realtime.protocol import (
    KNOWN_TYPES,
    AuthFrame,
    MarkReadFrame,
    PingFrame,
    PresenceFrame,
    ResumeFrame,
    SendFrame,
    TypingFrame,
    client_frame,
)

log = logging.getLogger(__name__)
AUTH_TIMEOUT = 10.0
router = APIRouter()


@router.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    deps: Deps = websocket.app.state.deps
    hub: RealtimeHub = websocket.app.state.hub
    await websocket.accept()
    auth = await _authenticate(deps, websocket)
    if auth is None:
        return
    user, cursors = auth
    if hub.user_connection_count(user.id) >= deps.settings.max_connections_per_user:
        await websocket.close(code=CLOSE_TRY_AGAIN, reason="too many connections for this user")
        return
    conn = ClientConnection(
        websocket,
        user,
        queue_size=deps.settings.send_queue_size,
        fill_gap=hub.fill_gap,
        write_round=hub.write_round,
    )
    conn.request_id = (websocket.headers.get("x-request-id") or new_request_id())[:48]
    # Nothing reads the handshake's headers again, and a node holds thousands of idle sockets:
    # empty the list in place (Starlette's Headers view shares it; other servers may hand a
    # tuple, which is left alone).
    if isinstance(websocket.scope["headers"], list):
        websocket.scope["headers"].clear()
    conversations = await hub.register(conn, cursors)
    try:
        conn.send_hello(_hello(deps, conn.user, conversations))
        # This frame lives as long as the socket, and a node holds thousands: keep only what
        # the rest of the handler needs.
        del auth, cursors, conversations
        await ephemeral.set_presence(deps, user, "online")
        # The read loop is a child task so closing a connection from elsewhere (slow consumer,
        # shutdown) can stop it without cancelling the ASGI handler itself.
        conn.reader = asyncio.create_task(_read_loop(deps, conn))
        with contextlib.suppress(asyncio.CancelledError):
            await conn.reader
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise asyncio.CancelledError
    finally:
        await hub.unregister(conn)
        await conn.close(1000, "bye")
        if hub.user_connection_count(user.id) == 0:
            try:
                await ephemeral.set_presence(deps, user, "offline")
            except Exception:
                log.debug("presence offline not published", exc_info=True)


def _hello(deps: Deps, user: User, conversations: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "hello",
        "user": user.model_dump(mode="json"),
        "conversations": conversations,
        "limits": {
            "max_message_chars": deps.settings.max_message_chars,
            "max_frame_bytes": deps.settings.max_frame_bytes,
        },
    }


async def _authenticate(deps: Deps, websocket: WebSocket) -> tuple[User, dict[int, int]] | None:
    """The user, and the resume cursors the auth frame carried (none with a query token)."""
    token = websocket.query_params.get("token")
    cursors: dict[int, int] = {}
    try:
        if token is None:
            raw = await asyncio.wait_for(websocket.receive_text(), timeout=AUTH_TIMEOUT)
            frame = client_frame.validate_json(raw)
            if not isinstance(frame, AuthFrame):
                raise Unauthenticated("the first frame must be auth", code="not_authed")
            token = frame.token
            cursors = {int(k): max(0, v) for k, v in (frame.cursors or {}).items() if _is_id(k)}
        return await authenticate(deps, token), cursors
    except (DomainError, ValidationError, TimeoutError, KeyError, WebSocketDisconnect) as exc:
        reason = exc.message if isinstance(exc, DomainError) else 'authenticate first: {"type":"auth"}'
        try:
            await websocket.send_text(
                orjson.dumps({"type": "error", "code": "unauthenticated", "message": reason}).decode()
            )
            await websocket.close(code=CLOSE_POLICY, reason=reason[:120])
        except Exception:
            log.debug("socket gone during auth", exc_info=True)
        return None


async def _read_loop(deps: Deps, conn: ClientConnection) -> None:
    while True:
        message = await conn.ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            await conn.close(CLOSE_POLICY, "binary frames are not supported; send JSON text")
            return
        if len(text) > deps.settings.max_frame_bytes:
            await conn.close(CLOSE_TOO_BIG, "frame too big")
            return
        await _handle_text(deps, conn, text)


async def _handle_text(deps: Deps, conn: ClientConnection, text: str) -> None:
    # Each frame is a request of its own for tracing: "<socket's X-Request-ID>.<n>".
    conn.frames_seen += 1
    request_id_var.set(f"{conn.request_id}.{conn.frames_seen}")
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError:
        conn.send_frame({"type": "error", "code": "invalid_json", "message": "frame is not valid JSON"})
        return
    frame_id = raw.get("id") if isinstance(raw, dict) else None
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str) or raw["type"] not in KNOWN_TYPES:
        conn.send_frame(
            {
                "type": "error",
                "id": _safe_id(frame_id),
                "code": "unknown_type",
                "message": f"type must be one of {sorted(KNOWN_TYPES)}",
            }
        )
        return
    try:
        frame = client_frame.validate_python(raw)
    except ValidationError as exc:
        conn.send_frame(
            {"type": "error", "id": _safe_id(frame_id), "code": "invalid_frame", "message": _summarize(exc)}
        )
        return
    try:
        await _dispatch(deps, conn, frame)
    except DomainError as exc:
        error: dict[str, Any] = {"type": "error", "id": frame.id, "code": exc.code, "message": exc.message}
        if isinstance(exc, RateLimited):
            error["retry_after"] = round(exc.retry_after, 3)
        conn.send_frame(error)
    except Exception:
        # A bug must not cost the client its connection: report it like a 500, keep going.
        log.exception("frame %s failed", raw.get("type"))
        conn.send_frame({"type": "error", "id": frame.id, "code": "internal", "message": "internal error"})


async def _dispatch(deps: Deps, conn: ClientConnection, frame: object) -> None:
    user = conn.user
    if isinstance(frame, SendFrame):
        message, created = await messages.send_message(
            deps,
            user,
            frame.conversation_id,
            frame.text,
            client_msg_id=frame.client_msg_id,
            thread_root_id=frame.thread_root_id,
        )
        if created:
            metrics.SENDS.labels("ws").inc()
        conn.send_frame(
            {
                "type": "ack",
                "id": frame.id,
                "client_msg_id": frame.client_msg_id,
                "duplicate": not created,
                "message": message.model_dump(mode="json"),
            }
        )
    elif isinstance(frame, TypingFrame):
        await ephemeral.send_typing(deps, user, frame.conversation_id, frame.thread_root_id)
    elif isinstance(frame, MarkReadFrame):
        marker = await messages.mark_read(deps, user, frame.conversation_id, frame.seq)
        conn.send_frame({"type": "ack", "id": frame.id, "read_marker": marker.model_dump(mode="json")})
    elif isinstance(frame, ResumeFrame):
        for key, seq in frame.cursors.items():
            if _is_id(key):
                conn.rewind(int(key), max(0, seq))
        conn.send_frame({"type": "ack", "id": frame.id})
    elif isinstance(frame, PresenceFrame):
        await ephemeral.set_presence(deps, user, frame.status)
        conn.ws.app.state.hub.note_status(user.id, frame.status)
    elif isinstance(frame, PingFrame):
        conn.send_frame({"type": "pong", "id": frame.id})
    elif isinstance(frame, AuthFrame):
        conn.send_frame(
            {"type": "error", "id": frame.id, "code": "already_authed", "message": "already authenticated"}
        )


# Served ahead of the HTTP middleware by Parley's server (see WebSocketFastLane); the router
# above serves the same endpoint under any other ASGI server.
FAST_LANES = {"/ws": websocket_endpoint}


def _is_id(key: str) -> bool:
    """A conversation id as JSON object keys carry it: ASCII digits, at most 63 bits."""
    return key.isascii() and key.isdigit() and len(key) <= 19 and int(key) < 2**63


def _safe_id(value: object) -> str | int | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return value if isinstance(value, int) or len(value) <= 64 else None


def _summarize(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where}: {first.get('msg', 'invalid')}"[:300]
