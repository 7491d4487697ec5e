"""Running a service process: ``--help``, settings, logging, uvicorn, signals.

Every service is an ASGI app (workers too: they serve ``/healthz``, ``/readyz``, ``/metrics``),
so one runner serves them all; uvicorn turns SIGTERM into a lifespan shutdown, where each
service drains (sockets told to reconnect, batches committed).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from parley.runtime.logging import configure_logging
from parley.settings import Settings, get_settings


def run(service: str, description: str, build: Callable[[Settings], FastAPI]) -> None:
    parser = argparse.ArgumentParser(
        prog=f"python -m services.{service}",
        description=description,
        epilog="Settings come from PARLEY_* environment variables (see docs/operations.md).",
    )
    parser.add_argument("--host", help="listen address (PARLEY_HOST)")
    parser.add_argument("--port", type=int, help="listen port (PARLEY_PORT)")
    args = parser.parse_args()
    settings = get_settings()
    host = args.host or settings.host
    port = args.port or settings.port
    configure_logging(service, settings.log_level, settings.log_format)
    app = build(settings)
    print(f"parley {service}: http://{host}:{port}/  (data: {settings.data_dir.resolve()})", flush=True)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        ws_max_size=settings.max_frame_bytes,
        ws_ping_interval=settings.ws_ping_interval,
        ws_ping_timeout=settings.ws_ping_interval,
        timeout_graceful_shutdown=10,
        access_log=False,
    )
