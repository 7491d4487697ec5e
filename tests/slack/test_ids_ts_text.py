"""The encodings Slack clients depend on: ids reversible and typed by their letter, ``ts``
unique, increasing and reversible per conversation, text round-tripping between Slack's
markup and Parley's plain text."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from parley.domain.models import Conversation, ConversationKind
from services.slack import ids
from services.slack.mrkdwn import mentioned_user_ids, to_parley, to_slack
from services.slack.ts import bound_of, seq_of, ts_of

BIG = (1 << 63) - 1


def conversation(
    kind: ConversationKind = ConversationKind.PUBLIC, conversation_id: int = 383588604083077120
) -> Conversation:
    return Conversation(
        id=conversation_id,
        workspace_id=7,
        kind=kind,
        name="general" if kind is ConversationKind.PUBLIC else None,
        created_by=1,
        created_at=datetime(2026, 11, 24, 12, 0, 0, 250_000, tzinfo=UTC),
        last_seq=1,
    )


@pytest.mark.parametrize("number", [0, 1, 35, 36, 383588604083077120, BIG])
def test_ids_round_trip_with_their_letter(number: int) -> None:
    assert ids.parse_user(ids.user_id(number)) == number
    assert ids.parse_team(ids.team_id(number)) == number
    assert ids.parse_bot(ids.bot_id(number)) == number
    assert ids.user_id(number)[1:].isalnum() and ids.user_id(number).isupper()


def test_conversation_letters_follow_the_kind_and_are_checked() -> None:
    letters = {kind: ids.channel_id(conversation(kind))[0] for kind in ConversationKind}
    assert letters == {
        ConversationKind.PUBLIC: "C",
        ConversationKind.PRIVATE: "C",
        ConversationKind.DM: "D",
        ConversationKind.GROUP_DM: "G",
    }
    public = conversation()
    letter, number = ids.parse_channel(ids.channel_id(public)) or ("", 0)
    assert number == public.id and ids.matches_kind(letter, public)
    assert not ids.matches_kind("D", public)
    for bad in ("", "C", "X123", "c123", "C-12", "U123", "C" + "Z" * 14, None, 42):
        assert ids.parse_channel(bad) is None


def test_ts_is_unique_increasing_and_names_its_seq() -> None:
    conv = conversation()
    stamps = [ts_of(conv, seq) for seq in (1, 2, 9, 10, 999_999, 1_000_000, 1_000_001, 12_345_678)]
    assert stamps[0] == "1795521600.000001"
    assert all(len(s.split(".")[1]) == 6 for s in stamps)
    assert [float(s) for s in stamps] == sorted(float(s) for s in stamps)
    assert sorted(stamps) == stamps, "also in string order while the seconds have the same width"
    for seq, stamp in zip((1, 2, 9, 10, 999_999, 1_000_000, 1_000_001, 12_345_678), stamps, strict=True):
        assert seq_of(conv, stamp) == seq


def test_ts_that_names_nothing_is_refused() -> None:
    conv = conversation()
    for bad in ("", "abc", "1795521600", "1795521600.1", "1795521600.000000", "1795521599.999999", None, 1.5):
        assert seq_of(conv, bad) is None
    assert bound_of(conv, "0") == 0
    assert bound_of(conv, "1795521600.000005") == 5
    assert bound_of(conv, 1795521601) == 1_000_000
    assert bound_of(conv, "soon") is None


def test_slack_markup_becomes_parley_text_and_back() -> None:
    alice, bob = 383588604083077120, 383588604083077121
    slack_text = f"hi <@{ids.user_id(alice)}> and <@{ids.user_id(bob)}|bob>, see <#C1|general> <!here> a &lt; b &amp;&amp; <https://x.test|docs> <https://y.test>"
    assert mentioned_user_ids(slack_text) == [alice, bob]
    parley = to_parley(slack_text, {alice: "alice", bob: "bob"})
    assert parley == "hi @alice and @bob, see #general @here a < b && docs (https://x.test) https://y.test"
    back = to_slack("hi @alice and @Bob. also @carol & <b>", {"alice": alice, "bob": bob})
    assert back == f"hi <@{ids.user_id(alice)}> and <@{ids.user_id(bob)}>. also @carol &amp; &lt;b&gt;"
    assert to_slack("@channel, @everyone", {}) == "<!channel>, <!everyone>"
