"""Redis history cache, presence and rate limiter, shared by every process.

Each check-and-set (the history watermark rules, the token bucket) runs as one Lua script, so two
consumers or two api nodes racing on the same key cannot interleave between the check and the
write. Scripts are registered once per adapter (``register_script``): redis-py calls them by SHA
and reloads them transparently after a Redis restart has flushed the script cache. The history
batch (``apply``) pipelines its calls by SHA itself and does the same reload on ``NOSCRIPT``.

Nothing here is a source of truth (see ``parley.ports.cache``): every key has a TTL, and a Redis
that is down makes calls fail fast (see :func:`redis_client`) so the caller can treat it as a miss.

Key layout (``prefix`` defaults to ``parley:``; hash tags keep one conversation's keys in one
Redis Cluster slot, as the Lua scripts require):

- ``{prefix}history:{<conversation id>}``: hash ``watermark``, ``count``
- ``{prefix}history:{<conversation id>}:messages``: list of serialized messages, newest first
- ``{prefix}presence:<user id>``: string status, expiring after the given TTL
- ``{prefix}rate:<key>``: hash ``tokens``, ``updated_at`` (Redis server time, seconds)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from parley.ports.cache import CachedHistory, HistoryCache, HistoryUpdate, Presence, RateLimiter

DEFAULT_PREFIX = "parley:"
DEFAULT_HISTORY_TTL_SECONDS = 24 * 3600


def redis_client(url: str, *, timeout_seconds: float = 0.5) -> Redis:
    """A client whose calls fail within about ``timeout_seconds`` when Redis is down.

    redis-py's defaults would retry a refused connection ten times with backoff, which turns a
    Redis outage into multi-second stalls on every request. Here a call that hits a broken
    connection gets one quick retry, enough to replace a pooled connection that went stale when
    Redis restarted; a timeout is not retried, so a hung or unreachable Redis costs one
    ``timeout_seconds``. Either way the call then raises ``redis.exceptions.ConnectionError`` /
    ``TimeoutError``. Idle pooled connections are checked with a PING after
    ``health_check_interval`` seconds, and TCP keepalive notices a vanished peer. Responses stay
    bytes (``decode_responses=False``): payloads are opaque serialized JSON.
    """
    return Redis.from_url(
        url,
        socket_connect_timeout=timeout_seconds,
        socket_timeout=timeout_seconds,
        socket_keepalive=True,
        health_check_interval=10,
        # The asyncio Retry: redis-py's synchronous one would be accepted and silently never retry.
        retry=Retry(
            ExponentialWithJitterBackoff(base=0.01, cap=0.05),
            retries=1,
            supported_errors=(RedisConnectionError,),
        ),
        decode_responses=False,
    )


# KEYS: meta hash, message list. Returns {watermark, messages} or nil.
# ``count`` guards against Redis evicting one of the two keys but not the other (maxmemory with an
# allkeys-* policy): a list that does not have the length the hash recorded is not trusted.
_GET = """
local meta = redis.call('HMGET', KEYS[1], 'watermark', 'count')
if not meta[1] then
    return nil
end
local messages = redis.call('LRANGE', KEYS[2], 0, -1)
if #messages ~= tonumber(meta[2]) then
    redis.call('DEL', KEYS[1], KEYS[2])
    return nil
end
return {meta[1], messages}
"""

# KEYS: meta hash, message list. ARGV: watermark, ttl seconds, message... (newest first).
_FILL = """
local current = redis.call('HGET', KEYS[1], 'watermark')
if current and tonumber(current) > tonumber(ARGV[1]) then
    return 0
end
redis.call('DEL', KEYS[2])
-- RPUSH in slices: Lua's unpack() has a limit on how many values it can return at once.
for first = 3, #ARGV, 1000 do
    redis.call('RPUSH', KEYS[2], unpack(ARGV, first, math.min(first + 999, #ARGV)))
end
redis.call('HSET', KEYS[1], 'watermark', ARGV[1], 'count', #ARGV - 2)
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
"""

# KEYS: meta hash, message list. ARGV: seq, message, keep, ttl seconds.
_APPEND = """
local seq = tonumber(ARGV[1])
local meta = redis.call('HMGET', KEYS[1], 'watermark', 'count')
if not meta[1] then
    return 0  -- nothing cached: the next read fills from the store
end
local watermark = tonumber(meta[1])
if watermark >= seq then
    return 0  -- already applied: a redelivered event
end
if watermark ~= seq - 1 or redis.call('LLEN', KEYS[2]) ~= tonumber(meta[2]) then
    redis.call('DEL', KEYS[1], KEYS[2])  -- a gap: the entry can no longer vouch for completeness
    return 0
end
redis.call('LPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[3]) - 1)
redis.call('HSET', KEYS[1], 'watermark', ARGV[1], 'count', redis.call('LLEN', KEYS[2]))
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""

# KEYS: meta hash, message list. ARGV: seq.
_ADVANCE = """
local current = redis.call('HGET', KEYS[1], 'watermark')
if current and tonumber(current) < tonumber(ARGV[1]) then
    redis.call('DEL', KEYS[1], KEYS[2])
    return 1
end
return 0
"""

# KEYS: bucket hashes, taken in the order given (a key given twice takes two tokens in turn). ARGV:
# rate per second and burst of each key (ARGV[2i-1], ARGV[2i]). Returns, per key, seconds to wait
# as a string ("0" when allowed; a Lua number would be truncated to an integer on its way back).
# Uses the Redis server's clock, so api nodes with skewed clocks still share one consistent bucket.
# A key expires once its bucket would be full again: a missing key is a full bucket.
_ACQUIRE = """
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local waits = {}
for i, key in ipairs(KEYS) do
    local rate = tonumber(ARGV[2 * i - 1])
    local burst = tonumber(ARGV[2 * i])
    local state = redis.call('HMGET', key, 'tokens', 'updated_at')
    local tokens = tonumber(state[1]) or burst
    local updated_at = tonumber(state[2]) or now
    tokens = math.min(burst, tokens + math.max(0, now - updated_at) * rate)
    local wait = 0
    if tokens >= 1 then
        tokens = tokens - 1
    else
        wait = (1 - tokens) / rate
    end
    redis.call('HSET', key, 'tokens', string.format('%.6f', tokens), 'updated_at', string.format('%.6f', now))
    redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
    waits[i] = string.format('%.6f', wait)
end
return waits
"""


class RedisHistoryCache:
    """The newest messages per conversation: a list plus a hash (watermark, count), TTL'd."""

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        ttl_seconds: int = DEFAULT_HISTORY_TTL_SECONDS,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._ttl_seconds = ttl_seconds
        self._get = client.register_script(_GET)
        self._fill = client.register_script(_FILL)
        self._append = client.register_script(_APPEND)
        self._advance = client.register_script(_ADVANCE)

    def _keys(self, conversation_id: int) -> list[str]:
        meta = f"{self._prefix}history:{{{conversation_id}}}"
        return [meta, f"{meta}:messages"]

    async def get(self, conversation_id: int) -> CachedHistory | None:
        found = await self._get(keys=self._keys(conversation_id))
        if found is None:
            return None
        watermark, messages = found
        return CachedHistory(watermark=int(watermark), messages=list(messages))

    async def fill(self, conversation_id: int, page: CachedHistory) -> None:
        await self._fill(
            keys=self._keys(conversation_id),
            args=[page.watermark, self._ttl_seconds, *page.messages],
        )

    async def append(self, conversation_id: int, seq: int, message: bytes, keep: int) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        await self._append(keys=self._keys(conversation_id), args=[seq, message, keep, self._ttl_seconds])

    async def advance(self, conversation_id: int, seq: int) -> None:
        await self._advance(keys=self._keys(conversation_id), args=[seq])

    async def apply(self, updates: Sequence[HistoryUpdate], keep: int) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        # One round trip for the batch; each script stays atomic and they run in order. The
        # scripts go by SHA: a pipeline given registered scripts would first ask Redis whether
        # they exist (SCRIPT EXISTS), a second round trip per batch. A Redis restart flushes
        # them: load and run the batch again (every update is idempotent by its seq).
        try:
            await self._apply_by_sha(updates, keep)
        except NoScriptError:
            for script in (self._append, self._advance):
                await self._client.script_load(script.script)
            await self._apply_by_sha(updates, keep)

    async def _apply_by_sha(self, updates: Sequence[HistoryUpdate], keep: int) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for u in updates:
                keys = self._keys(u.conversation_id)
                if u.message is None:
                    pipe.evalsha(self._advance.sha, 2, *keys, u.seq)
                else:
                    pipe.evalsha(self._append.sha, 2, *keys, u.seq, u.message, keep, self._ttl_seconds)
            await pipe.execute()

    async def ping(self) -> None:
        await self._client.ping()


class RedisPresence:
    """Status per user as a string key that expires after its TTL (Redis does the expiry)."""

    def __init__(self, client: Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        self._client = client
        self._prefix = prefix

    def _key(self, user_id: int) -> str:
        return f"{self._prefix}presence:{user_id}"

    async def set(self, user_id: int, status: str, ttl_seconds: int) -> None:
        if ttl_seconds < 1:
            raise ValueError("ttl_seconds must be at least 1")
        await self._client.set(self._key(user_id), status.encode(), ex=ttl_seconds)

    async def get_many(self, user_ids: Sequence[int]) -> dict[int, str]:
        if not user_ids:
            return {}
        values = await self._client.mget([self._key(user_id) for user_id in user_ids])
        found = zip(user_ids, values, strict=True)
        return {user_id: _text(value) for user_id, value in found if value is not None}


def _text(value: bytes | str) -> str:
    # The client returns bytes (decode_responses=False); the stubs also allow str.
    return value.decode() if isinstance(value, bytes) else value


Bucket = tuple[str, float, int]  # key, rate per second, burst


class RedisRateLimiter:
    """Atomic token buckets (Lua), shared by every process that uses the same Redis.

    Group commit for tokens: an acquire with no call on its way calls Redis at once; those that
    arrive while a call is on its way go together in the next one (one script call over all
    their keys). A realtime node takes a token per send, and a round trip per send was a tenth
    of its CPU under load; an idle node waits for nothing more than before. (A call over
    several keys assumes one Redis server, not Redis Cluster's slots.)"""

    def __init__(self, client: Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        self._prefix = prefix
        self._acquire = client.register_script(_ACQUIRE)
        self._calling = False
        self._waiting: list[tuple[Bucket, asyncio.Future[float]]] = []
        self._next_calls: set[asyncio.Task[None]] = set()

    async def acquire(self, key: str, rate_per_second: float, burst: int) -> float:
        if rate_per_second <= 0 or burst < 1:
            raise ValueError("rate_per_second must be positive and burst at least 1")
        bucket = (f"{self._prefix}rate:{key}", rate_per_second, burst)
        if self._calling:
            future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
            self._waiting.append((bucket, future))
            return await future
        self._calling = True
        try:
            return (await self._call([bucket]))[0]
        finally:
            self._call_for_waiting()

    def _call_for_waiting(self) -> None:
        if not self._waiting:
            self._calling = False
            return
        waiting, self._waiting = self._waiting, []
        task = asyncio.get_running_loop().create_task(self._answer(waiting))
        self._next_calls.add(task)  # a reference until it is done
        task.add_done_callback(self._next_calls.discard)
        task.add_done_callback(lambda _: self._call_for_waiting())

    async def _answer(self, waiting: list[tuple[Bucket, asyncio.Future[float]]]) -> None:
        try:
            waits = await self._call([bucket for bucket, _ in waiting])
        except Exception as exc:
            for _, future in waiting:
                if not future.done():  # done: its caller was cancelled meanwhile
                    future.set_exception(exc)
            return
        for (_, future), wait in zip(waiting, waits, strict=True):
            if not future.done():
                future.set_result(wait)

    async def _call(self, buckets: list[Bucket]) -> list[float]:
        args = [value for _, rate, burst in buckets for value in (rate, burst)]
        waits = await self._acquire(keys=[key for key, _, _ in buckets], args=args)
        return [float(wait) for wait in waits]


if TYPE_CHECKING:
    # Checked by mypy only: each adapter satisfies its port.
    _client = redis_client("redis://localhost")
    _history: HistoryCache = RedisHistoryCache(_client)
    _presence: Presence = RedisPresence(_client)
    _limiter: RateLimiter = RedisRateLimiter(_client)
