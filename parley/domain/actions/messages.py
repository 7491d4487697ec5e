"""Messages: send, edit, delete, react, read markers, history, threads, resume."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from parley.domain.actions._events import append_event_txn
from parley.domain.deps import Deps
from parley.domain.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound, RateLimited
from parley.domain.events import Event, EventType
from parley.domain.mentions import parse_mentions
from parley.domain.message_writer import Duplicate, PreparedSend, SendRequest
from parley.domain.models import Conversation, Message, ReadMarker, Role, User
from parley.domain.permissions import readable_conversation, readable_conversations
from parley.ports.cache import CachedHistory
from parley.ports.pubsub import user_channel
from parley.ports.store import StoreReader, StoreWriter

log = logging.getLogger(__name__)
CLIENT_MSG_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# Shortcodes (":thumbsup:" → "thumbsup") or a short run of non-space characters (an emoji).
EMOJI = re.compile(r"^(?:[a-z0-9_+\-]{1,64}|[^\s<>&\"'`\\]{1,16})$")
MAX_PAGE = 200


@dataclass(frozen=True, slots=True)
class HistoryPage:
    messages: list[Message]
    has_more: bool


@dataclass(frozen=True, slots=True)
class Replay:
    """Events a reconnecting client missed in one conversation, or ``resync`` when the gap is
    older than the retained stream (the client must refetch history instead)."""

    conversation_id: int
    events: list[bytes]
    resync: bool
    last_seq: int  # the conversation's newest seq when the replay was read


def _check_text(deps: Deps, text: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("text must not be empty", code="no_text")
    # JSON may escape a lone surrogate ("\ud800"), which has no UTF-8 form: refused here, before
    # it fails a whole write batch as a store error.
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise InvalidInput(
                "text must be valid Unicode (no lone surrogates)", code="invalid_text"
            ) from None
    if len(text) > deps.settings.max_message_chars:
        raise InvalidInput(
            f"text is longer than {deps.settings.max_message_chars} characters", code="msg_too_long"
        )
    return text


async def _resolve_mentions(reader: StoreReader, workspace_id: int, text: str) -> tuple[list[int], bool]:
    parsed = parse_mentions(text)
    if not parsed.usernames:
        return [], parsed.channel
    users = await reader.get_users_by_username(list(parsed.usernames))
    ids = [u.id for u in users if await reader.get_workspace_member(workspace_id, u.id)]
    return ids, parsed.channel


async def _rate_limit(deps: Deps, actor: User) -> None:
    wait = await deps.rate_limiter.acquire(
        f"send:{actor.id}", deps.settings.rate_limit_per_second, deps.settings.rate_limit_burst
    )
    if wait > 0:
        raise RateLimited("too many messages; slow down", retry_after=wait)


async def send_message(
    deps: Deps,
    actor: User,
    conversation_id: int,
    text: str,
    *,
    client_msg_id: str | None = None,
    thread_root_id: int | None = None,
) -> tuple[Message, bool]:
    """Store a message and its ``message.created`` event; returns (message, created).

    Acknowledge only after this returns: the message and its outbox row are committed. A retry
    with the same ``client_msg_id`` returns the original message with ``created=False``.
    The checks that need the store (membership, retry, thread, mentions) run in the write
    batch's transaction (``prepare_sends``), so they hold at the moment of the write.
    """
    text = _check_text(deps, text)
    if client_msg_id is not None and not CLIENT_MSG_ID.match(client_msg_id):
        raise InvalidInput(
            "client_msg_id: 1-64 characters of A-Z a-z 0-9 . _ : -", code="invalid_client_msg_id"
        )
    await _rate_limit(deps, actor)
    request = SendRequest(
        message_id=deps.ids.next_id(),
        user_id=actor.id,
        conversation_id=conversation_id,
        text=text,
        client_msg_id=client_msg_id,
        thread_root_id=thread_root_id,
        created_at=datetime.now(UTC),
    )
    return await deps.message_writer.submit(request)


async def prepare_sends(
    reader: StoreReader, requests: Sequence[SendRequest], look_up_retries: bool = True
) -> list[PreparedSend]:
    """Check a write batch's sends and complete them into messages (seq still 0), in the batch's
    transaction: a new ``Message``, the ``Duplicate`` original of a retry, or the error that
    rejects the send. A handful of queries per batch, not per send (group commit's point).
    Without ``look_up_retries`` a retry is not recognised here: its insert will hit the
    (user, client_msg_id) unique key instead (see ``MessageWriter``)."""
    readable = await readable_conversations(reader, {(r.conversation_id, r.user_id) for r in requests})
    retries = (
        await reader.find_by_client_msg_ids(
            {(r.user_id, r.client_msg_id) for r in requests if r.client_msg_id}
        )
        if look_up_retries
        else {}
    )
    prepared: list[PreparedSend] = []
    for request in requests:
        try:
            prepared.append(await _prepare_send(reader, request, readable, retries))
        except DomainError as exc:
            prepared.append(exc)
    return prepared


async def _prepare_send(
    reader: StoreReader,
    request: SendRequest,
    readable: dict[tuple[int, int], Conversation | DomainError],
    retries: dict[tuple[int, str], Message],
) -> Message | Duplicate:
    conversation = readable[(request.conversation_id, request.user_id)]
    if isinstance(conversation, DomainError):
        raise conversation
    original = retries.get((request.user_id, request.client_msg_id or ""))
    if original is not None:
        if original.conversation_id != request.conversation_id:
            raise _client_msg_id_reused()
        return Duplicate(original)
    if request.thread_root_id is not None:
        await _check_thread_root(reader, conversation, request.thread_root_id)
    mentions, mentions_channel = await _resolve_mentions(reader, conversation.workspace_id, request.text)
    return Message(
        id=request.message_id,
        conversation_id=request.conversation_id,
        workspace_id=conversation.workspace_id,
        seq=0,
        user_id=request.user_id,
        text=request.text,
        client_msg_id=request.client_msg_id,
        thread_root_id=request.thread_root_id,
        mentions=mentions,
        mentions_channel=mentions_channel,
        created_at=request.created_at,
    )


def _client_msg_id_reused() -> Conflict:
    return Conflict("client_msg_id was already used for another conversation", code="duplicate_client_msg_id")


async def _check_thread_root(reader: StoreReader, conversation: Conversation, root_id: int) -> Message:
    root = await reader.get_message(root_id)
    if root is None or root.conversation_id != conversation.id or root.deleted:
        raise NotFound("thread not found", code="thread_not_found")
    if root.thread_root_id is not None:
        raise InvalidInput("replies go to the thread's root message", code="not_a_thread_root")
    return root


async def _own_message(deps: Deps, reader: StoreReader, actor: User, message_id: int) -> Message:
    message = await reader.get_message(message_id)
    if message is None or message.deleted:
        raise NotFound("message not found", code="message_not_found")
    await readable_conversation(reader, message.conversation_id, actor.id)
    return message


async def _locked_message(deps: Deps, tx: StoreWriter, actor: User, message_id: int) -> tuple[Message, int]:
    """The message as it is once its conversation is locked, and the seq its event takes.

    Every write to a message row (an edit, a delete, a reply counted on its root, a reaction)
    happens under its conversation's lock, taken by reserving the conversation's next seq. Read
    before the lock, the message may be changed by a transaction committing meanwhile (MySQL
    reads committed rows without locking), and writing that stale copy back would undo it: a
    delete undone by an edit, a reply's count lost."""
    message = await _own_message(deps, tx, actor, message_id)
    seq = await tx.bump_seq_txn(message.conversation_id)
    return await _own_message(deps, tx, actor, message_id), seq


async def edit_message(deps: Deps, actor: User, message_id: int, text: str) -> Message:
    text = _check_text(deps, text)
    async with deps.store.write() as tx:
        message, seq = await _locked_message(deps, tx, actor, message_id)
        if message.user_id != actor.id:
            raise Forbidden("only the author can edit a message", code="cant_update_message")
        mentions, channel = await _resolve_mentions(tx, message.workspace_id, text)
        edited = message.model_copy(
            update={
                "text": text,
                "edited_at": datetime.now(UTC),
                "mentions": mentions,
                "mentions_channel": channel,
            }
        )
        await tx.update_message_txn(edited)
        await append_event_txn(
            deps,
            tx,
            EventType.MESSAGE_EDITED,
            workspace_id=message.workspace_id,
            conversation_id=message.conversation_id,
            data={"message": edited.model_dump(mode="json")},
            seq=seq,
        )
    deps.outbox_written()
    return edited


async def delete_message(deps: Deps, actor: User, message_id: int) -> Message:
    async with deps.store.write() as tx:
        message, seq = await _locked_message(deps, tx, actor, message_id)
        if message.user_id != actor.id:
            member = await tx.get_workspace_member(message.workspace_id, actor.id)
            if member is None or member.role is not Role.OWNER:
                raise Forbidden("only the author or a workspace owner can delete", code="cant_delete_message")
        deleted = message.model_copy(update={"text": "", "deleted": True, "reactions": [], "mentions": []})
        await tx.update_message_txn(deleted)
        if message.thread_root_id is not None:
            await tx.increment_reply_count_txn(message.thread_root_id, -1)
        await append_event_txn(
            deps,
            tx,
            EventType.MESSAGE_DELETED,
            workspace_id=message.workspace_id,
            conversation_id=message.conversation_id,
            data={"message": deleted.model_dump(mode="json")},
            seq=seq,
        )
    deps.outbox_written()
    return deleted


def _check_emoji(emoji: str) -> str:
    emoji = emoji.strip().strip(":")
    if not EMOJI.match(emoji):
        raise InvalidInput("emoji: a shortcode like 'thumbsup' or one emoji", code="invalid_name")
    return emoji


async def add_reaction(deps: Deps, actor: User, message_id: int, emoji: str) -> None:
    await _react(deps, actor, message_id, _check_emoji(emoji), add=True)


async def remove_reaction(deps: Deps, actor: User, message_id: int, emoji: str) -> None:
    await _react(deps, actor, message_id, _check_emoji(emoji), add=False)


async def _react(deps: Deps, actor: User, message_id: int, emoji: str, *, add: bool) -> None:
    async with deps.store.write() as tx:
        message, seq = await _locked_message(deps, tx, actor, message_id)
        if add and not await tx.add_reaction_txn(message_id, actor.id, emoji):
            raise Conflict("you already reacted with this emoji", code="already_reacted")
        if not add and not await tx.remove_reaction_txn(message_id, actor.id, emoji):
            raise NotFound("no such reaction", code="no_reaction")
        await append_event_txn(
            deps,
            tx,
            EventType.REACTION_ADDED if add else EventType.REACTION_REMOVED,
            workspace_id=message.workspace_id,
            conversation_id=message.conversation_id,
            data={"message_id": str(message_id), "user_id": str(actor.id), "emoji": emoji},
            seq=seq,
        )
    deps.outbox_written()


async def mark_read(deps: Deps, actor: User, conversation_id: int, seq: int) -> ReadMarker:
    """Move the read marker forward; the user's other sockets hear of it (ephemeral)."""
    async with deps.store.write() as tx:
        conversation = await readable_conversation(tx, conversation_id, actor.id)
        if seq < 0 or seq > conversation.last_seq:
            raise InvalidInput("seq is beyond the conversation's last event", code="invalid_seq")
        marker = await tx.set_read_marker_txn(conversation_id, actor.id, seq)
    event = Event(
        type=EventType.READ_MARKER,
        event_id=deps.ids.next_id(),
        workspace_id=conversation.workspace_id,
        conversation_id=conversation_id,
        ts=datetime.now(UTC),
        data={"user_id": str(actor.id), "last_read_seq": marker.last_read_seq},
    )
    try:
        await deps.pubsub.publish(user_channel(actor.id), event.to_bytes())
    except Exception:  # other devices catch up on their next list fetch
        log.debug("read marker event not published", exc_info=True)
    return marker


async def get_message(deps: Deps, actor: User, message_id: int) -> Message:
    async with deps.store.read() as reader:
        message = await reader.get_message(message_id)
        if message is None:
            raise NotFound("message not found", code="message_not_found")
        await readable_conversation(reader, message.conversation_id, actor.id)
    return message


async def history(
    deps: Deps,
    actor: User,
    conversation_id: int,
    *,
    before_seq: int | None = None,
    after_seq: int | None = None,
    limit: int = 50,
) -> HistoryPage:
    """Top-level messages: newest first, or oldest first when paging forward with ``after_seq``.
    The first page (no cursor) is served from the recent-history cache when it can vouch for it."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit: 1 to {MAX_PAGE}", code="invalid_limit")
    first_page = before_seq is None and after_seq is None
    async with deps.store.read() as reader:
        conversation = await readable_conversation(reader, conversation_id, actor.id)
        if first_page and limit < deps.settings.history_cache_size:
            cached = await deps.history_cache.get(conversation_id)
            # Only a cache that has seen every event the store has committed: the cache consumer
            # runs behind the commit, and a client that was just acknowledged must read its send.
            if cached is not None and cached.watermark >= conversation.last_seq:
                page = [Message.model_validate_json(raw) for raw in cached.messages[:limit]]
                # A full cache may hide older messages; a short one holds the whole conversation.
                full = len(cached.messages) >= deps.settings.history_cache_size
                return HistoryPage(page, has_more=len(cached.messages) > limit or full)
        fetch = max(limit, deps.settings.history_cache_size) if first_page else limit
        messages = await reader.history(
            conversation_id, before_seq=before_seq, after_seq=after_seq, limit=fetch + 1
        )
    has_more = len(messages) > fetch
    messages = messages[:fetch]
    if first_page:
        # Only what existed at `last_seq` (read before the page) goes into the cache: anything
        # newer arrives through the cache consumer, in order (see HistoryCache.append).
        snapshot = [m for m in messages if m.seq <= conversation.last_seq]
        await deps.history_cache.fill(
            conversation_id,
            CachedHistory(conversation.last_seq, [orjson.dumps(m.model_dump(mode="json")) for m in snapshot]),
        )
    return HistoryPage(messages[:limit], has_more=has_more or len(messages) > limit)


async def thread_replies(
    deps: Deps, actor: User, root_id: int, *, after_seq: int | None = None, limit: int = 50
) -> tuple[Message, HistoryPage]:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit: 1 to {MAX_PAGE}", code="invalid_limit")
    async with deps.store.read() as reader:
        root = await reader.get_message(root_id)
        if root is None:
            raise NotFound("thread not found", code="thread_not_found")
        await readable_conversation(reader, root.conversation_id, actor.id)
        replies = await reader.history(
            root.conversation_id, thread_root_id=root_id, after_seq=after_seq or 0, limit=limit + 1
        )
    return root, HistoryPage(replies[:limit], has_more=len(replies) > limit)


async def replay(deps: Deps, actor: User, conversation_id: int, after_seq: int) -> Replay:
    """What a reconnecting client missed in a conversation since ``after_seq``."""
    limit = deps.settings.resume_max_events
    async with deps.store.read() as reader:
        conversation = await readable_conversation(reader, conversation_id, actor.id)
        last = conversation.last_seq
        if after_seq >= last:
            return Replay(conversation_id, [], resync=False, last_seq=last)
        oldest = await reader.oldest_event_seq(conversation_id)
        if oldest is None or oldest > after_seq + 1 or last - after_seq > limit:
            return Replay(conversation_id, [], resync=True, last_seq=last)
        events = await reader.events_after(conversation_id, after_seq, limit)
    return Replay(conversation_id, events, resync=False, last_seq=last)
