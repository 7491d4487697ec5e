"""A bare FastAPI/uvicorn WebSocket broadcast server: the yardstick of ``fanout-1000``.

Issue 5 asks that one Parley realtime process deliver at least 0.9× what a bare broadcast loop
delivers on the same machine, measured in the same run. This is that loop: no store, no log,
no pub/sub, no ordering, no auth. It speaks just enough of Parley's protocol for the same
clients to drive it: ``hello`` on connect; a ``send`` frame is acked to its sender and
broadcast to every socket as a ``message.created`` event of about Parley's size.

Run as ``python -m bench.baseline_app`` (port from ``PARLEY_PORT``); the harness starts it.
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime

import orjson
import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

app = FastAPI()
sockets: set[WebSocket] = set()
seqs = itertools.count(1)


@app.get("/readyz")
async def readyz() -> dict[str, bool]:
    return {"ready": True}


@app.websocket("/ws")
async def broadcast(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(orjson.dumps({"type": "hello"}).decode())
    sockets.add(websocket)
    try:
        while True:
            frame = orjson.loads(await websocket.receive_text())
            if frame.get("type") != "send":
                continue
            message = _message(frame)
            await websocket.send_text(
                orjson.dumps({"type": "ack", "id": frame.get("id"), "message": message}).decode()
            )
            event = orjson.dumps(
                {"type": "message.created", "seq": message["seq"], "data": {"message": message}}
            ).decode()
            # The bare loop: every socket, one after the other, in this task.
            for peer in list(sockets):
                try:
                    await peer.send_text(event)
                except Exception:
                    sockets.discard(peer)
    except WebSocketDisconnect:
        pass
    finally:
        sockets.discard(websocket)


def _message(frame: dict[str, object]) -> dict[str, object]:
    seq = next(seqs)
    return {
        "id": str(10**17 + seq),
        "conversation_id": str(frame.get("conversation_id")),
        "seq": seq,
        "user_id": "1",
        "text": frame.get("text"),
        "client_msg_id": frame.get("client_msg_id"),
        "created_at": datetime.now(UTC).isoformat(),
        "reactions": [],
    }


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(os.environ.get("PARLEY_PORT", "8100")),
        log_config=None,
        access_log=False,
    )
