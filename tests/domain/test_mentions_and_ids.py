"""Pure domain pieces: mention parsing, time-ordered ids, which writer owns a conversation."""

from __future__ import annotations

import time
from collections import Counter

from parley.domain.mentions import parse_mentions
from parley.domain.message_writer import writer_of
from parley.ids import IdGenerator, id_time_ms


def test_mentions_are_found_once_each_and_channel_words_flag_the_channel() -> None:
    parsed = parse_mentions("@Alice hi @bob, @alice again; cc @here and me@example.com")
    assert parsed.usernames == ("alice", "bob")
    assert parsed.channel is True


def test_no_mentions_in_plain_text_or_emails() -> None:
    parsed = parse_mentions("write to ops@example.com or @ alone")
    assert parsed.usernames == () and parsed.channel is False


def test_ids_are_unique_and_increasing_even_within_one_millisecond() -> None:
    gen = IdGenerator(node_id=7)
    ids = [gen.next_id() for _ in range(20_000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert ids[0] < 2**63
    assert abs(id_time_ms(ids[0]) - id_time_ms(ids[-1])) < 5_000


def test_ids_of_different_nodes_never_collide() -> None:
    a, b = IdGenerator(1), IdGenerator(2)
    assert not {a.next_id() for _ in range(5_000)} & {b.next_id() for _ in range(5_000)}


def test_conversations_made_one_at_a_time_spread_over_every_message_writer() -> None:
    ids = IdGenerator(node_id=7)
    conversations = []
    for _ in range(200):
        conversations.append(ids.next_id())
        time.sleep(0.0011)  # one per millisecond: the sequence bits stay 0, as in real use
    counts = Counter(writer_of(c, 4) for c in conversations)
    assert sorted(counts) == [0, 1, 2, 3]
    assert min(counts.values()) >= 25, counts  # about 50 each
