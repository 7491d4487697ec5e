"""The store port: the system of record (users, workspaces, conversations, members, messages,
reactions, read markers and the transactional outbox).

Guarantees every adapter gives:
- everything done inside one ``write()`` block commits atomically or not at all, and the block
  returns only after a durable commit;
- ``bump_seq_txn`` locks the conversation until commit, so seqs are gap-free and strictly
  increasing per conversation and outbox rows of one conversation are ordered like their seqs;
- ``transact(work)`` is ``write()`` for a block that awaits nothing but its writer: the same
  promise, but the adapter may run the whole transaction away from the event loop (the
  embedded store does: one hand-off to its database thread per transaction, not one per
  statement — what the send path's group commit spends its time on); ``query(work)`` is the
  same for a block of reads;
- ``read()`` and ``query()`` see committed data only;
- ``commit_feed()``, where offered, announces every committed outbox row once, in commit order
  (see ``CommitFeed``);
- ``on_commit(listener)`` hands each committed transaction's outbox rows to ``listener``, in the
  order this process saw the commits: what a relay elsewhere hears about (``CommittedEvent``).
Methods ending in ``_txn`` must be called inside ``write()`` or ``transact()``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from parley.domain.events import Event
from parley.domain.integrations import ApiToken, Bot
from parley.domain.models import (
    Conversation,
    Message,
    ReadMarker,
    Role,
    User,
    Workspace,
    WorkspaceMember,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Invite:
    code: str
    workspace_id: int
    created_by: int
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Membership:
    conversation: Conversation
    last_read_seq: int


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    conversation_id: int
    seq: int
    payload: bytes
    request_id: str | None = None
    created_at: datetime | None = None  # when its transaction wrote it (the relay's event age)


@dataclass(frozen=True, slots=True)
class CommittedEvent:
    """An outbox row as its transaction wrote it, told to ``on_commit`` listeners after the
    commit. No outbox id: MySQL does not return the ids of a multi-row insert without another
    round trip inside the transaction's locks; ``(conversation_id, seq)`` names the row."""

    conversation_id: int
    seq: int
    payload: bytes
    request_id: str | None
    created_at: datetime


class CommitFeed:
    """The outbox rows of a store's commits as they happen, in commit order.

    Offered only by a store whose every write goes through this process in one order (the
    embedded SQLite store); then the relay living in the same process can publish what was
    just committed without reading it back from the outbox table. A store written by several
    processes (MySQL) offers none: its table is the only complete record. Nothing is kept when
    nobody follows the feed for long: past ``MAX_ROWS`` it drops what it holds and says so
    (``take`` returns ``overflowed``), and the follower reads the table instead.
    """

    MAX_ROWS = 100_000

    def __init__(self) -> None:
        self._rows: list[OutboxRow] = []
        self._overflowed = False
        self._listeners: list[Callable[[], None]] = []

    def announce(self, rows: Sequence[OutboxRow]) -> None:
        """Called by the store after a commit, before the next write can commit."""
        if not rows:
            return
        if not self._overflowed:
            self._rows.extend(rows)
            if len(self._rows) > self.MAX_ROWS:
                self._rows, self._overflowed = [], True
        for listener in self._listeners:
            listener()

    def take(self) -> tuple[list[OutboxRow], bool]:
        """The rows announced since the last take, and whether some were dropped meanwhile."""
        rows, self._rows = self._rows, []
        overflowed, self._overflowed = self._overflowed, False
        return rows, overflowed

    def on_announce(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)


class Lease(Protocol):
    """Exclusive, process-lifetime ownership of a named role (e.g. the active relay)."""

    async def held(self) -> bool:
        """Still ours? False once the engine lost it (connection dropped, engine restarted)."""
        ...

    async def release(self) -> None: ...


class StoreReader(Protocol):
    # users
    async def get_user(self, user_id: int) -> User | None: ...
    async def get_user_credentials(self, username: str) -> tuple[User, str] | None: ...
    async def get_users(self, user_ids: Sequence[int]) -> list[User]: ...
    async def get_users_by_username(self, usernames: Sequence[str]) -> list[User]: ...
    async def is_token_revoked(self, jti: str) -> bool: ...

    # workspaces
    async def get_workspace(self, workspace_id: int) -> Workspace | None: ...
    async def get_workspace_member(self, workspace_id: int, user_id: int) -> WorkspaceMember | None: ...
    async def list_workspace_members(self, workspace_id: int) -> list[WorkspaceMember]: ...
    async def list_user_workspaces(self, user_id: int) -> list[Workspace]: ...
    async def get_invite(self, code: str) -> Invite | None: ...

    # conversations
    async def get_conversation(self, conversation_id: int) -> Conversation | None: ...
    async def get_conversations(self, conversation_ids: Collection[int]) -> dict[int, Conversation]: ...
    async def find_dm(self, workspace_id: int, dm_key: str) -> Conversation | None: ...
    async def is_member(self, conversation_id: int, user_id: int) -> bool: ...
    async def conversations_with_members(
        self, pairs: Collection[tuple[int, int]]
    ) -> tuple[dict[int, Conversation], set[tuple[int, int]]]:
        """For (conversation id, user id) pairs: the conversations that exist, by id, and the
        pairs that are memberships, in one query (a write batch's check of its senders)."""
        ...

    async def member_ids(self, conversation_id: int) -> list[int]: ...
    async def list_memberships(self, user_id: int, workspace_id: int | None = None) -> list[Membership]: ...
    async def list_public_conversations(self, workspace_id: int) -> list[Conversation]: ...
    async def conversation_ids_of(self, user_id: int) -> list[int]: ...
    async def last_seqs(self, conversation_ids: Sequence[int]) -> dict[int, int]: ...

    # messages
    async def get_message(self, message_id: int) -> Message | None: ...
    async def get_messages(self, message_ids: Collection[int]) -> dict[int, Message]:
        """The messages among ``message_ids`` that exist (deleted ones included), by id."""
        ...

    async def find_by_client_msg_ids(
        self, keys: Collection[tuple[int, str]]
    ) -> dict[tuple[int, str], Message]:
        """Stored messages by (user id, client_msg_id): a write batch's retries in one query."""
        ...

    async def history(
        self,
        conversation_id: int,
        *,
        before_seq: int | None = None,
        after_seq: int | None = None,
        limit: int = 50,
        thread_root_id: int | None = None,
    ) -> list[Message]:
        """Top-level messages (or one thread's replies), newest first unless ``after_seq`` is
        given, in which case oldest first."""
        ...

    async def unread_counts(self, user_id: int) -> dict[int, int]: ...

    def iter_messages(self, batch_size: int) -> AsyncIterator[list[Message]]:
        """Every live message, in id order, in batches (used by reindex)."""
        ...

    # outbox as the replayable event stream
    async def events_after(self, conversation_id: int, after_seq: int, limit: int) -> list[bytes]: ...
    async def oldest_event_seq(self, conversation_id: int) -> int | None: ...
    async def unpublished_events(self, limit: int, excluding: Collection[int] = ()) -> list[OutboxRow]:
        """The oldest ``limit`` unpublished outbox rows, in id order, except the ids in
        ``excluding`` (published, their marks not committed yet)."""

    # Slack-compatible facade: message by position, workspace by slug, bots, API tokens
    async def get_message_by_seq(self, conversation_id: int, seq: int) -> Message | None: ...
    async def get_workspace_by_slug(self, slug: str) -> Workspace | None: ...
    async def get_bots(self, user_ids: Sequence[int]) -> list[Bot]: ...
    async def get_api_token(self, token_hash: str) -> ApiToken | None: ...


class StoreWriter(StoreReader, Protocol):
    async def create_user_txn(self, user: User, password_hash: str) -> None: ...
    async def revoke_token_txn(self, jti: str, expires_at: datetime) -> None: ...
    async def create_workspace_txn(self, workspace: Workspace) -> None: ...
    async def add_workspace_member_txn(self, workspace_id: int, user_id: int, role: Role) -> bool: ...
    async def create_invite_txn(self, invite: Invite) -> None: ...
    async def create_conversation_txn(self, conversation: Conversation, dm_key: str | None) -> None: ...
    async def add_member_txn(self, conversation_id: int, user_id: int, last_read_seq: int) -> bool: ...
    async def remove_member_txn(self, conversation_id: int, user_id: int) -> bool: ...
    async def bump_seq_txn(self, conversation_id: int, count: int = 1) -> int:
        """Reserve ``count`` seqs, locking the conversation until commit; returns the last one."""
        ...

    async def bump_seqs_txn(self, counts: Mapping[int, int]) -> dict[int, int]:
        """``bump_seq_txn`` for several conversations at once (conversation id → count); returns
        each one's last reserved seq."""
        ...

    async def insert_messages_txn(self, messages: Sequence[Message]) -> None: ...
    async def update_message_txn(self, message: Message) -> None: ...
    async def increment_reply_count_txn(self, root_id: int, by: int) -> None: ...
    async def add_reaction_txn(self, message_id: int, user_id: int, emoji: str) -> bool: ...
    async def remove_reaction_txn(self, message_id: int, user_id: int, emoji: str) -> bool: ...
    async def set_read_marker_txn(self, conversation_id: int, user_id: int, seq: int) -> ReadMarker: ...
    async def append_events_txn(self, events: Sequence[Event]) -> None: ...
    async def mark_published_txn(self, outbox_ids: Sequence[int]) -> None: ...
    async def mark_published_seqs_txn(self, ranges: Mapping[int, tuple[int, int]]) -> None:
        """Mark published each conversation's rows with ``first <= seq <= last`` (conversation
        id → (first, last))."""
        ...

    async def prune_events_txn(self, older_than: datetime) -> int: ...
    async def create_bot_txn(self, bot: Bot) -> None: ...
    async def create_api_token_txn(self, token: ApiToken) -> None: ...
    async def delete_api_token_txn(self, token_hash: str) -> bool: ...


class Store(Protocol):
    async def start(self) -> None:
        """Connect and bring the schema to the latest migration."""
        ...

    async def close(self) -> None: ...

    async def ping(self) -> None: ...

    def read(self) -> AbstractAsyncContextManager[StoreReader]: ...

    async def query(self, work: Callable[[StoreReader], Awaitable[T]]) -> T:
        """Run ``work`` on one reader connection and return its result (SQLite: one snapshot;
        MySQL: autocommit, each statement its own snapshot); like ``transact``, ``work`` may await
        only the reader it is given, because it may run on the store's own threads."""
        ...

    def write(self) -> AbstractAsyncContextManager[StoreWriter]: ...

    async def transact(self, work: Callable[[StoreWriter], Awaitable[T]]) -> T:
        """Run ``work`` in one write transaction: committed (durably) when it returns, rolled
        back if it raises. ``work`` may await only the writer it is given — no sleeps, locks
        or other I/O — because it may run on the store's own thread."""
        ...

    def commit_feed(self) -> CommitFeed | None:
        """This store's ``CommitFeed``, or ``None`` when other processes write to it too. The
        feed announces commits from the first call on."""
        ...

    def on_commit(self, listener: Callable[[Sequence[CommittedEvent]], None]) -> None:
        """After each commit that wrote outbox rows, call ``listener`` with them (on the event
        loop, before the writer's block returns, in the order this process committed)."""
        ...

    async def try_lease(self, name: str) -> Lease | None:
        """Take the named lease if no other process holds it; released when the holder's
        process dies. ``None`` if another process holds it."""
        ...
