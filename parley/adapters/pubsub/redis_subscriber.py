"""One Redis connection in subscribed mode, read without redis-py's per-call machinery.

Why by hand: a realtime node reads every event of every conversation that has a local member
from its subscription, so the cost per pub/sub message is paid once per event per node.
redis-py's ``PubSub.get_message(timeout=…)`` goes through a health check, a retry wrapper, an
``asyncio`` timeout context (a timer scheduled and cancelled) and two response layers for every
message: ~100 µs of CPU each on the reference VM. This connection feeds the same C parser
(hiredis) straight from an ``asyncio.Protocol`` and hands each message on from there, ~35 µs
(``python -m bench.pubsub_cost`` compares the two). Publishing and every other command stay
with redis-py; this speaks only what a subscriber needs: ``AUTH`` and ``CLIENT SETNAME`` from the
URL (parsed by redis-py's ``parse_url``), then ``SUBSCRIBE``, ``UNSUBSCRIBE`` and ``PING``, over
TCP, TLS (``rediss://``) or a unix socket, in RESP2.

Liveness: TCP keepalive notices a vanished host eventually; to notice a silent one sooner, when
nothing has arrived for ``health_interval`` seconds the connection sends a ``PING``, and when
nothing has arrived for twice that it closes itself. Its owner sees ``closed()`` complete and
reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis
from redis.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError

logger = logging.getLogger(__name__)

OnMessage = Callable[[str, bytes], object]
OnSubscribed = Callable[[str], None]


def encode_command(*parts: str | bytes) -> bytes:
    """A command as a RESP array of bulk strings."""
    encoded = [part.encode() if isinstance(part, str) else part for part in parts]
    return b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(part), part) for part in encoded)


class SubscriberConnection(asyncio.Protocol):
    """Calls ``on_message(channel, payload)`` for each message and ``on_subscribed(channel)`` for
    each confirmed ``SUBSCRIBE``, synchronously, as their bytes arrive."""

    def __init__(self, on_message: OnMessage, on_subscribed: OnSubscribed, health_interval: float) -> None:
        self._on_message = on_message
        self._on_subscribed = on_subscribed
        self._health_interval = health_interval
        self._loop = asyncio.get_running_loop()
        self._parser = hiredis.Reader()
        self._transport: asyncio.Transport | None = None
        self._answers: deque[asyncio.Future[Any]] = deque()  # the set-up commands', in order
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._last_heard = self._loop.time()
        self._health_check: asyncio.TimerHandle | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        on_message: OnMessage,
        on_subscribed: OnSubscribed,
        *,
        timeout: float,
        health_interval: float = 10.0,
    ) -> SubscriberConnection:
        """Connect and authenticate; raises ``redis.exceptions.ConnectionError`` (or ``OSError``,
        ``TimeoutError``) when Redis cannot be reached or refuses the credentials."""
        options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]  # (untyped in redis-py)
        loop = asyncio.get_running_loop()

        def factory() -> SubscriberConnection:
            return cls(on_message, on_subscribed, health_interval)

        async with asyncio.timeout(timeout):
            if "path" in options:
                _, connection = await loop.create_unix_connection(factory, options["path"])
            else:
                tls = (
                    ssl.create_default_context() if options.get("connection_class") is SSLConnection else None
                )
                host, port = options.get("host", "localhost"), options.get("port", 6379)
                _, connection = await loop.create_connection(factory, host, port, ssl=tls)
            try:
                await connection._set_up(options)
            except BaseException:
                connection.close()
                raise
        connection._schedule_health_check()
        return connection

    async def _set_up(self, options: dict[str, Any]) -> None:
        if options.get("password"):
            credentials = [options["username"]] if options.get("username") else []
            await self._call("AUTH", *credentials, options["password"])
        if options.get("client_name"):
            await self._call("CLIENT", "SETNAME", options["client_name"])

    async def _call(self, *command: str) -> Any:
        answer: asyncio.Future[Any] = self._loop.create_future()
        self._answers.append(answer)
        self._send(*command)
        reply = await answer
        if isinstance(reply, hiredis.ReplyError):
            raise RedisConnectionError(f"Redis refused {command[0]}: {reply}")
        return reply

    # -- what the owner calls ------------------------------------------------------------------
    def subscribe(self, *channels: str) -> None:
        if channels:
            self._send("SUBSCRIBE", *channels)

    def unsubscribe(self, *channels: str) -> None:
        if channels:
            self._send("UNSUBSCRIBE", *channels)

    async def closed(self) -> None:
        """Returns once the connection is gone (closed by either side, or found silent)."""
        await asyncio.shield(self._closed)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a stream transport, by construction
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def data_received(self, data: bytes) -> None:
        self._last_heard = self._loop.time()
        self._parser.feed(data)
        try:
            while (reply := self._parser.gets()) is not False:
                self._dispatch(reply)
        except hiredis.ProtocolError as error:
            logger.warning("Redis subscriber: unreadable reply (%s); closing the connection", error)
            self._abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._health_check is not None:
            self._health_check.cancel()
        while self._answers:
            answer = self._answers.popleft()
            if not answer.done():
                answer.set_exception(RedisConnectionError("Redis closed the connection"))
        if not self._closed.done():
            self._closed.set_result(None)

    # -- inside ------------------------------------------------------------------------------------
    def _dispatch(self, reply: Any) -> None:
        if isinstance(reply, list) and reply:
            kind = reply[0]
            if kind == b"message":
                self._on_message(reply[1].decode(), reply[2])
                return
            if kind == b"subscribe":
                self._on_subscribed(reply[1].decode())
                return
            if kind in (b"unsubscribe", b"pong"):
                return
        if self._answers:
            answer = self._answers.popleft()
            if not answer.done():
                answer.set_result(reply)
            return
        if reply == b"PONG":  # a health check's answer while no channel is subscribed
            return
        # An error to SUBSCRIBE (e.g. the connection lost its authentication): start afresh.
        logger.warning("Redis subscriber: unexpected reply %r; closing the connection", reply)
        self._abort()

    def _send(self, *command: str | bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(encode_command(*command))

    def _schedule_health_check(self) -> None:
        self._health_check = self._loop.call_later(self._health_interval, self._check_health)

    def _check_health(self) -> None:
        silent = self._loop.time() - self._last_heard
        if silent >= 2 * self._health_interval:
            logger.warning("Redis subscriber: nothing heard for %.0fs; closing the connection", silent)
            self._abort()
            return
        if silent >= self._health_interval:
            self._send("PING")
        self._schedule_health_check()

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
