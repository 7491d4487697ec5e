"""Structured logs: one JSON object per line with the request id of the work in hand."""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime

import orjson

from parley.tracing import request_id_var

# uvicorn logs WebSocket request lines with their query string: never let a token through.
_SECRETS = re.compile(r"(token=|Bearer\s+)[^&\s\"']+", re.IGNORECASE)


def redact(text: str) -> str:
    return _SECRETS.sub(r"\1***", text)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        rid = request_id_var.get()
        if rid:
            entry["request_id"] = rid
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry).decode()


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(ConsoleFormatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka", "elastic_transport", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
