"""The SQL store: SQLite (embedded, WAL) and MySQL/MariaDB behind one adapter.

Dialect differences live here and only here:
- SQLite allows one writer at a time, so writes use a single connection with
  ``BEGIN IMMEDIATE`` (no lock upgrades, no SQLITE_BUSY mid-transaction) while reads use a
  separate pool that WAL lets run beside the writer;
- SQLite's ``transact()`` (the send path's group commit, the relay's bookkeeping) runs the
  whole transaction on one database thread with the synchronous driver, one hand-off from the
  event loop per transaction (``query()`` likewise for reads, on reader threads): through
  aiosqlite every statement is a thread hop whose return waits for a busy loop to come round
  (~8 per batch). One asyncio lock orders every SQLite
  write, both kinds, so they never wait on SQLite's busy handler (which sleeps 1-100 ms);
- MySQL takes the conversation row lock in ``bump_seq_txn`` (``UPDATE ... last_seq + n``),
  which serializes sends per conversation and nothing else. Its ``transact()`` runs on writer
  threads with PyMySQL too, several at once (the database orders them).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
    nullcontext,
)
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import orjson
from sqlalchemy import (
    Connection,
    CursorResult,
    Engine,
    and_,
    bindparam,
    case,
    create_engine,
    delete,
    event,
    false,
    func,
    insert,
    make_url,
    select,
    text,
    true,
    update,
)
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.exc import DisconnectionError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SqlTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.sql.base import Executable

from parley.adapters.store import schema as t
from parley.adapters.store.migrations import server_lock_name, upgrade_to_head
from parley.adapters.store.mysql_pipeline import PipeliningConnection
from parley.domain.errors import Conflict, NotFound, Unavailable
from parley.domain.events import Event
from parley.domain.integrations import ApiToken, Bot, TokenKind
from parley.domain.models import (
    Conversation,
    ConversationKind,
    Message,
    Reaction,
    ReadMarker,
    Role,
    User,
    Workspace,
    WorkspaceMember,
)
from parley.ports.store import (
    CommitFeed,
    CommittedEvent,
    Invite,
    Lease,
    Membership,
    OutboxRow,
    Store,
    StoreReader,
    StoreWriter,
)
from parley.tracing import request_id_var

log = logging.getLogger(__name__)
T = TypeVar("T")
READER_THREADS = 2
MYSQL_WRITER_THREADS = 4  # at least PARLEY_MESSAGE_WRITERS (at most 4), plus the relay
# A MySQL connection used this recently is not pinged at checkout (HikariCP's "alive bypass
# window"): a ping is a round trip, and under load every batch would pay for it.
PING_IF_IDLE_FOR = 0.5

# The write batch's statements, built once: with expanding bind parameters (a list bound per
# execution) SQLAlchemy skips building the expression and its cache key on every batch, which
# was a third of the batch's Python time.
_conversations_by_id = select(t.conversations).where(
    t.conversations.c.id.in_(bindparam("ids", expanding=True))
)
# A row per conversation and member among the given users (member_id NULL: none of them).
_conversations_with_members = (
    select(t.conversations, t.conversation_members.c.user_id.label("member_id"))
    .select_from(
        t.conversations.outerjoin(
            t.conversation_members,
            (t.conversation_members.c.conversation_id == t.conversations.c.id)
            & t.conversation_members.c.user_id.in_(bindparam("seconds", expanding=True)),
        )
    )
    .where(t.conversations.c.id.in_(bindparam("firsts", expanding=True)))
)
_messages_by_client_msg_id = select(t.messages).where(
    t.messages.c.user_id.in_(bindparam("firsts", expanding=True)),
    t.messages.c.client_msg_id.in_(bindparam("seconds", expanding=True)),
)
_bump_one_seq = (
    update(t.conversations)
    .where(t.conversations.c.id == bindparam("b_id"))
    .values(last_seq=t.conversations.c.last_seq + bindparam("b_count"))
)
_bump_one_seq_returning = _bump_one_seq.returning(t.conversations.c.last_seq)
_last_seq_of = select(t.conversations.c.last_seq).where(t.conversations.c.id == bindparam("b_id"))
_insert_message = insert(t.messages)
# Built once: the relay marks a few ranges ten times a second (compiling per call was a tenth of
# its CPU); executemany, one statement per conversation.
_mark_seq_range = (
    update(t.outbox)
    .where(
        t.outbox.c.conversation_id == bindparam("m_conversation"),
        t.outbox.c.seq.between(bindparam("m_first"), bindparam("m_last")),
    )
    .values(published=True)
)
_insert_outbox = insert(t.outbox)
_insert_outbox_returning = insert(t.outbox).returning(t.outbox.c.id, sort_by_parameter_order=True)


class _Connection(Protocol):
    """What a session needs of its connection: ``AsyncConnection``, or ``_ThreadConnection``
    inside an embedded ``transact()``."""

    @property
    def dialect(self) -> Dialect: ...

    async def execute(self, statement: Executable, parameters: Any = None) -> CursorResult[Any]: ...


WriteConflict = Callable[[], Exception]


class _ThreadConnection:
    """A synchronous connection behind ``AsyncConnection``'s face, for code already running on
    the database thread: ``execute`` completes without suspending, so a whole ``transact()``
    coroutine runs there to its end in one go."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    @property
    def dialect(self) -> Dialect:
        return self._conn.dialect

    async def execute(self, statement: Executable, parameters: Any = None) -> CursorResult[Any]:
        return self._conn.execute(statement, parameters)

    def execute_later(
        self, statement: Executable, parameters: Any = None, on_conflict: WriteConflict | None = None
    ) -> bool:
        """Hold back a write whose result nobody reads, to go out with the next statement (see
        ``mysql_pipeline``); False when this connection cannot (it was not held back)."""
        raw = self._conn.connection.dbapi_connection
        if not isinstance(raw, PipeliningConnection):
            return False
        with raw.deferred(on_conflict):
            self._conn.execute(statement, parameters)
        return True


async def _on_thread(
    threads: ThreadPoolExecutor,
    open_connection: Callable[[], AbstractContextManager[Connection]],
    work: Callable[[SqlSession], Awaitable[T]],
    appended: list[OutboxRow] | None = None,
    committed: list[CommittedEvent] | None = None,
) -> T:
    """Run ``work`` on one of ``threads`` over a connection from ``open_connection`` (``begin``:
    committed when work returns; ``connect``: a read, rolled back)."""

    def run() -> T:
        with open_connection() as conn:
            session = SqlSession(_ThreadConnection(conn), appended, committed)
            return _run_to_completion(cast(Coroutine[Any, Any, T], work(session)))

    return await asyncio.get_running_loop().run_in_executor(threads, contextvars.copy_context().run, run)


def _run_to_completion(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (it awaits only ``_ThreadConnection``)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coro.close()
    raise RuntimeError("a transact() block awaited something other than its store writer")


def _duplicate_message() -> Conflict:
    return Conflict("a message with this client_msg_id already exists", code="duplicate")


def _db(value: datetime) -> datetime:
    """Store naive UTC (both engines' DATETIME has no zone)."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def _pairs_in(pairs: Collection[tuple[Any, Any]]) -> dict[str, list[Any]]:
    """Parameters of ``first IN (…) AND second IN (…)``: a superset of ``pairs`` (the caller
    keeps the exact pairs) found through the two-column index. A row-value ``(a, b) IN (VALUES
    …)`` is exact, but SQLite answers it by scanning the whole table: every write batch read
    every message ever stored."""
    return {"firsts": sorted({a for a, _ in pairs}), "seconds": sorted({b for _, b in pairs})}


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _user(row: Any) -> User:
    return User(
        id=row.id, username=row.username, display_name=row.display_name, created_at=_aware(row.created_at)
    )


def _workspace(row: Any) -> Workspace:
    return Workspace(
        id=row.id, name=row.name, slug=row.slug, created_by=row.created_by, created_at=_aware(row.created_at)
    )


def _conversation(row: Any) -> Conversation:
    return Conversation(
        id=row.id,
        workspace_id=row.workspace_id,
        kind=ConversationKind(row.kind),
        name=row.name,
        topic=row.topic,
        created_by=row.created_by,
        created_at=_aware(row.created_at),
        last_seq=row.last_seq,
    )


def _message(row: Any, reactions: list[Reaction] | None = None) -> Message:
    return Message(
        id=row.id,
        conversation_id=row.conversation_id,
        workspace_id=row.workspace_id,
        seq=row.seq,
        user_id=row.user_id,
        text="" if row.deleted else row.text,
        client_msg_id=row.client_msg_id,
        thread_root_id=row.thread_root_id,
        reply_count=row.reply_count,
        mentions=orjson.loads(row.mentions),
        mentions_channel=bool(row.mentions_channel),
        created_at=_aware(row.created_at),
        edited_at=_aware(row.edited_at) if row.edited_at else None,
        deleted=bool(row.deleted),
        reactions=reactions or [],
    )


def _message_values(m: Message) -> dict[str, Any]:
    return {
        "id": m.id,
        "conversation_id": m.conversation_id,
        "workspace_id": m.workspace_id,
        "seq": m.seq,
        "user_id": m.user_id,
        "text": m.text,
        "client_msg_id": m.client_msg_id,
        "thread_root_id": m.thread_root_id,
        "reply_count": m.reply_count,
        "mentions": orjson.dumps(m.mentions).decode(),
        "mentions_channel": m.mentions_channel,
        "created_at": _db(m.created_at),
        "edited_at": _db(m.edited_at) if m.edited_at else None,
        "deleted": m.deleted,
    }


class SqlSession:
    """One connection's view of the store: the reader and, inside ``write()``, the writer."""

    def __init__(
        self,
        conn: _Connection,
        appended: list[OutboxRow] | None = None,
        committed: list[CommittedEvent] | None = None,
    ) -> None:
        self._c = conn
        # Outbox rows this transaction added, for the store's commit feed (None: not followed)
        # and for its on_commit listeners (None: nobody listens).
        self._appended = appended
        self._committed = committed

    async def _write(
        self, statement: Executable, parameters: Any = None, on_conflict: WriteConflict | None = None
    ) -> None:
        """A write whose result is not read: held back to go out with the transaction's next
        statement where the connection can (MySQL's writer threads), else executed now."""
        later = getattr(self._c, "execute_later", None)
        if later is not None and later(statement, parameters, on_conflict):
            return
        try:
            await self._c.execute(statement, parameters)
        except IntegrityError as exc:
            if on_conflict is None:
                raise
            raise on_conflict() from exc

    # -- users ---------------------------------------------------------------------------
    async def get_user(self, user_id: int) -> User | None:
        row = (await self._c.execute(select(t.users).where(t.users.c.id == user_id))).first()
        return _user(row) if row else None

    async def get_user_credentials(self, username: str) -> tuple[User, str] | None:
        row = (await self._c.execute(select(t.users).where(t.users.c.username == username))).first()
        return (_user(row), row.password_hash) if row else None

    async def get_users(self, user_ids: Sequence[int]) -> list[User]:
        if not user_ids:
            return []
        rows = await self._c.execute(select(t.users).where(t.users.c.id.in_(list(user_ids))))
        return [_user(r) for r in rows]

    async def get_users_by_username(self, usernames: Sequence[str]) -> list[User]:
        if not usernames:
            return []
        rows = await self._c.execute(select(t.users).where(t.users.c.username.in_(list(usernames))))
        return [_user(r) for r in rows]

    async def is_token_revoked(self, jti: str) -> bool:
        row = (
            await self._c.execute(select(t.revoked_tokens.c.jti).where(t.revoked_tokens.c.jti == jti))
        ).first()
        return row is not None

    async def create_user_txn(self, user: User, password_hash: str) -> None:
        # Callers check the name first; two sign-ups racing for it on MySQL both pass that check.
        try:
            await self._c.execute(
                insert(t.users).values(
                    id=user.id,
                    username=user.username,
                    display_name=user.display_name,
                    password_hash=password_hash,
                    created_at=_db(user.created_at),
                )
            )
        except IntegrityError as exc:
            raise Conflict("username is taken", code="username_taken") from exc

    async def revoke_token_txn(self, jti: str, expires_at: datetime) -> None:
        if not await self.is_token_revoked(jti):
            await self._c.execute(insert(t.revoked_tokens).values(jti=jti, expires_at=_db(expires_at)))

    # -- workspaces ----------------------------------------------------------------------
    async def get_workspace(self, workspace_id: int) -> Workspace | None:
        row = (await self._c.execute(select(t.workspaces).where(t.workspaces.c.id == workspace_id))).first()
        return _workspace(row) if row else None

    async def get_workspace_member(self, workspace_id: int, user_id: int) -> WorkspaceMember | None:
        wm = t.workspace_members
        row = (
            await self._c.execute(
                select(wm).where(wm.c.workspace_id == workspace_id, wm.c.user_id == user_id)
            )
        ).first()
        if row is None:
            return None
        return WorkspaceMember(
            workspace_id=row.workspace_id,
            user_id=row.user_id,
            role=Role(row.role),
            joined_at=_aware(row.joined_at),
        )

    async def list_workspace_members(self, workspace_id: int) -> list[WorkspaceMember]:
        wm = t.workspace_members
        rows = await self._c.execute(
            select(wm).where(wm.c.workspace_id == workspace_id).order_by(wm.c.joined_at)
        )
        return [
            WorkspaceMember(
                workspace_id=r.workspace_id,
                user_id=r.user_id,
                role=Role(r.role),
                joined_at=_aware(r.joined_at),
            )
            for r in rows
        ]

    async def list_user_workspaces(self, user_id: int) -> list[Workspace]:
        wm = t.workspace_members
        rows = await self._c.execute(
            select(t.workspaces)
            .join(wm, wm.c.workspace_id == t.workspaces.c.id)
            .where(wm.c.user_id == user_id)
            .order_by(t.workspaces.c.id)
        )
        return [_workspace(r) for r in rows]

    async def get_invite(self, code: str) -> Invite | None:
        wi = t.workspace_invites
        row = (await self._c.execute(select(wi).where(wi.c.code == code))).first()
        if row is None:
            return None
        return Invite(
            code=row.code,
            workspace_id=row.workspace_id,
            created_by=row.created_by,
            expires_at=_aware(row.expires_at),
        )

    async def create_workspace_txn(self, workspace: Workspace) -> None:
        try:
            await self._c.execute(
                insert(t.workspaces).values(
                    id=workspace.id,
                    name=workspace.name,
                    slug=workspace.slug,
                    created_by=workspace.created_by,
                    created_at=_db(workspace.created_at),
                )
            )
        except IntegrityError as exc:
            raise Conflict("a workspace with this slug exists", code="slug_taken") from exc

    async def add_workspace_member_txn(self, workspace_id: int, user_id: int, role: Role) -> bool:
        if await self.get_workspace_member(workspace_id, user_id):
            return False
        try:
            await self._c.execute(
                insert(t.workspace_members).values(
                    workspace_id=workspace_id,
                    user_id=user_id,
                    role=role.value,
                    joined_at=_db(datetime.now(UTC)),
                )
            )
        except IntegrityError:  # added by a transaction racing this one (MySQL): already a member
            return False
        return True

    async def create_invite_txn(self, invite: Invite) -> None:
        await self._c.execute(
            insert(t.workspace_invites).values(
                code=invite.code,
                workspace_id=invite.workspace_id,
                created_by=invite.created_by,
                created_at=_db(datetime.now(UTC)),
                expires_at=_db(invite.expires_at),
            )
        )

    # -- conversations -------------------------------------------------------------------
    async def get_conversation(self, conversation_id: int) -> Conversation | None:
        row = (
            await self._c.execute(select(t.conversations).where(t.conversations.c.id == conversation_id))
        ).first()
        return _conversation(row) if row else None

    async def get_conversations(self, conversation_ids: Collection[int]) -> dict[int, Conversation]:
        if not conversation_ids:
            return {}
        rows = await self._c.execute(_conversations_by_id, {"ids": list(conversation_ids)})
        return {row.id: _conversation(row) for row in rows}

    async def find_dm(self, workspace_id: int, dm_key: str) -> Conversation | None:
        c = t.conversations
        row = (
            await self._c.execute(select(c).where(c.c.workspace_id == workspace_id, c.c.dm_key == dm_key))
        ).first()
        return _conversation(row) if row else None

    async def is_member(self, conversation_id: int, user_id: int) -> bool:
        cm = t.conversation_members
        row = (
            await self._c.execute(
                select(cm.c.user_id).where(cm.c.conversation_id == conversation_id, cm.c.user_id == user_id)
            )
        ).first()
        return row is not None

    async def conversations_with_members(
        self, pairs: Collection[tuple[int, int]]
    ) -> tuple[dict[int, Conversation], set[tuple[int, int]]]:
        if not pairs:
            return {}, set()
        wanted = set(pairs)
        conversations: dict[int, Conversation] = {}
        members: set[tuple[int, int]] = set()
        for row in await self._c.execute(_conversations_with_members, _pairs_in(wanted)):
            if row.id not in conversations:
                conversations[row.id] = _conversation(row)
            if (key := (row.id, row.member_id)) in wanted:
                members.add(key)
        return conversations, members

    async def member_ids(self, conversation_id: int) -> list[int]:
        cm = t.conversation_members
        rows = await self._c.execute(
            select(cm.c.user_id).where(cm.c.conversation_id == conversation_id).order_by(cm.c.joined_at)
        )
        return [r.user_id for r in rows]

    async def list_memberships(self, user_id: int, workspace_id: int | None = None) -> list[Membership]:
        c, cm = t.conversations, t.conversation_members
        q = (
            select(c, cm.c.last_read_seq)
            .join(cm, cm.c.conversation_id == c.c.id)
            .where(cm.c.user_id == user_id)
            .order_by(c.c.id)
        )
        if workspace_id is not None:
            q = q.where(c.c.workspace_id == workspace_id)
        rows = await self._c.execute(q)
        return [Membership(conversation=_conversation(r), last_read_seq=r.last_read_seq) for r in rows]

    async def list_public_conversations(self, workspace_id: int) -> list[Conversation]:
        c = t.conversations
        rows = await self._c.execute(
            select(c)
            .where(c.c.workspace_id == workspace_id, c.c.kind == ConversationKind.PUBLIC.value)
            .order_by(c.c.name)
        )
        return [_conversation(r) for r in rows]

    async def conversation_ids_of(self, user_id: int) -> list[int]:
        cm = t.conversation_members
        rows = await self._c.execute(select(cm.c.conversation_id).where(cm.c.user_id == user_id))
        return [r.conversation_id for r in rows]

    async def last_seqs(self, conversation_ids: Sequence[int]) -> dict[int, int]:
        if not conversation_ids:
            return {}
        c = t.conversations
        rows = await self._c.execute(select(c.c.id, c.c.last_seq).where(c.c.id.in_(list(conversation_ids))))
        return {r.id: int(r.last_seq) for r in rows}

    async def create_conversation_txn(self, conversation: Conversation, dm_key: str | None) -> None:
        try:
            await self._insert_conversation(conversation, dm_key)
        except IntegrityError as exc:
            raise Conflict("a channel with this name exists", code="name_taken") from exc

    async def _insert_conversation(self, conversation: Conversation, dm_key: str | None) -> None:
        await self._c.execute(
            insert(t.conversations).values(
                id=conversation.id,
                workspace_id=conversation.workspace_id,
                kind=conversation.kind.value,
                name=conversation.name,
                topic=conversation.topic,
                dm_key=dm_key,
                created_by=conversation.created_by,
                created_at=_db(conversation.created_at),
                last_seq=conversation.last_seq,
            )
        )

    async def add_member_txn(self, conversation_id: int, user_id: int, last_read_seq: int) -> bool:
        if await self.is_member(conversation_id, user_id):
            return False
        await self._c.execute(
            insert(t.conversation_members).values(
                conversation_id=conversation_id,
                user_id=user_id,
                joined_at=_db(datetime.now(UTC)),
                last_read_seq=last_read_seq,
            )
        )
        return True

    async def remove_member_txn(self, conversation_id: int, user_id: int) -> bool:
        cm = t.conversation_members
        result = await self._c.execute(
            delete(cm).where(cm.c.conversation_id == conversation_id, cm.c.user_id == user_id)
        )
        return bool(result.rowcount)

    async def bump_seq_txn(self, conversation_id: int, count: int = 1) -> int:
        return (await self.bump_seqs_txn({conversation_id: count}))[conversation_id]

    async def bump_seqs_txn(self, counts: Mapping[int, int]) -> dict[int, int]:
        if not counts:
            return {}
        c = t.conversations
        ids = sorted(counts)
        if len(ids) == 1:  # the common batch: one room, with statements built once
            return {ids[0]: await self._bump_one_seq(ids[0], counts[ids[0]])}
        by = case({i: counts[i] for i in ids}, value=c.c.id)
        # One UPDATE takes the row locks (MySQL) that order every event of these conversations,
        # in primary-key order, so two batches lock their common conversations in the same order.
        bump = update(c).where(c.c.id.in_(ids)).values(last_seq=c.c.last_seq + by)
        if self._c.dialect.name == "sqlite":  # RETURNING saves a round trip (not in MySQL)
            rows = await self._c.execute(bump.returning(c.c.id, c.c.last_seq))
        else:
            await self._write(bump)
            rows = await self._c.execute(select(c.c.id, c.c.last_seq).where(c.c.id.in_(ids)))
        last = {row.id: int(row.last_seq) for row in rows}
        if len(last) != len(ids):
            raise NotFound("conversation not found", code="channel_not_found")
        return last

    async def _bump_one_seq(self, conversation_id: int, count: int) -> int:
        params = {"b_id": conversation_id, "b_count": count}
        if self._c.dialect.name == "sqlite":
            row = (await self._c.execute(_bump_one_seq_returning, params)).first()
        else:
            await self._write(_bump_one_seq, params)
            row = (await self._c.execute(_last_seq_of, params)).first()
        if row is None:
            raise NotFound("conversation not found", code="channel_not_found")
        return int(row.last_seq)

    # -- messages ------------------------------------------------------------------------
    async def _with_reactions(self, rows: Sequence[Any]) -> list[Message]:
        if not rows:
            return []
        r = t.reactions
        reaction_rows = await self._c.execute(
            select(r.c.message_id, r.c.emoji, r.c.user_id)
            .where(r.c.message_id.in_([row.id for row in rows]))
            .order_by(r.c.created_at, r.c.user_id)
        )
        grouped: dict[int, dict[str, list[int]]] = {}
        for rr in reaction_rows:
            grouped.setdefault(rr.message_id, {}).setdefault(rr.emoji, []).append(rr.user_id)
        return [
            _message(
                row,
                [
                    Reaction(emoji=emoji, user_ids=uids, count=len(uids))
                    for emoji, uids in grouped.get(row.id, {}).items()
                ],
            )
            for row in rows
        ]

    async def get_message(self, message_id: int) -> Message | None:
        row = (await self._c.execute(select(t.messages).where(t.messages.c.id == message_id))).first()
        return (await self._with_reactions([row]))[0] if row else None

    async def get_messages(self, message_ids: Collection[int]) -> dict[int, Message]:
        if not message_ids:
            return {}
        rows = (await self._c.execute(select(t.messages).where(t.messages.c.id.in_(list(message_ids))))).all()
        return {m.id: m for m in await self._with_reactions(rows)}

    async def find_by_client_msg_ids(
        self, keys: Collection[tuple[int, str]]
    ) -> dict[tuple[int, str], Message]:
        if not keys:
            return {}
        wanted = set(keys)
        rows = (await self._c.execute(_messages_by_client_msg_id, _pairs_in(wanted))).all()
        rows = [row for row in rows if (row.user_id, row.client_msg_id) in wanted]
        return {(msg.user_id, msg.client_msg_id or ""): msg for msg in await self._with_reactions(rows)}

    async def history(
        self,
        conversation_id: int,
        *,
        before_seq: int | None = None,
        after_seq: int | None = None,
        limit: int = 50,
        thread_root_id: int | None = None,
    ) -> list[Message]:
        m = t.messages
        q = select(m)
        if thread_root_id is None:
            q = q.where(m.c.conversation_id == conversation_id, m.c.thread_root_id.is_(None))
        else:
            q = q.where(m.c.thread_root_id == thread_root_id)
        if before_seq is not None:
            q = q.where(m.c.seq < before_seq)
        if after_seq is not None:
            q = q.where(m.c.seq > after_seq).order_by(m.c.seq.asc())
        else:
            q = q.order_by(m.c.seq.desc())
        rows = (await self._c.execute(q.limit(limit))).all()
        return await self._with_reactions(rows)

    async def unread_counts(self, user_id: int) -> dict[int, int]:
        m, cm = t.messages, t.conversation_members
        rows = await self._c.execute(
            select(cm.c.conversation_id, func.count(m.c.id).label("n"))
            .join(
                m,
                and_(
                    m.c.conversation_id == cm.c.conversation_id,
                    m.c.seq > cm.c.last_read_seq,
                    m.c.user_id != user_id,
                    m.c.deleted.is_(False),
                    m.c.thread_root_id.is_(None),
                ),
            )
            .where(cm.c.user_id == user_id)
            .group_by(cm.c.conversation_id)
        )
        return {r.conversation_id: int(r.n) for r in rows}

    async def iter_messages(self, batch_size: int) -> AsyncIterator[list[Message]]:
        m = t.messages
        last_id = 0
        while True:
            rows = (
                await self._c.execute(
                    select(m)
                    .where(m.c.id > last_id, m.c.deleted.is_(False))
                    .order_by(m.c.id)
                    .limit(batch_size)
                )
            ).all()
            if not rows:
                return
            last_id = rows[-1].id
            yield [_message(r) for r in rows]

    async def insert_messages_txn(self, messages: Sequence[Message]) -> None:
        # Only a concurrent retry of the same (user, client_msg_id) can collide here.
        await self._write(_insert_message, [_message_values(m) for m in messages], _duplicate_message)

    async def update_message_txn(self, message: Message) -> None:
        values = _message_values(message)
        values.pop("id")
        await self._c.execute(update(t.messages).where(t.messages.c.id == message.id).values(**values))

    async def increment_reply_count_txn(self, root_id: int, by: int) -> None:
        m = t.messages
        await self._write(update(m).where(m.c.id == root_id).values(reply_count=m.c.reply_count + by))

    async def add_reaction_txn(self, message_id: int, user_id: int, emoji: str) -> bool:
        r = t.reactions
        exists = (
            await self._c.execute(
                select(r.c.message_id).where(
                    r.c.message_id == message_id, r.c.user_id == user_id, r.c.emoji == emoji
                )
            )
        ).first()
        if exists:
            return False
        await self._c.execute(
            insert(r).values(
                message_id=message_id, user_id=user_id, emoji=emoji, created_at=_db(datetime.now(UTC))
            )
        )
        return True

    async def remove_reaction_txn(self, message_id: int, user_id: int, emoji: str) -> bool:
        r = t.reactions
        result = await self._c.execute(
            delete(r).where(r.c.message_id == message_id, r.c.user_id == user_id, r.c.emoji == emoji)
        )
        return bool(result.rowcount)

    async def set_read_marker_txn(self, conversation_id: int, user_id: int, seq: int) -> ReadMarker:
        cm = t.conversation_members
        # Read markers only move forward: a stale tab cannot mark messages unread again.
        await self._c.execute(
            update(cm)
            .where(cm.c.conversation_id == conversation_id, cm.c.user_id == user_id, cm.c.last_read_seq < seq)
            .values(last_read_seq=seq)
        )
        row = (
            await self._c.execute(
                select(cm.c.last_read_seq).where(
                    cm.c.conversation_id == conversation_id, cm.c.user_id == user_id
                )
            )
        ).one()
        return ReadMarker(conversation_id=conversation_id, user_id=user_id, last_read_seq=row.last_read_seq)

    # -- outbox --------------------------------------------------------------------------
    async def append_events_txn(self, events: Sequence[Event]) -> None:
        written_at = datetime.now(UTC)
        now = _db(written_at)
        request_id = request_id_var.get()
        payloads = [e.to_bytes() for e in events]
        rows = [
            {
                "event_id": e.event_id,
                "conversation_id": e.conversation_id,
                "seq": e.seq,
                "type": e.type.value,
                "payload": payload,
                "created_at": now,
                "published": False,
                "request_id": request_id,
            }
            for e, payload in zip(events, payloads, strict=True)
        ]
        if self._committed is not None:
            self._committed.extend(
                CommittedEvent(int(str(e.conversation_id)), int(str(e.seq)), p, request_id, written_at)
                for e, p in zip(events, payloads, strict=True)
            )
        if self._appended is None:
            await self._write(_insert_outbox, rows)
            return
        inserted = await self._c.execute(_insert_outbox_returning, rows)
        self._appended.extend(
            OutboxRow(
                id=r.id,
                conversation_id=int(str(e.conversation_id)),
                seq=int(str(e.seq)),
                payload=p,
                request_id=request_id,
                created_at=written_at,
            )
            for r, e, p in zip(inserted, events, payloads, strict=True)
        )

    async def unpublished_events(self, limit: int, excluding: Collection[int] = ()) -> list[OutboxRow]:
        o = t.outbox
        query = (
            select(o.c.id, o.c.conversation_id, o.c.seq, o.c.payload, o.c.request_id, o.c.created_at)
            # The outbox keeps published rows for replay (hours of them): this read must go
            # through the (published, id) index. MariaDB used none for "IS false", and for
            # "= false ORDER BY id LIMIT n" it guesses that half the rows match and often walks
            # the primary key in id order instead: the whole table when none match. Hence the
            # hint (SQLite picks the index by itself).
            .where(o.c.published == false())
            .with_hint(o, "FORCE INDEX (ix_outbox_unpublished)", dialect_name="mysql")
            .order_by(o.c.id)
            .limit(limit)
        )
        if excluding:
            query = query.where(o.c.id.not_in(sorted(excluding)))
        rows = await self._c.execute(query)
        return [
            OutboxRow(
                id=r.id,
                conversation_id=r.conversation_id,
                seq=r.seq,
                payload=bytes(r.payload),
                request_id=r.request_id,
                created_at=_aware(r.created_at),
            )
            for r in rows
        ]

    async def mark_published_txn(self, outbox_ids: Sequence[int]) -> None:
        if outbox_ids:
            await self._write(
                update(t.outbox).where(t.outbox.c.id.in_(list(outbox_ids))).values(published=True)
            )

    async def mark_published_seqs_txn(self, ranges: Mapping[int, tuple[int, int]]) -> None:
        if ranges:
            # Through the (conversation_id, seq) unique index; sorted: one lock order for all.
            await self._write(
                _mark_seq_range,
                [
                    {"m_conversation": c, "m_first": first, "m_last": last}
                    for c, (first, last) in sorted(ranges.items())
                ],
            )

    async def events_after(self, conversation_id: int, after_seq: int, limit: int) -> list[bytes]:
        o = t.outbox
        rows = await self._c.execute(
            select(o.c.payload)
            .where(o.c.conversation_id == conversation_id, o.c.seq > after_seq)
            .order_by(o.c.seq)
            .limit(limit)
        )
        return [bytes(r.payload) for r in rows]

    async def oldest_event_seq(self, conversation_id: int) -> int | None:
        o = t.outbox
        row = (
            await self._c.execute(select(func.min(o.c.seq)).where(o.c.conversation_id == conversation_id))
        ).one()
        return int(row[0]) if row[0] is not None else None

    async def prune_events_txn(self, older_than: datetime) -> int:
        o = t.outbox
        result = await self._c.execute(
            # "= true", not "IS true": MariaDB uses no index for IS (ix_outbox_published_age).
            delete(o).where(o.c.published == true(), o.c.created_at < _db(older_than))
        )
        return int(result.rowcount or 0)

    # -- Slack-compatible facade: message by position, bots, API tokens --------------------
    async def get_message_by_seq(self, conversation_id: int, seq: int) -> Message | None:
        m = t.messages
        row = (
            await self._c.execute(select(m).where(m.c.conversation_id == conversation_id, m.c.seq == seq))
        ).first()
        return (await self._with_reactions([row]))[0] if row else None

    async def get_workspace_by_slug(self, slug: str) -> Workspace | None:
        row = (await self._c.execute(select(t.workspaces).where(t.workspaces.c.slug == slug))).first()
        return _workspace(row) if row else None

    async def get_bots(self, user_ids: Sequence[int]) -> list[Bot]:
        if not user_ids:
            return []
        rows = await self._c.execute(select(t.bots).where(t.bots.c.user_id.in_(list(user_ids))))
        return [
            Bot(
                user_id=r.user_id,
                workspace_id=r.workspace_id,
                name=r.name,
                event_types=tuple(e for e in r.event_types.split(",") if e),
                created_by=r.created_by,
                created_at=_aware(r.created_at),
            )
            for r in rows
        ]

    async def create_bot_txn(self, bot: Bot) -> None:
        await self._c.execute(
            insert(t.bots).values(
                user_id=bot.user_id,
                workspace_id=bot.workspace_id,
                name=bot.name,
                event_types=",".join(bot.event_types),
                created_by=bot.created_by,
                created_at=_db(bot.created_at),
            )
        )

    async def get_api_token(self, token_hash: str) -> ApiToken | None:
        at = t.api_tokens
        row = (await self._c.execute(select(at).where(at.c.token_hash == token_hash))).first()
        if row is None:
            return None
        return ApiToken(
            token_hash=row.token_hash,
            kind=TokenKind(row.kind),
            user_id=row.user_id,
            workspace_id=row.workspace_id,
            created_at=_aware(row.created_at),
        )

    async def create_api_token_txn(self, token: ApiToken) -> None:
        await self._c.execute(
            insert(t.api_tokens).values(
                token_hash=token.token_hash,
                kind=token.kind.value,
                user_id=token.user_id,
                workspace_id=token.workspace_id,
                created_at=_db(token.created_at),
            )
        )

    async def delete_api_token_txn(self, token_hash: str) -> bool:
        at = t.api_tokens
        result = await self._c.execute(delete(at).where(at.c.token_hash == token_hash))
        return bool(result.rowcount)


class SqlStore:
    """``Store`` on SQLAlchemy 2 async: ``sqlite+aiosqlite://`` or ``mysql+aiomysql://`` URLs."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 20,
        max_overflow: int = 20,
        pool_timeout: float = 10.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self._commit_listeners: list[Callable[[Sequence[CommittedEvent]], None]] = []
        if self.is_sqlite:
            path = url.split("///", 1)[1]
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._writer = create_async_engine(url, pool_size=1, max_overflow=0)
            self._reader = create_async_engine(url, pool_size=4, max_overflow=4)
            _configure_sqlite(self._writer.sync_engine, immediate=True)
            _configure_sqlite(self._reader.sync_engine, immediate=False)
            # transact()'s own connection, used only on its one thread (hence no thread check).
            self._thread_writer: Engine | None = create_engine(
                make_url(url).set(drivername="sqlite+pysqlite"),
                pool_size=1,
                max_overflow=0,
                connect_args={"check_same_thread": False},
            )
            _configure_sqlite(self._thread_writer, immediate=True)
            self._db_thread: ThreadPoolExecutor | None = ThreadPoolExecutor(
                1, thread_name_prefix="parley-sqlite-writer"
            )
            self._thread_reader: Engine | None = create_engine(
                make_url(url).set(drivername="sqlite+pysqlite"),
                pool_size=READER_THREADS,
                max_overflow=0,
                connect_args={"check_same_thread": False},
            )
            _configure_sqlite(self._thread_reader, immediate=False)
            self._reader_threads: ThreadPoolExecutor | None = ThreadPoolExecutor(
                READER_THREADS, thread_name_prefix="parley-sqlite-reader"
            )
            self._write_lock: asyncio.Lock | None = asyncio.Lock()
            self._feed: CommitFeed | None = None
        else:
            pooled: dict[str, Any] = {
                "pool_size": pool_size,
                "max_overflow": max_overflow,
                "pool_timeout": pool_timeout,
                "pool_recycle": 1800,
                "connect_args": {"connect_timeout": connect_timeout},
            }
            # READ COMMITTED: a check made after taking the conversation lock sees what the
            # previous holder committed (REPEATABLE READ would keep an older snapshot).
            self._writer = create_async_engine(url, isolation_level="READ COMMITTED", **pooled)
            # Reads in autocommit: under READ COMMITTED each statement takes its own snapshot
            # anyway, so a read transaction bought nothing and cost a round trip per read (the
            # ROLLBACK that ended it) — the relay's outbox read and every token check among them.
            # Neither the pool at check-in nor the connection at close sends one now.
            self._reader = create_async_engine(
                url,
                isolation_level="AUTOCOMMIT",
                pool_reset_on_return=None,
                skip_autocommit_rollback=True,
                **pooled,
            )
            # transact() on threads with the synchronous driver, as on SQLite: a write batch is
            # ~6 round trips, and through aiomysql each one waits for a busy realtime loop to
            # come round (batches of 30+ ms); on a thread they are back-to-back socket calls.
            self._thread_writer = create_engine(
                make_url(url).set(drivername="mysql+pymysql"),
                pool_size=MYSQL_WRITER_THREADS,
                max_overflow=0,
                pool_recycle=1800,
                connect_args={"connect_timeout": connect_timeout},
                isolation_level="READ COMMITTED",
                # Every use is a begin() block that has committed or rolled back by the time the
                # connection returns: the pool's own ROLLBACK would be one more round trip each.
                pool_reset_on_return=None,
            )
            _pipeline_writes(self._thread_writer)
            _ping_if_idle(self._writer.sync_engine)
            _ping_if_idle(self._reader.sync_engine)
            _ping_if_idle(self._thread_writer)
            self._db_thread = ThreadPoolExecutor(
                MYSQL_WRITER_THREADS, thread_name_prefix="parley-mysql-writer"
            )
            self._thread_reader = None
            self._reader_threads = None
            self._write_lock = None
            self._feed = None

    async def start(self) -> None:
        await upgrade_to_head(self._writer)

    async def close(self) -> None:
        await self._writer.dispose()
        if self._reader is not self._writer:
            await self._reader.dispose()
        for engine, threads in (
            (self._thread_writer, self._db_thread),
            (self._thread_reader, self._reader_threads),
        ):
            if engine is not None and threads is not None:
                await asyncio.get_running_loop().run_in_executor(threads, engine.dispose)
                threads.shutdown(wait=True)

    async def ping(self) -> None:
        async with self._reader.connect() as conn:
            await conn.execute(text("SELECT 1"))

    @asynccontextmanager
    async def read(self) -> AsyncIterator[SqlSession]:
        with _engine_errors_as_unavailable():
            async with self._reader.connect() as conn:
                yield SqlSession(conn)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[SqlSession]:
        with _engine_errors_as_unavailable():
            async with self._sqlite_writer_turn():
                appended, committed = self._followed(), self._listened()
                async with self._writer.begin() as conn:
                    yield SqlSession(conn, appended, committed)
                self._announce(appended, committed)

    async def query(self, work: Callable[[StoreReader], Awaitable[T]]) -> T:
        if self._thread_reader is None or self._reader_threads is None:
            async with self.read() as reader:
                return await work(reader)
        with _engine_errors_as_unavailable():
            return await _on_thread(self._reader_threads, self._thread_reader.connect, work)

    async def transact(self, work: Callable[[StoreWriter], Awaitable[T]]) -> T:
        if self._thread_writer is None or self._db_thread is None:
            async with self.write() as tx:
                return await work(tx)
        with _engine_errors_as_unavailable():
            async with self._sqlite_writer_turn():
                appended, committed = self._followed(), self._listened()
                result = await _on_thread(
                    self._db_thread, self._thread_writer.begin, work, appended, committed
                )
                self._announce(appended, committed)
                return result

    def commit_feed(self) -> CommitFeed | None:
        # Only SQLite: every write takes its turn in this process, so commit order is known here.
        if self.is_sqlite and self._feed is None:
            self._feed = CommitFeed()
        return self._feed

    def _followed(self) -> list[OutboxRow] | None:
        """A list to collect the transaction's outbox rows in, if someone follows the feed."""
        return [] if self._feed is not None else None

    def on_commit(self, listener: Callable[[Sequence[CommittedEvent]], None]) -> None:
        self._commit_listeners.append(listener)

    def _listened(self) -> list[CommittedEvent] | None:
        """A list to collect the transaction's events in, if an ``on_commit`` listener waits."""
        return [] if self._commit_listeners else None

    def _announce(self, appended: list[OutboxRow] | None, committed: list[CommittedEvent] | None) -> None:
        # Still inside the writer's turn: no later commit can be announced before this one.
        if self._feed is not None and appended:
            self._feed.announce(appended)
        if committed:
            for listener in self._commit_listeners:
                listener(committed)

    def _sqlite_writer_turn(self) -> AbstractAsyncContextManager[object]:
        """SQLite writes take turns in-process (MySQL: the database orders them)."""
        return self._write_lock if self._write_lock is not None else nullcontext()

    async def try_lease(self, name: str) -> Lease | None:
        if self.is_sqlite:
            # The embedded store belongs to one process (the all-in-one): nobody to compete with.
            return _ProcessLease()
        name = server_lock_name(name, self._writer.url.database)
        conn = await self._writer.connect()
        try:
            got = (await conn.execute(text("SELECT GET_LOCK(:n, 0)"), {"n": name})).scalar()
            await conn.commit()
        except Exception:
            await conn.close()
            raise
        if got != 1:
            await conn.close()
            return None
        return _MysqlLease(conn, name)


class _ProcessLease:
    async def held(self) -> bool:
        return True

    async def release(self) -> None:
        return None


class _MysqlLease:
    """A MySQL named lock on a dedicated connection: the server frees it when the connection
    dies, so a killed holder's lease passes to a standby within its retry interval."""

    def __init__(self, conn: AsyncConnection, name: str) -> None:
        self._conn = conn
        self._name = name

    async def held(self) -> bool:
        try:
            owner = (
                await self._conn.execute(text("SELECT IS_USED_LOCK(:n) = CONNECTION_ID()"), {"n": self._name})
            ).scalar()
            await self._conn.commit()
            return bool(owner)
        except Exception:
            return False

    async def release(self) -> None:
        try:
            await self._conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": self._name})
            await self._conn.commit()
        except Exception:
            log.debug("lease release failed (connection gone: the server released it)", exc_info=True)
        finally:
            await self._conn.close()


@contextmanager
def _engine_errors_as_unavailable() -> Iterator[None]:
    """A database that cannot be reached is a 503 with a reason, never a 500: the action did not
    happen (the transaction rolled back) and the client may retry."""
    try:
        yield
    except (OperationalError, InterfaceError, SqlTimeoutError, OSError) as exc:
        log.warning("store unavailable: %s", exc)
        raise Unavailable(
            "the database is unavailable; nothing was saved, retry later", code="store_unavailable"
        ) from exc


def _pipeline_writes(engine: Engine) -> None:
    """The engine's connections hold back writes nobody reads the result of, to send them with
    the next statement (``mysql_pipeline``): its every use is a ``transact()`` block."""

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> PipeliningConnection:
        return PipeliningConnection(*cargs, **cparams)


def _ping_if_idle(engine: Engine) -> None:
    """Check a pooled MySQL connection at checkout when it has been idle, like
    ``pool_pre_ping``, but not when it was in use less than ``PING_IF_IDLE_FOR`` ago: a
    connection broken since (the server restarted) fails its next statement, and the disconnect
    it raises makes the pool replace every connection it holds."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["parley_checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("parley_checked_in", 0.0) < PING_IF_IDLE_FOR:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise DisconnectionError("a pooled connection failed its ping") from exc


def _configure_sqlite(engine: Engine, *, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's implicit transactions defer the lock).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before the send is acknowledged, even across power loss.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=OFF")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


if TYPE_CHECKING:  # SqlStore must satisfy the port (checked by mypy, like a Go interface assertion)
    _store: Store = SqlStore("sqlite+aiosqlite:///:memory:")
    _writer: StoreWriter = SqlSession(cast(AsyncConnection, None))
