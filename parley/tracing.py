"""The request id of the work in hand, carried end to end: nginx ``X-Request-ID`` → api or
realtime → outbox row → Kafka header ``x-request-id`` → each consumer's logs."""

from __future__ import annotations

import contextvars
import uuid

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
REQUEST_ID_HEADER = "x-request-id"


def new_request_id() -> str:
    return uuid.uuid4().hex
