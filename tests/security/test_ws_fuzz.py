"""WebSocket fuzzing: hypothesis-generated frames against a live server.

Every frame a hostile client can send — malformed JSON, JSON that is not an object, unknown
types, known types with wrong or extra fields, huge or deeply nested payloads, binary frames,
bursts of all of these — gets an answer the protocol promises (docs/protocol.md):

- an error frame with the right code (``invalid_json``, ``unknown_type``, ``invalid_frame``, or a
  domain code such as ``channel_not_found``) and the socket stays open, or
- a close with 1008 (binary frame) or 1009 (frame larger than ``PARLEY_MAX_FRAME_BYTES``),

never an ``internal`` error and never a silent drop; the server stays up, and a well-behaved
member of the same channel keeps sending and receiving throughout without one error.

The fuzzer is synchronous (hypothesis, websockets' sync client) and runs in a worker thread
while the server and the well-behaved clients run in the test's event loop. After each fuzzed
frame it sends a ``ping`` barrier: frames on one socket are handled in order, so whatever the
fuzzed frame caused has arrived by the time the barrier's ``pong`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from parley.settings import Settings
from services.realtime.protocol import KNOWN_TYPES, client_frame
from tests.support.clients import WsClient
from tests.support.server import RunningServer
from tests.support.world import make_world

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("PARLEY_WS_FUZZ_EXAMPLES", "300"))
FLOOD_EXAMPLES = int(os.environ.get("PARLEY_WS_FLOOD_EXAMPLES", "6"))
AUTH_EXAMPLES = int(os.environ.get("PARLEY_WS_AUTH_EXAMPLES", "60"))
MAX_FRAME_BYTES = Settings().max_frame_bytes
MAX_MESSAGE_CHARS = Settings().max_message_chars
REPLY_TIMEOUT = 10.0
PROTOCOL_ERRORS = {"invalid_json", "unknown_type", "invalid_frame"}

# Text a client can put in a frame: any code point but lone surrogates (not encodable in UTF-8).
SAFE_TEXT = st.characters(exclude_categories=("Cs",))
# Digits that str.isdigit() accepts but int() may not ("²"), other scripts' digits, ASCII.
DIGITISH = st.text(st.sampled_from("0123456789²³¹٣٤۵߁१৩൭๓໔༣၅႒፫០᠓᥇᧑᪃᭒᮲᱃᱒꘠꣐꤁꧑꩓꯰０１"), min_size=1, max_size=25)


@dataclass
class Frame:
    """One fuzzed frame: text (JSON or not) or binary."""

    data: str | bytes
    why: str = ""

    def __repr__(self) -> str:
        shown = self.data if len(self.data) <= 300 else self.data[:300] + "…"
        return f"Frame({self.why}: {shown!r}, {len(self.data)} long)"


def json_values(max_leaves: int = 10) -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**70), max_value=2**70)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(SAFE_TEXT, max_size=30)
    )
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(SAFE_TEXT, max_size=8), children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def frames(channel_id: str) -> st.SearchStrategy[Frame]:
    ids = st.sampled_from([channel_id, "999", "0", str(2**63 - 1), str(2**63)]) | DIGITISH | json_values(3)
    fields = {
        "id": st.integers(min_value=-(2**70), max_value=2**70)
        | st.text(SAFE_TEXT, max_size=80)
        | json_values(3),
        "conversation_id": ids,
        "thread_root_id": ids,
        "text": st.text(SAFE_TEXT, max_size=50) | json_values(3),
        "client_msg_id": st.text(SAFE_TEXT, max_size=70) | json_values(2),
        "seq": st.integers(min_value=-(2**70), max_value=2**70) | json_values(2),
        "cursors": st.dictionaries(
            st.sampled_from([channel_id]) | DIGITISH | st.text(SAFE_TEXT, max_size=10),
            st.integers(min_value=-(2**70), max_value=2**70),
            max_size=5,
        )
        | json_values(3),
        "status": st.sampled_from(["online", "away", "offline", "", "ONLINE"]) | json_values(2),
        "token": st.text(SAFE_TEXT, max_size=40) | json_values(2),
        "extra": json_values(3),
    }
    known = st.builds(
        lambda type_, body: {"type": type_, **body},
        st.sampled_from(sorted(KNOWN_TYPES)),
        st.fixed_dictionaries({}, optional=fields),
    )
    unknown = st.builds(
        lambda type_, body: {"type": type_, **body},
        json_values(3).filter(lambda t: t not in KNOWN_TYPES if isinstance(t, str) else True),
        st.fixed_dictionaries({}, optional=fields),
    )
    as_json = st.builds(lambda v, why: Frame(json.dumps(v), why), known, st.just("known type")) | st.builds(
        lambda v: Frame(json.dumps(v), "unknown type"), unknown
    )
    return st.one_of(
        as_json,
        as_json,
        st.builds(lambda v: Frame(json.dumps(v), "any json"), json_values()),
        st.builds(lambda t: Frame(t, "any text"), st.text(SAFE_TEXT, max_size=200)),
        st.builds(lambda b: Frame(b, "binary"), st.binary(max_size=64)),
        st.builds(_nested, st.integers(min_value=1, max_value=120_000), st.booleans()),
        st.builds(
            lambda n, ch: Frame(
                json.dumps({"type": "send", "conversation_id": channel_id, "text": ch * n}), "big"
            ),
            st.sampled_from(
                [MAX_MESSAGE_CHARS, MAX_MESSAGE_CHARS + 1, MAX_FRAME_BYTES // 2, MAX_FRAME_BYTES + 1]
            )
            | st.integers(min_value=1, max_value=MAX_FRAME_BYTES + 10),
            st.sampled_from(["a", "é", "😀"]),
        ),
    )


def _nested(depth: int, in_field: bool) -> Frame:
    nested = "[" * depth + "]" * depth
    text = f'{{"type": "send", "conversation_id": "1", "text": "x", "id": {nested}}}' if in_field else nested
    return Frame(text, f"nested {depth}")


def expected_protocol_error(text: str) -> str | None:
    """The error code the protocol promises for this text frame, or None if it is a valid frame."""
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError:
        return "invalid_json"
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str) or raw["type"] not in KNOWN_TYPES:
        return "unknown_type"
    try:
        client_frame.validate_python(raw)
    except ValidationError:
        return "invalid_frame"
    return None


@dataclass
class Fuzzer:
    """One hostile client: its socket (reopened after a close) and what went wrong."""

    ws_url: str
    token: str
    ws: ClientConnection | None = None
    sockets: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    barrier: int = 0
    frames_sent: int = 0
    closes: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    def socket(self) -> ClientConnection:
        if self.ws is None:
            self.ws = self.sockets.enter_context(
                connect(f"{self.ws_url}?token={self.token}", max_size=None, open_timeout=10)
            )
            hello = json.loads(self.ws.recv(timeout=REPLY_TIMEOUT))
            assert hello["type"] == "hello", hello
        return self.ws

    def close(self) -> None:
        self.sockets.close()
        self.ws = None

    def exchange(self, batch: list[Frame]) -> tuple[list[dict[str, Any]], int | None]:
        """Send ``batch`` back to back, then a barrier; return the replies (errors, acks, pongs)
        that arrived before the barrier's pong, and the close code if the server closed."""
        ws = self.socket()
        self.barrier += 1
        barrier_id = f"barrier-{self.barrier}"
        replies: list[dict[str, Any]] = []
        try:
            for frame in batch:
                ws.send(frame.data)
                self.frames_sent += 1
            ws.send(json.dumps({"type": "ping", "id": barrier_id}))
            while True:
                reply = json.loads(ws.recv(timeout=REPLY_TIMEOUT))
                if reply.get("type") == "pong" and reply.get("id") == barrier_id:
                    return replies, None
                if reply.get("type") in ("error", "ack", "pong"):
                    replies.append(reply)
                    if reply["type"] == "error":
                        self.errors[reply["code"]] = self.errors.get(reply["code"], 0) + 1
        except ConnectionClosed as closed:
            self.ws = None
            code = closed.rcvd.code if closed.rcvd is not None else -1
            self.closes[code] = self.closes.get(code, 0) + 1
            return replies, code
        except TimeoutError:
            self.close()
            raise AssertionError(f"no answer within {REPLY_TIMEOUT} s to {batch!r}"[:3000]) from None


def _must_close_with(frame: Frame) -> int | None:
    if isinstance(frame.data, bytes):
        return 1008
    if len(frame.data.encode()) > MAX_FRAME_BYTES:
        return 1009
    return None


def check_single_frame(fuzzer: Fuzzer, frame: Frame) -> None:
    replies, closed = fuzzer.exchange([frame])
    must_close = _must_close_with(frame)
    if must_close is not None:
        assert closed == must_close, (
            f"{frame!r}: expected close {must_close}, got {closed}; replies {replies}"
        )
        return
    assert closed is None, f"{frame!r}: socket closed with {closed}; replies {replies}"
    assert isinstance(frame.data, str)
    errors = [r for r in replies if r["type"] == "error"]
    assert all(e["code"] != "internal" for e in errors), f"{frame!r}: server error {errors}"
    expected = expected_protocol_error(frame.data)
    if expected is not None:
        assert [e["code"] for e in errors] == [expected], f"{frame!r}: expected {expected}, got {replies}"
    else:
        assert len(replies) <= 1, f"{frame!r}: one answer at most, got {replies}"
        assert all(e["code"] not in PROTOCOL_ERRORS for e in errors), (
            f"{frame!r}: valid frame refused {errors}"
        )


def check_flood(fuzzer: Fuzzer, batch: list[Frame]) -> None:
    """A burst sent without reading: every frame still gets its answer, in order, or the
    socket is closed for a frame that warrants it."""
    replies, closed = fuzzer.exchange(batch)
    closing = [i for i, f in enumerate(batch) if _must_close_with(f) is not None]
    if closing:
        assert closed == _must_close_with(batch[closing[0]]), f"flood closed with {closed}"
        return
    assert closed is None, f"flood of {len(batch)} frames closed the socket with {closed}"
    expected = [expected_protocol_error(f.data) for f in batch if isinstance(f.data, str)]
    got = [r["code"] for r in replies if r["type"] == "error" and r["code"] in PROTOCOL_ERRORS]
    assert got == [e for e in expected if e is not None], (
        "every bad frame of the burst got its error, in order"
    )
    assert all(r.get("code") != "internal" for r in replies)


def run_fuzzer(ws_url: str, token: str, channel_id: str) -> Fuzzer:
    fuzzer = Fuzzer(ws_url, token)
    strategy = frames(channel_id)
    common = settings(
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )

    @settings(common, max_examples=EXAMPLES)
    @given(frame=strategy)
    # Known hostile shapes first, every run (phase "explicit").
    @example(frame=Frame(b"\x00\x01", "binary"))
    @example(frame=Frame("{not json", "broken json"))
    @example(frame=Frame("[" * 100_000 + "]" * 100_000, "nested 100000"))
    @example(frame=Frame('{"type": []}', "unhashable type"))
    @example(frame=Frame('{"type": {"a": 1}, "id": "u"}', "unhashable type"))
    @example(
        frame=Frame(json.dumps({"type": "resume", "id": "r1", "cursors": {"²": 1}}), "unicode digit key")
    )
    @example(frame=Frame(json.dumps({"type": "resume", "id": "r2", "cursors": {"9" * 5000: 1}}), "huge key"))
    @example(
        frame=Frame(
            json.dumps({"type": "mark_read", "conversation_id": channel_id, "seq": 2**70}), "huge seq"
        )
    )
    @example(frame=Frame(json.dumps({"type": "ping", "id": 2**70}), "huge id"))
    @example(frame=Frame(json.dumps({"type": "launch", "id": -(2**70)}), "huge id, unknown type"))
    @example(
        frame=Frame(json.dumps({"type": "typing", "id": 1.5, "conversation_id": channel_id}), "float id")
    )
    @example(
        frame=Frame(json.dumps({"type": "send", "conversation_id": channel_id, "text": "z" * 300_000}), "big")
    )
    def single(frame: Frame) -> None:
        check_single_frame(fuzzer, frame)

    @settings(common, max_examples=FLOOD_EXAMPLES)
    @given(batch=st.lists(strategy.filter(lambda f: _must_close_with(f) is None), min_size=50, max_size=300))
    def flood(batch: list[Frame]) -> None:
        check_flood(fuzzer, batch)

    try:
        single()
        flood()
    finally:
        fuzzer.close()
    return fuzzer


def check_first_frame(ws_url: str, token: str, frame: Frame) -> None:
    """Before authentication only a valid auth frame gets in; anything else is told why and
    closed with 1008 (1009 if it is too big), never a crash."""
    with connect(ws_url, max_size=None, open_timeout=10) as ws:
        replies: list[dict[str, Any]] = []
        try:
            ws.send(frame.data)
            while True:
                reply = json.loads(ws.recv(timeout=REPLY_TIMEOUT))
                if reply["type"] == "hello":
                    break
                replies.append(reply)
            closed = None
        except ConnectionClosed as exc:
            closed = exc.rcvd.code if exc.rcvd is not None else -1
    try:
        auth = client_frame.validate_json(frame.data) if isinstance(frame.data, str) else None
    except ValidationError:
        auth = None
    valid = auth is not None and auth.type == "auth" and auth.token == token
    if valid:
        assert closed is None, f"{frame!r}: a valid auth frame was refused with {closed}: {replies}"
    elif _must_close_with(frame) == 1009:
        assert closed == 1009, f"{frame!r}: expected 1009, got {closed}"
    else:
        assert closed == 1008, f"{frame!r}: expected 1008, got {closed}; replies {replies}"
        assert [r["code"] for r in replies] == ["unauthenticated"], f"{frame!r}: {replies}"


def run_auth_fuzzer(ws_url: str, token: str, channel_id: str) -> None:
    cursors = st.dictionaries(
        st.sampled_from([channel_id]) | DIGITISH | st.text(SAFE_TEXT, max_size=10),
        st.integers(min_value=-(2**70), max_value=2**70) | json_values(2),
        max_size=5,
    )
    auth_frames = st.builds(
        lambda body: Frame(json.dumps({"type": "auth", **body}), "auth"),
        st.fixed_dictionaries(
            {"token": st.just(token) | st.text(SAFE_TEXT, max_size=40) | json_values(2)},
            optional={"cursors": cursors, "id": json_values(2), "extra": json_values(2)},
        ),
    )

    @settings(
        max_examples=AUTH_EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(frame=auth_frames | frames(channel_id))
    @example(
        frame=Frame(json.dumps({"type": "auth", "token": token, "cursors": {"²": 1}}), "unicode digit key")
    )
    @example(frame=Frame(json.dumps({"type": "auth", "token": token, "cursors": {channel_id: 0}}), "valid"))
    @example(frame=Frame(b"\x00", "binary"))
    def first(frame: Frame) -> None:
        check_first_frame(ws_url, token, frame)

    first()


async def _well_behaved_sender(client: WsClient, channel_id: str, stop: asyncio.Event) -> list[str]:
    """Sends a message every 20 ms until told to stop; returns the acknowledged texts."""
    acked: list[str] = []
    n = 0
    while not stop.is_set():
        n += 1
        await client.send(
            {"type": "send", "id": f"good-{n}", "conversation_id": channel_id, "text": f"good {n}"}
        )
        await client.wait_for(
            lambda f, n=n: f.get("type") == "ack" and f.get("id") == f"good-{n}", timeout=10
        )
        acked.append(f"good {n}")
        await asyncio.sleep(0.02)
    return acked


async def test_fuzzed_frames_get_errors_or_close_codes_and_other_clients_are_unaffected(
    server: RunningServer,
) -> None:
    world = await make_world(server.url, 3)
    mallory, bob, carol = world.users  # mallory fuzzes; bob sends politely; carol only listens
    sender = await WsClient.connect(server.ws_url, bob.token)
    listener = await WsClient.connect(server.ws_url, carol.token)
    for client in (sender, listener):
        await client.wait_for(lambda f: f["type"] == "hello")
    stop = asyncio.Event()
    polite = asyncio.create_task(_well_behaved_sender(sender, world.channel_id, stop))
    try:
        fuzzer = await asyncio.to_thread(run_fuzzer, server.ws_url, mallory.token, world.channel_id)
    finally:
        stop.set()
        acked = await asyncio.wait_for(polite, timeout=15)

    assert fuzzer.frames_sent > EXAMPLES, "the fuzzer ran"
    assert len(acked) > 10, "the polite client kept sending while the fuzzer ran"
    for client in (sender, listener):
        await client.wait_for(
            lambda _, c=client: (
                {m["data"]["message"]["text"] for m in c.messages_in(world.channel_id)} >= set(acked)
            ),
            timeout=15,
        )
        assert client.of_type("error") == [], "the well-behaved clients saw no error"
        assert client.closed is None
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/healthz")).status_code == 200
    print(f"ws fuzz: {fuzzer.frames_sent} frames, closes {fuzzer.closes}, errors {fuzzer.errors}")
    for client in (sender, listener):
        await client.close()
    await world.close()


async def test_fuzzed_first_frames_get_in_only_with_a_valid_auth_frame(server: RunningServer) -> None:
    world = await make_world(server.url)
    await asyncio.to_thread(run_auth_fuzzer, server.ws_url, world.users[0].token, world.channel_id)
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/healthz")).status_code == 200
    await world.close()
